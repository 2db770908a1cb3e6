"""What a generate request asks for, read and checked before anything is stored: the prompt,
model and image options, where the new entry goes (`parent`, `replaces`) and the picture that
goes with the prompt (an attached `image`, an image entry's picture as `source`, or the
picture of the turn it replaces).

Every check happens here, so a request that cannot be answered stores nothing and asks no
upstream; `answer` then checks the daily cap, stores the picture once and hands the request to
the Generator. `regenerate` asks a turn again unchanged; `form_mode` and `next_form` say what
the prompt form continues from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import image_options
from ..generation import GenerationFailed, Generator, Prompt, PromptError, clean_prompt
from ..history import Entry, HistoryUnavailable, Permalink
from ..i18n import N_
from ..image_options import ImageOptions
from ..images import inputs

Field = Callable[[str], object]  # a form or JSON field by name (None when absent)

REPLACES_MISSING = N_("The turn to replace does not exist.")
REPLACES_DELETED = N_("The turn to replace was deleted.")
REPLACES_PENDING = N_("The turn to replace is still being answered.")
SOURCE_MISSING = N_("The image to edit does not exist (any more).")
SOURCE_NOT_IMAGE = N_("Only an image entry's picture can be edited; this entry is a code answer.")
SOURCE_GONE = N_("The picture of this entry is no longer available.")
SOURCE_PENDING = N_("The image to edit is still being made.")
ONE_PLACE = N_("Send either parent or replaces, not both.")
ONE_PICTURE = N_("Attach an image or name a source to edit, not both.")
SOURCE_AND_PLACE = N_("An edit of a source continues the source's conversation: send no parent or replaces.")
NO_EDITS = N_("This image model cannot edit pictures; editing works with gpt-image-1 and dall-e-2.")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Ask:
    """One checked generate request."""

    kind: str
    prompt: str
    model: str | None = None
    options: ImageOptions | None = None
    parent: Entry | None = None
    replaces: Entry | None = None
    source: Entry | None = None
    image: bytes | None = None
    keep_image: bool = True

    @property
    def continues(self) -> bool:
        """The prompt form goes on from the new entry (a follow-up, a version, an edit)."""
        return self.parent is not None or self.replaces is not None or self.source is not None

    @property
    def picture_from(self) -> str | None:
        """The stored picture to copy as this entry's own, if it takes one it did not attach."""
        if self.image is not None:
            return None
        if self.source is not None:
            return self.source.image_file
        if self.replaces is not None and self.keep_image:
            return self.replaces.input_image
        return None

    @property
    def with_picture(self) -> bool:
        return self.image is not None or self.picture_from is not None


def find_turn(generator: Generator, raw: object, missing: str, deleted: str, pending: str) -> Entry | None:
    """The live, finished entry at a permalink field; None without one; PromptError otherwise."""
    if raw is None or raw == "":
        return None
    target = Permalink.parse(raw)
    entry = generator.chatlog.get(*target) if target else None
    if entry is None:
        raise PromptError(missing, 404)
    if entry.deleted:
        raise PromptError(deleted, 410)
    if entry.status == "pending":
        raise PromptError(pending, 409)
    return entry


def find_source(generator: Generator, raw: object) -> Entry | None:
    """The image entry whose picture is to be edited (or sent with a code prompt)."""
    source = find_turn(generator, raw, SOURCE_MISSING, SOURCE_MISSING, SOURCE_PENDING)
    if source is None:
        return None
    if source.kind != "image":
        raise PromptError(SOURCE_NOT_IMAGE)
    if not source.image_file:
        raise PromptError(SOURCE_GONE, 410)
    return source


def read_image(field: Field, upload: object | None) -> bytes | None:
    """The attached picture's bytes (a multipart file, or a `data:` URL in the field `image`),
    None without one; PromptError for anything that is not a usable picture."""
    try:
        if upload is not None:
            data = inputs.from_upload(upload)
            inputs.check(data)
            return data
        raw = field("image")
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise inputs.InputImageError(inputs.BAD_DATA_URL)
        data = inputs.from_data_url(raw)
        inputs.check(data)
        return data
    except inputs.InputImageError as e:
        raise PromptError(e.message) from None


def _flag(value: object, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in FALSE_WORDS


def read_ask(kind: str, field: Field, upload: object | None, generator: Generator) -> Ask:
    """Read and check a generate request; PromptError (with its status) says what is wrong."""
    settings = generator.settings
    prompt = clean_prompt(field("prompt"), settings.max_prompt_chars)
    model = generator.choose_model(field("model")) if kind == "code" else None
    options = (
        generator.image_options(field("size"), field("quality"), field("style")) if kind == "image" else None
    )
    parent_field = field("parent")
    parent = generator.find_parent(field("conversation_id") if parent_field is None else parent_field)
    replaces = find_turn(generator, field("replaces"), REPLACES_MISSING, REPLACES_DELETED, REPLACES_PENDING)
    source = find_source(generator, field("source"))
    image = read_image(field, upload)
    if parent is not None and replaces is not None:
        raise PromptError(ONE_PLACE)
    if source is not None and image is not None:
        raise PromptError(ONE_PICTURE)
    if source is not None and kind == "image" and (parent is not None or replaces is not None):
        raise PromptError(SOURCE_AND_PLACE)
    if replaces is not None:
        # Its parent, a deleted one too (the new version hangs where the replaced turn hangs).
        above = replaces.parent
        parent = generator.chatlog.get(*above) if above else None
    if kind == "image" and source is not None:
        parent = source  # the edit is the next turn of the source's conversation
    ask = Ask(kind, prompt, model, options, parent, replaces, source, image, _flag(field("keep_image"), True))
    if (
        kind == "image"
        and ask.with_picture
        and not image_options.capabilities(generator.provider.image_model).edits
    ):
        raise PromptError(NO_EDITS)
    return ask


def store_picture(ask: Ask, generator: Generator) -> str | None:
    """Store the picture that goes with the prompt as the new entry's own; its name or None."""
    if ask.image is not None:
        try:
            return inputs.store(generator.images, ask.image).name
        except inputs.InputImageError as e:
            raise PromptError(e.message) from None
    if ask.picture_from is not None:
        try:
            return inputs.copy(generator.images, ask.picture_from)
        except (FileNotFoundError, inputs.InputImageError):
            raise PromptError(SOURCE_GONE, 410) from None
    return None


def run(ask: Ask, generator: Generator, *, stream: bool = False) -> Entry:
    """Store the picture, then answer the request: a code answer started in the background
    (`stream`) or answered here, or an image made or edited. Raises GenerationFailed (the entry
    is stored, failed) like the Generator; a picture whose entry could not be stored goes."""
    picture = store_picture(ask, generator)
    prompt = Prompt(ask.prompt, ask.parent, ask.replaces, picture)
    try:
        if ask.kind == "code" and stream:
            return generator.start_code(prompt, ask.model, stream=True)
        if ask.kind == "code":
            return generator.generate_code(prompt, ask.model)
        return generator.generate_image(prompt, ask.options)
    except HistoryUnavailable:
        if picture is not None:
            with contextlib.suppress(Exception):
                generator.images.delete(picture)
        raise


def answer(ask: Ask, generator: Generator, *, stream: bool = False) -> Entry:
    """Answer a checked request within DAILY_REQUEST_CAP (DailyCapReached past it): a code
    answer started in the background (`stream`) or answered here, or an image made or edited.
    GenerationFailed (the entry is stored, failed) as from the Generator."""
    generator.check_daily_cap()
    return run(ask, generator, stream=stream)


def regenerate(entry: Entry, generator: Generator) -> Entry:
    """Another version of a turn, asked again unchanged (its prompt, picture and image options):
    the new entry, streamed (pending) for code, or failed when the upstream failed."""
    fields: dict[str, object] = {"prompt": entry.prompt, "replaces": entry.permalink}
    if entry.kind == "image":
        fields.update(entry.options)
    ask = read_ask(entry.kind, fields.get, None, generator)
    try:
        return answer(ask, generator, stream=entry.kind == "code")
    except GenerationFailed as failed:
        return failed.entry


def next_form(ask: Ask, entry: Entry) -> dict[str, Any] | None:
    """What the prompt form continues with after `entry` (None: it stays as it is): the next
    turn of its conversation, or for an edited picture, editing the new one."""
    if not ask.continues:
        return None
    if entry.kind == "image" and entry.input_image and entry.image_file:
        return {"source": entry}
    return {"parent": entry}


def form_mode(generator: Generator, args: Mapping[str, str]) -> dict[str, Any]:
    """What the prompt form continues from, by the query: `parent` (a follow-up, or a variation
    of an image), `replaces` (editing a turn: its prompt refills the box) or `source` (editing a
    picture). PromptError when the permalink cannot be used."""
    if args.get("replaces"):
        editing = find_turn(
            generator, args.get("replaces"), REPLACES_MISSING, REPLACES_DELETED, REPLACES_PENDING
        )
        return {"editing": editing, "refill": editing.prompt if editing else ""}
    if args.get("source"):
        return {"source": find_source(generator, args.get("source"))}
    parent = generator.find_parent(args.get("parent"))
    variation = parent is not None and parent.kind == "image"
    return {"parent": parent, "refill": parent.prompt if variation and parent else ""}
