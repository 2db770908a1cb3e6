"""The generation service: validate the prompt, store it, ask the upstream, store the outcome.

The prompt is stored (pending) before the upstream is called, so a crash or an upstream failure
never loses what the user typed: the entry is then marked failed with a human message.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass

from .config import Settings
from .history import ChatLog, Entry
from .images import ImageStore, fetch_image, redact_url
from .providers import Provider, UpstreamError

log = logging.getLogger("app.generation")


class PromptError(ValueError):
    """The prompt is missing, blank or too long; `message` is shown to the user (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class GenerationFailed(Exception):
    """The upstream failed; the entry is stored, marked failed, with `error.message`."""

    entry: Entry
    error: UpstreamError


def clean_prompt(raw: object, max_chars: int) -> str:
    """Return the prompt without surrounding blanks, or raise PromptError saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise PromptError("Please enter a prompt.")
    # NUL and other control characters (except newlines and tabs) have no place in a prompt.
    prompt = "".join(c for c in raw if c in "\n\t" or unicodedata.category(c) != "Cc").strip()
    if not prompt:
        raise PromptError("Please enter a prompt.")
    if len(prompt) > max_chars:
        raise PromptError(f"The prompt is too long ({len(prompt)} characters; the limit is {max_chars}).")
    return prompt


class Generator:
    """Ties a provider, the history and the image store together for one app."""

    def __init__(self, settings: Settings, provider: Provider, chatlog: ChatLog, images: ImageStore) -> None:
        self.settings = settings
        self.provider = provider
        self.chatlog = chatlog
        self.images = images

    def generate_code(self, prompt: str) -> Entry:
        """Answer `prompt` with the chat model; raise GenerationFailed after storing the failure."""
        entry = self.chatlog.begin("code", prompt, self.provider.chat_model, demo=self.provider.demo)
        log.debug("Sende Anfrage an OpenAI API... (chat, model %s, %d characters)", entry.model, len(prompt))
        try:
            answer = self.provider.complete([{"role": "user", "content": prompt}])
        except UpstreamError as error:
            raise GenerationFailed(self.chatlog.fail(entry, error.message), error) from None
        except Exception:
            log.exception("Chat generation failed unexpectedly")
            error = UpstreamError("Something went wrong while generating the answer.")
            raise GenerationFailed(self.chatlog.fail(entry, error.message), error) from None
        log.debug(
            "Antwort von OpenAI erhalten: chat answer, model %s, %d characters, usage %s",
            answer.model,
            len(answer.text),
            answer.usage or "n/a",
        )
        return self.chatlog.finish(entry, answer.text, model=answer.model, usage=answer.usage)

    def generate_image(self, prompt: str) -> Entry:
        """Generate, validate and store one image for `prompt` as this entry's own file."""
        entry = self.chatlog.begin("image", prompt, self.provider.image_model, demo=self.provider.demo)
        log.debug(
            "Sende Anfrage an OpenAI API... (image, model %s, size %s)", entry.model, self.settings.image_size
        )
        try:
            answer = self.provider.generate_image(prompt, self.settings.image_size)
            log.debug(
                "Antwort von OpenAI erhalten: image as %s",
                "URL" if answer.url else f"{len(answer.data or b'')} bytes",
            )
            data = answer.data
            if answer.url:
                log.debug("Bild-URL: %s", redact_url(answer.url))
                data = fetch_image(answer.url, timeout=self.settings.upstream_timeout)
            stored = self.images.save(entry.id, data or b"")
        except UpstreamError as error:
            log.error("Fehler bei der Bildgenerierung: %s", error.message)
            raise GenerationFailed(self.chatlog.fail(entry, error.message), error) from None
        except Exception as e:
            log.exception("Fehler bei der Bildgenerierung: %s", type(e).__name__)
            error = UpstreamError("Something went wrong while generating the image.")
            raise GenerationFailed(self.chatlog.fail(entry, error.message), error) from None
        return self.chatlog.finish(
            entry, self.images.url(stored.name), model=answer.model, image_file=stored.name
        )
