"""The OpenAI-compatible upstream, reached with the official `openai` client.

Works with api.openai.com and any compatible server (`OPENAI_BASE_URL`: Ollama, vLLM, LiteLLM,
OpenRouter, ...). Client errors are translated into :class:`UpstreamError` subclasses with short
human messages; the client's raw error text (which may quote request details) is only logged.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, cast

import httpx2
import openai
from openai.types.chat import ChatCompletionMessageParam

from ..config import Settings
from ..image_options import ImageOptions
from ..images.fetch import MAX_DOWNLOAD_BYTES, fetch_image, redact_url
from ..messages import failure
from . import (
    AuthFailed,
    BadImage,
    ConnectionDropped,
    EmptyAnswer,
    ImageAnswer,
    ImagesRefused,
    IncompleteAnswer,
    Message,
    RateLimited,
    Refused,
    StreamChunk,
    TextAnswer,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
    message_images,
)

log = logging.getLogger("app.upstream")


def _message_params(messages: list[Message]) -> list[ChatCompletionMessageParam]:
    """Our messages (role and content, as the API documents them) in the client's typed shape."""
    return cast("list[ChatCompletionMessageParam]", messages)


def _with_images(messages: list[Message]) -> bool:
    return any(message_images(m) for m in messages)


# What upstreams say when a model takes no pictures: OpenAI ("image_url is only supported by
# certain models"), vLLM ("not a multimodal model"), Ollama and LiteLLM ("does not support
# images", "vision").
_IMAGE_REFUSAL = ("image", "vision", "multimodal", "multi-modal")


def _about_images(error: openai.BadRequestError) -> bool:
    text = f"{getattr(error, 'code', '') or ''} {getattr(error, 'message', '') or error}".lower()
    return any(word in text for word in _IMAGE_REFUSAL)


def _retry_after(error: openai.APIStatusError) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    headers = error.response.headers if error.response is not None else {}
    try:
        if (raw_ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(raw_ms) / 1000)
    except ValueError:
        pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_refused_connection(error: BaseException) -> bool:
    """True when the TCP connection itself failed (refused, unknown host): nothing was sent."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ConnectionRefusedError):
            return True
        text = str(cause).lower()
        if "connection refused" in text or "name or service not known" in text:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


@contextmanager
def translate_errors(what: str, *, images: bool = False) -> Iterator[None]:
    """Turn `openai` exceptions into UpstreamError subclasses with a human message. `images`:
    the request carried pictures, so a 400 about them means the model takes none."""
    try:
        yield
    except openai.AuthenticationError as e:
        log.error("%s failed: upstream rejected the API key (401): %s", what, e)
        raise AuthFailed(failure("auth_rejected")) from None
    except openai.PermissionDeniedError as e:
        log.error("%s failed: permission denied (403): %s", what, e)
        raise AuthFailed(failure("auth_forbidden")) from None
    except openai.RateLimitError as e:
        wait = _retry_after(e)
        log.warning("%s failed: rate limited (429), retry after %s s", what, wait)
        message = (
            failure("rate_limited") if wait is None else failure("rate_limited_for", seconds=round(wait))
        )
        raise RateLimited(message, retry_after=wait) from None
    except openai.InternalServerError as e:
        log.error("%s failed: upstream server error (%s): %s", what, e.status_code, e)
        raise UpstreamUnavailable(failure("server_error", status=e.status_code)) from None
    except openai.BadRequestError as e:
        log.error("%s failed: upstream refused the request (400): %s", what, e)
        if getattr(e, "code", None) == "content_policy_violation":
            raise Refused(failure("content_policy")) from None
        if images and _about_images(e):
            raise ImagesRefused(failure("images_refused")) from None
        raise UpstreamError(failure("bad_request")) from None
    except openai.NotFoundError as e:
        log.error("%s failed: not found (404): %s", what, e)
        raise UpstreamError(failure("not_found")) from None
    except openai.APIStatusError as e:
        log.error("%s failed: upstream answered %s: %s", what, e.status_code, e)
        raise UpstreamError(failure("status_error", status=e.status_code)) from None
    except openai.APITimeoutError:
        log.error("%s failed: upstream timed out", what)
        raise UpstreamTimeout(failure("timeout")) from None
    except openai.APIConnectionError as e:
        if _is_refused_connection(e):
            log.error("%s failed: upstream unreachable: %s", what, e.__cause__ or e)
            raise UpstreamUnreachable(failure("unreachable")) from None
        log.error("%s failed: connection dropped before the answer: %s", what, e.__cause__ or e)
        raise ConnectionDropped(failure("connection_dropped")) from None
    except openai.APIResponseValidationError as e:
        log.error("%s failed: malformed upstream response: %s", what, e)
        raise UpstreamError(failure("unreadable")) from None
    except openai.ContentFilterFinishReasonError:
        raise Refused(failure("content_filter")) from None
    except openai.OpenAIError as e:
        log.error("%s failed: %s", what, e)
        raise UpstreamError(failure("request_failed")) from None


class OpenAIStream:
    """Chunks of a streamed completion, with the client's errors translated.

    A connection that ends before the upstream said why it finished is an interrupted answer,
    whether the client raised (connection reset) or the stream simply stopped (closed early).
    """

    def __init__(self, stream: openai.Stream) -> None:
        self._stream = stream
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._stream.close()

    def __iter__(self) -> Iterator[StreamChunk]:
        try:
            for chunk in self._stream:
                usage = None
                if chunk.usage is not None:
                    usage = {
                        "prompt_tokens": chunk.usage.prompt_tokens,
                        "completion_tokens": chunk.usage.completion_tokens,
                    }
                if not chunk.choices:
                    if usage:
                        yield StreamChunk(usage=usage, model=chunk.model)
                    continue
                choice = chunk.choices[0]
                delta = choice.delta
                if delta is not None and getattr(delta, "refusal", None):
                    raise Refused(failure("declined"))
                text = (delta.content or "") if delta is not None else ""
                yield StreamChunk(
                    text=text, finish_reason=choice.finish_reason, usage=usage, model=chunk.model
                )
        except UpstreamError:
            raise
        except openai.APITimeoutError:
            if self._closed:
                return
            log.error("Chat stream timed out")
            raise UpstreamTimeout(failure("timed_out")) from None
        except openai.APIError as e:
            if self._closed:
                return
            log.error("Chat stream failed mid-answer: %s", e)
            raise IncompleteAnswer(failure("connection_dropped")) from None
        except ValueError as e:  # a chunk that is not JSON
            if self._closed:
                return
            log.error("Chat stream sent an unreadable chunk: %s", type(e).__name__)
            raise UpstreamError(failure("unreadable")) from None
        except Exception as e:  # the HTTP layer's own errors: reset, protocol, read timeout
            if self._closed:
                return
            if "timeout" in type(e).__name__.lower():
                log.error("Chat stream timed out mid-answer")
                raise UpstreamTimeout(failure("stalled")) from None
            log.error("Chat stream interrupted: %s: %s", type(e).__name__, e)
            raise IncompleteAnswer(failure("connection_dropped")) from None


@cache
def _tls_context() -> ssl.SSLContext:
    """The TLS settings the openai client would make for itself (its HTTP library's defaults),
    made once per process: loading the CA certificates takes tens of milliseconds, and a process
    that builds several apps (tests, benchmarks) would pay it for each. An SSLContext is safe to
    share between clients and threads."""
    return httpx2.create_ssl_context()


class OpenAIProvider:
    """Chat completions and image generation through the official client."""

    demo = False

    def __init__(self, settings: Settings) -> None:
        self.chat_model = settings.chat_model
        self.image_model = settings.image_model
        self.timeout = settings.upstream_timeout
        self.base_url = settings.openai_base_url  # its host may be private: a local model server
        # Retries are off: a retry must fit inside UPSTREAM_TIMEOUT, and the user should hear
        # about a rate limit at once instead of waiting out a long Retry-After.
        self.client = openai.OpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.upstream_timeout,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(verify=_tls_context()),
        )

    def complete(self, messages: list[Message], model: str, timeout: float) -> TextAnswer:
        """One non-streaming chat completion."""
        with translate_errors("Chat completion", images=_with_images(messages)):
            completion = self.client.chat.completions.create(
                model=model, messages=_message_params(messages), timeout=timeout
            )
        if not completion.choices:
            raise EmptyAnswer(failure("no_answer"))
        choice = completion.choices[0]
        text = choice.message.content or ""
        if choice.finish_reason == "content_filter" or (
            not text and getattr(choice.message, "refusal", None)
        ):
            raise Refused(failure("declined"), partial=text)
        if not text.strip():
            raise EmptyAnswer(failure("empty_answer"))
        usage = {}
        if completion.usage is not None:
            usage = {
                "prompt_tokens": completion.usage.prompt_tokens,
                "completion_tokens": completion.usage.completion_tokens,
            }
        return TextAnswer(text=text, model=completion.model or model, usage=usage)

    def stream(self, messages: list[Message], model: str, timeout: float) -> OpenAIStream:
        """Start a streamed chat completion, asking for usage in the last chunk."""
        with translate_errors("Chat stream", images=_with_images(messages)):
            stream = self.client.chat.completions.create(
                model=model,
                messages=_message_params(messages),
                stream=True,
                stream_options={"include_usage": True},
                timeout=timeout,
            )
        return OpenAIStream(stream)

    def list_models(self) -> list[str]:
        """Model ids from the upstream's /models, sorted."""
        with translate_errors("Model list"):
            page = self.client.models.list(timeout=10)
        return sorted({m.id for m in page.data if getattr(m, "id", None)})

    def generate_image(self, prompt: str, options: ImageOptions, timeout: float | None = None) -> ImageAnswer:
        """One image; the answer carries either decoded `b64_json` bytes or the URL to fetch."""
        params: dict[str, Any] = {"model": self.image_model, "prompt": prompt, "size": options.size, "n": 1}
        params.update((k, v) for k, v in (("quality", options.quality), ("style", options.style)) if v)
        deadline = time.monotonic() + (timeout or self.timeout)
        with translate_errors("Image generation"):
            result = self.client.images.generate(**params, timeout=timeout)
        return self._image(result, deadline)

    def edit_image(
        self, prompt: str, image: bytes, options: ImageOptions, timeout: float | None = None
    ) -> ImageAnswer:
        """One edited image from `/v1/images/edits` (multipart: the picture and the prompt)."""
        params: dict[str, Any] = {
            "model": self.image_model,
            "prompt": prompt,
            "image": ("image.png", image, "image/png"),
            "size": options.size,
            "n": 1,
        }
        if options.quality:
            params["quality"] = options.quality
        deadline = time.monotonic() + (timeout or self.timeout)
        with translate_errors("Image edit"):
            result = self.client.images.edit(**params, timeout=timeout)
        return self._image(result, deadline)

    def _image(self, result: Any, deadline: float) -> ImageAnswer:
        """The first image of an images answer: decoded `b64_json` bytes, or the bytes behind
        its URL, fetched (app.images.fetch) by `deadline`."""
        if not result.data:
            log.error("Kein Bild in der Antwort gefunden.")
            raise BadImage(failure("no_image"))
        item = result.data[0]
        revised = getattr(item, "revised_prompt", None)
        if item.b64_json:
            # The same cap as a download, checked before decoding: 4 base64 characters per 3 bytes.
            if len(item.b64_json) > (MAX_DOWNLOAD_BYTES + 2) // 3 * 4:
                raise BadImage(failure("image_too_large"))
            try:
                data = base64.b64decode(item.b64_json, validate=True)
            except (binascii.Error, ValueError):
                raise BadImage(failure("image_not_base64")) from None
            return ImageAnswer(model=self.image_model, data=data, revised_prompt=revised)
        if item.url:
            log.debug("Bild-URL: %s", redact_url(item.url))
            data = fetch_image(
                item.url, timeout=max(1.0, deadline - time.monotonic()), trusted_upstream=self.base_url
            )
            return ImageAnswer(model=self.image_model, data=data, url=item.url, revised_prompt=revised)
        log.error("Kein Bild in der Antwort gefunden.")
        raise BadImage(failure("no_image"))
