"""Upstream providers behind one small interface: the OpenAI-compatible API, or the offline demo.

Routes and services talk to a :class:`Provider`; only `openai_provider` imports `openai`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import Settings
from ..image_options import ImageOptions


@dataclass(frozen=True)
class TextAnswer:
    """A complete chat answer."""

    text: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageAnswer:
    """A generated image: its bytes, decoded from `b64_json`, drawn locally, or fetched from
    the URL the upstream handed back (`url`, kept for the log)."""

    model: str
    data: bytes
    url: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True)
class StreamChunk:
    """A piece of a streamed answer: text, and on the last chunks the finish reason and usage."""

    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    model: str | None = None


class TextStream(Protocol):
    """A running streamed answer: iterate for chunks; `close()` (from any thread) cancels it."""

    def __iter__(self) -> Iterator[StreamChunk]: ...

    def close(self) -> None: ...


class UpstreamError(Exception):
    """A generation failed. `message` is short, human and safe to show; never the raw error text."""

    status = 500
    kind = "upstream"

    def __init__(self, message: str, *, retry_after: float | None = None, partial: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.partial = partial


class AuthFailed(UpstreamError):
    kind = "auth"


class RateLimited(UpstreamError):
    kind = "rate_limit"


class UpstreamUnavailable(UpstreamError):
    kind = "server_error"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"


class UpstreamUnreachable(UpstreamError):
    kind = "unreachable"


class IncompleteAnswer(UpstreamError):
    kind = "incomplete"


class ConnectionDropped(IncompleteAnswer):
    """The connection broke before any of the answer arrived (a reset, a closed keep-alive
    connection): safe to ask again, as the openai client itself would."""


class EmptyAnswer(UpstreamError):
    kind = "empty"


class Refused(UpstreamError):
    kind = "refused"


class ImagesRefused(UpstreamError):
    """The chat model does not take pictures (the upstream refused the image part): the
    request, not the upstream, has to change, so it is a 400."""

    status = 400
    kind = "images_refused"


class BadImage(UpstreamError):
    """The upstream's image is missing, unreachable, too large, or not an image."""

    kind = "bad_image"


Message = dict[str, Any]  # role and content: a string, or content parts (text, image_url)


def message_text(message: Message) -> str:
    """The text of a message, whether its content is a string or content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(
        p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"
    )


def message_images(message: Message) -> list[str]:
    """The URLs of a message's `image_url` parts (data URLs here), in order."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [p["image_url"]["url"] for p in content if isinstance(p, dict) and p.get("type") == "image_url"]


class Provider(Protocol):
    """What the app needs from an upstream."""

    demo: bool
    chat_model: str
    image_model: str

    def complete(self, messages: list[Message], model: str, timeout: float) -> TextAnswer:
        """Answer a chat given as OpenAI-style `messages` (oldest first, the new prompt last)."""

    def stream(self, messages: list[Message], model: str, timeout: float) -> TextStream:
        """Start a streamed answer; raises UpstreamError if the upstream refuses to start."""

    def generate_image(self, prompt: str, options: ImageOptions, timeout: float | None = None) -> ImageAnswer:
        """Generate one image for `prompt` with the (validated) size, quality and style; its
        bytes, fetched within `timeout` when the upstream answers with a URL."""

    def edit_image(
        self, prompt: str, image: bytes, options: ImageOptions, timeout: float | None = None
    ) -> ImageAnswer:
        """Edit the picture `image` (a PNG) as `prompt` says: a new picture derived from it."""

    def list_models(self) -> list[str]:
        """The chat models the upstream offers (may raise UpstreamError)."""


def make_provider(settings: Settings) -> Provider:
    """The OpenAI provider when a key is configured, else the offline demo provider."""
    if settings.demo:
        from .demo import DemoProvider

        return DemoProvider(settings)
    from .openai_provider import OpenAIProvider

    return OpenAIProvider(settings)
