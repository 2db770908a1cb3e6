"""What every kind of answer shares: the settings, provider and stores, the retries within
UPSTREAM_TIMEOUT, storing an outcome while the history database restarts, the conversation's
context, and the one log line per finished generation.

`UPSTREAM_TIMEOUT` bounds a whole answer, retries included. A request is retried (with backoff)
only when that is safe: the upstream failed before sending any of the answer, with a server error
or a refused connection, and there is time left.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from ..config import Settings
from ..history import Entry, HistoryStore, HistoryUnavailable, Permalink
from ..i18n import N_
from ..images import ImageStore, inputs
from ..messages import failure as failure_message
from ..providers import (
    ConnectionDropped,
    Provider,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from . import context as chat_context
from .errors import DailyCapReached, GenerationFailed, PromptError
from .models import ModelCatalog
from .runs import Run

log = logging.getLogger("app.generation")

T = TypeVar("T")
RETRYABLE = (UpstreamUnavailable, UpstreamUnreachable, ConnectionDropped)
BACKOFF_BASE = 0.5  # seconds before the first retry; tripled for each later one
RECORD_PATIENCE = 20.0  # seconds an outcome waits for an unreachable history database


@dataclass(frozen=True)
class Prompt:
    """A prompt to answer and where its entry goes: the turn it follows up (`parent`) or is
    another version of (`replaces`; `parent` is then that turn's parent), and the stored
    picture that goes with it (`input_image`)."""

    text: str
    parent: Entry | None = None
    replaces: Entry | None = None
    input_image: str | None = None


def clean_prompt(raw: object, max_chars: int) -> str:
    """Return the prompt without surrounding blanks, or raise PromptError saying what is wrong."""
    if not isinstance(raw, str) or not raw.strip():
        raise PromptError(N_("Please enter a prompt."))
    # Control characters (except newlines and tabs) and lone surrogates (not encodable, so not
    # storable) have no place in a prompt.
    prompt = "".join(c for c in raw if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs")).strip()
    if not prompt:
        raise PromptError(N_("Please enter a prompt."))
    if len(prompt) > max_chars:
        raise PromptError(
            N_(
                "The prompt is too long (%(n)s characters; the limit is %(limit)s).",
                n=len(prompt),
                limit=max_chars,
            )
        )
    return prompt


def log_finished(
    entry: Entry, started: float, *, error: str | None = None, image_file: str | None = None
) -> None:
    """The one INFO line per finished generation: what, which entry, how it ended, how long and
    how many tokens; the stored file for an image, the error kind for a failure. Never the prompt
    or the answer text (the README shows the format)."""
    usage = entry.usage or {}
    tokens = usage.get("total_tokens") or (usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
    extra = (f" file={image_file}" if image_file else "") + (f" error={error}" if error else "")
    log.info(
        "Generation finished: kind=%s entry=%s model=%s status=%s duration_ms=%d tokens=%s%s",
        entry.kind,
        entry.permalink,
        entry.model or "-",
        entry.status,
        round((time.monotonic() - started) * 1000),
        tokens or "-",
        extra,
    )


# Where an answer cut at MAX_ANSWER_CHARS says so: a key of the entry's `usage` (no schema change;
# the entry page and its JSON read it through Generator.answer_cut_at).
CUT_AT = "answer_cut_at"


class GeneratorBase:
    """The parts of the Generator every kind of answer uses (see the module docstring)."""

    @staticmethod
    def answer_cut_at(entry: Entry) -> int | None:
        """The length an answer was cut to (MAX_ANSWER_CHARS), or None if it is complete."""
        value = (entry.usage or {}).get(CUT_AT)
        return value if isinstance(value, int) else None

    def __init__(
        self,
        settings: Settings,
        provider: Provider,
        chatlog: HistoryStore,
        images: ImageStore,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.chatlog = chatlog
        self.images = images
        self.models = ModelCatalog(provider)
        self.sleep = sleep
        self._workers: set[threading.Thread] = set()
        self._runs: dict[str, Run] = {}  # answers streaming in this process, by entry id
        self._workers_lock = threading.Lock()

    def check_daily_cap(self) -> None:
        """Raise DailyCapReached when DAILY_REQUEST_CAP is set and today's entries reach it.

        Counted from the shared history, so the cap holds across workers and processes.
        """
        cap = self.settings.daily_request_cap
        if cap and self.chatlog.count_on(self.chatlog.today()) >= cap:
            raise DailyCapReached(cap)

    def choose_model(self, requested: object) -> str:
        """The chat model to use: the requested one if the upstream offers it, else the default."""
        if requested in (None, ""):
            return self.provider.chat_model
        if not isinstance(requested, str) or requested not in self.models.names():
            raise PromptError(N_("Unknown model. Choose one of the models the upstream offers."))
        return requested

    def _with_retries(self, call: Callable[[float], T], deadline: float) -> T:
        """Run `call(timeout)`, retrying safe failures while time remains before `deadline`."""
        retries = self.settings.upstream_retries
        for attempt in range(retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(failure_message("timeout"))
            try:
                return call(remaining)
            except RETRYABLE as error:
                wait = BACKOFF_BASE * 3**attempt
                if attempt == retries or deadline - time.monotonic() <= wait + 1:
                    raise
                log.warning("Upstream failed (%s); retrying in %.1f s", error.kind, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def find_parent(self, raw: object) -> Entry | None:
        """The entry a follow-up continues, from its permalink; None without one.

        PromptError when the permalink is malformed, unknown, deleted, or not a finished answer.
        """
        if raw is None or raw == "":
            return None
        target = Permalink.parse(raw)
        parent = self.chatlog.get(*target) if target else None
        if parent is None or parent.deleted:
            raise PromptError(N_("The entry to follow up does not exist (any more)."))
        if parent.status == "pending":
            raise PromptError(N_("The entry to follow up is still being answered."))
        return parent

    def context(self, entry: Entry) -> tuple[list[chat_context.Message], int]:
        """The `messages` for `entry` (app.context): SYSTEM_PROMPT, the earlier turns of its
        branch of the conversation (user/assistant, oldest first, pictures as content parts),
        then its own prompt; and how many earlier turns were left out to keep within
        CONTEXT_CHARS (the oldest go first; the new prompt always stays)."""
        built = chat_context.build(
            self.chatlog.chain(entry),
            self.settings.context_chars,
            self.settings.system_prompt,
            self._image_data,
        )
        return built.messages, built.dropped

    def _image_data(self, name: str) -> str | None:
        """A stored picture as a data URL; None when it is gone (its turn goes as text)."""
        try:
            return inputs.data_url(self.images, name)
        except (FileNotFoundError, ValueError):
            return None

    def _begin(self, kind: str, prompt: Prompt, model: str) -> Entry:
        """Store `prompt` as a pending entry of `kind`, before the upstream is asked."""
        return self.chatlog.begin(
            kind,
            prompt.text,
            model,
            demo=self.provider.demo,
            parent=prompt.parent,
            replaces=prompt.replaces,
            input_image=prompt.input_image,
        )

    def _fail(self, entry: Entry, error: UpstreamError, started: float) -> GenerationFailed:
        error.partial = error.partial[: self.settings.max_answer_chars]
        stored = self._record(partial(self.chatlog.fail, entry, error.message, partial=error.partial))
        log_finished(stored, started, error=error.kind)
        return GenerationFailed(stored, error)

    def _record(self, write: Callable[[], Entry]) -> Entry:
        """Store an outcome. While the history database is unreachable (a restart, a fail-over),
        keep trying for up to RECORD_PATIENCE seconds, so an answer that arrived is not lost."""
        deadline = time.monotonic() + RECORD_PATIENCE
        delay = 0.25
        for _ in range(100):  # bounded by the deadline well before this
            try:
                return write()
            except HistoryUnavailable:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("The history database is unreachable; saving the answer again in %.2f s.", delay)
                self.sleep(delay)
                delay = min(delay * 2, 4.0)
        return write()
