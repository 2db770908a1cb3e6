"""Image options (size, quality, style) and which values each kind of image model accepts."""

from __future__ import annotations

from dataclasses import dataclass

from .config import IMAGE_SIZES
from .messages import N_


@dataclass(frozen=True)
class Capabilities:
    """What an image model accepts; an empty tuple means the option is not offered."""

    sizes: tuple[str, ...]
    qualities: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    edits: bool = False  # the model edits a picture (`/v1/images/edits`)


@dataclass(frozen=True)
class ImageOptions:
    size: str
    quality: str | None = None
    style: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("size", self.size), ("quality", self.quality), ("style", self.style)) if v}


DALL_E_3 = Capabilities(("1024x1024", "1792x1024", "1024x1792"), ("standard", "hd"), ("vivid", "natural"))
DALL_E_2 = Capabilities(("256x256", "512x512", "1024x1024"), edits=True)
GPT_IMAGE = Capabilities(("1024x1024", "1536x1024", "1024x1536"), ("low", "medium", "high"), edits=True)
ANY = Capabilities(IMAGE_SIZES)  # other OpenAI-compatible servers: editing is not assumed
DEMO = Capabilities(IMAGE_SIZES, edits=True)  # the offline demo edits its own way
EDIT_MODELS = "gpt-image-1, dall-e-2"  # named where editing is offered or refused
# The options' names as an image entry's tags show them, translated (the `tr` filter): marked here
# for the catalogue.
OPTION_NAMES = (N_("size"), N_("quality"), N_("style"))


def capabilities(model: str) -> Capabilities:
    """The options `model` accepts (dall-e-3, dall-e-2, gpt-image-*, the demo; anything else:
    any size, no edits)."""
    name = model.lower()
    if name == "demo":
        return DEMO
    if name.startswith("dall-e-3"):
        return DALL_E_3
    if name.startswith("dall-e-2"):
        return DALL_E_2
    if name.startswith("gpt-image"):
        return GPT_IMAGE
    return ANY


def default_size(model: str, configured: str) -> str:
    """IMAGE_SIZE when the model accepts it, else the model's first size."""
    sizes = capabilities(model).sizes
    return configured if configured in sizes else sizes[0]


def choose(model: str, configured_size: str, size: object, quality: object, style: object) -> ImageOptions:
    """Validate the requested options for `model`; raise ValueError with a message for the user."""
    caps = capabilities(model)

    def pick(name: str, value: object, allowed: tuple[str, ...], default: str | None) -> str | None:
        if value in (None, ""):
            return default
        if not isinstance(value, str) or value not in allowed:
            shown = {"model": model, "option": name, "value": repr(value)}
            raise ValueError(
                N_(
                    "%(model)s does not accept %(option)s %(value)s; it accepts: %(offered)s.",
                    **shown,
                    offered=", ".join(allowed),
                )
                if allowed
                else N_("%(model)s does not accept %(option)s %(value)s; it accepts: none.", **shown)
            )
        return value

    return ImageOptions(
        size=pick("size", size, caps.sizes, default_size(model, configured_size)) or caps.sizes[0],
        quality=pick("quality", quality, caps.qualities, None),
        style=pick("style", style, caps.styles, None),
    )
