"""The generation service: validate the prompt, store it, ask the upstream, store the outcome.

The prompt is stored (pending) before the upstream is called, so a crash or an upstream failure
never loses what the user typed: the entry is then marked failed with a human message.

`UPSTREAM_TIMEOUT` bounds a whole answer, retries included. A request is retried (with backoff)
only when that is safe: the upstream failed before sending any of the answer, with a server error
or a refused connection, and there is time left.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import TypeVar

from . import context as chat_context
from . import image_options, input_images
from .config import Settings
from .history import Entry, HistoryStore, HistoryUnavailable, Permalink
from .i18n import N_
from .image_options import ImageOptions
from .images import BaseImageStore, ImageStoreUnavailable, StoredImage, fetch_image, redact_url
from .messages import failure as failure_message
from .messages import message_of
from .models import ModelCatalog
from .providers import (
    ConnectionDropped,
    EmptyAnswer,
    ImageAnswer,
    IncompleteAnswer,
    Provider,
    Refused,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from .streaming import Run, StreamEvent

log = logging.getLogger("app.generation")

T = TypeVar("T")
RETRYABLE = (UpstreamUnavailable, UpstreamUnreachable, ConnectionDropped)
BACKOFF_BASE = 0.5  # seconds before the first retry; tripled for each later one
CLAIM_GRACE = 30.0  # seconds past UPSTREAM_TIMEOUT after which a claimed stream is presumed dead
LATE_START = 600.0  # a pending entry older than this is not answered without a new request
RECORD_PATIENCE = 20.0  # seconds an outcome waits for an unreachable history database
POLL_SECONDS = 0.25  # how often a stream streamed by another process is looked at
RUN_KEPT = 60.0  # seconds a finished run's events stay to be replayed


INTERRUPTED = failure_message("interrupted")


def _age(entry: Entry) -> float:
    """Seconds since the entry was created (an unreadable time counts as very old)."""
    try:
        created = datetime.fromisoformat(entry.created_at)
        return (datetime.now(created.tzinfo) - created).total_seconds()
    except ValueError:
        return float("inf")


class _Every:
    """`due()` is true at most once per `interval` seconds (every time for 0)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


class ImageNotStored(UpstreamError):
    """The image was made but the image store (object storage) could not take it."""

    status = 503
    kind = "image_store"


class DailyCapReached(Exception):
    """DAILY_REQUEST_CAP generations were made today; `message` says so (HTTP 429)."""

    def __init__(self, cap: int) -> None:
        self.message = N_(
            "The daily limit of %(cap)s generations is reached. It resets at midnight (server time).", cap=cap
        )
        super().__init__(self.message)


class PromptError(ValueError):
    """The request cannot be answered as asked (a missing or too long prompt, an unknown model
    or permalink, a picture that cannot be used); `message` is shown to the user, `status` is
    the HTTP status (400 unless a more precise one fits: 404, 409, 410)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class GenerationFailed(Exception):
    """The upstream failed; the entry is stored, marked failed, with `error.message`."""

    entry: Entry
    error: UpstreamError


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


class Generator:
    """Ties a provider, the history and the image store together for one app."""

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
        images: BaseImageStore,
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

    # -- helpers -----------------------------------------------------------------------------

    def check_daily_cap(self) -> None:
        """Raise DailyCapReached when DAILY_REQUEST_CAP is set and today's entries reach it.

        Counted from the shared history, so the cap holds across workers and processes.
        """
        cap = self.settings.daily_request_cap
        if cap and self.chatlog.count_on(self.chatlog.today()) >= cap:
            raise DailyCapReached(cap)

    def drain(self, timeout: float) -> int:
        """Wait (up to `timeout` s) for streamed answers still being written; returns how many
        are left. Called on shutdown so in-flight answers are stored before the process ends."""
        deadline = time.monotonic() + timeout
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return sum(1 for worker in workers if worker.is_alive())

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
            return input_images.data_url(self.images, name)
        except (FileNotFoundError, ValueError):
            return None

    def _fail(self, entry: Entry, error: UpstreamError, started: float) -> GenerationFailed:
        error.partial = error.partial[: self.settings.max_answer_chars]
        stored = self._record(partial(self.chatlog.fail, entry, error.message, partial=error.partial))
        log_finished(stored, started, error=error.kind)
        return GenerationFailed(stored, error)

    # -- code / text -------------------------------------------------------------------------

    def start_code(
        self,
        prompt: str,
        model: str | None = None,
        parent: Entry | None = None,
        *,
        stream: bool = False,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        """Store the prompt as a pending code entry. With `stream`, start answering it at once
        in the background, so the answer is on its way while the browser connects to follow it.

        `replaces`: the turn this is another version of (`parent` is then that turn's parent);
        `input_image`: the stored picture that goes with the prompt."""
        entry = self.chatlog.begin(
            "code",
            prompt,
            model or self.provider.chat_model,
            demo=self.provider.demo,
            parent=parent,
            replaces=replaces,
            input_image=input_image,
        )
        if stream and self.chatlog.claims.claim(entry.id):
            self._start_run(entry)
        return entry

    def generate_code(
        self,
        prompt: str,
        model: str | None = None,
        parent: Entry | None = None,
        *,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        """Answer `prompt` with the chat model; raise GenerationFailed after storing the failure."""
        started = time.monotonic()
        entry = self.start_code(prompt, model, parent, replaces=replaces, input_image=input_image)
        log.debug("Sende Anfrage an OpenAI API... (chat, model %s, %d characters)", entry.model, len(prompt))
        deadline = started + self.settings.upstream_timeout
        messages, dropped = self.context(entry)
        try:
            answer = self._with_retries(
                lambda timeout: self.provider.complete(messages, entry.model, timeout), deadline
            )
        except UpstreamError as error:
            raise self._fail(entry, error, started) from None
        except Exception:
            log.exception("Chat generation failed unexpectedly")
            raise self._fail(entry, UpstreamError(failure_message("answer_failed")), started) from None
        log.debug(
            "Antwort von OpenAI erhalten: chat answer, model %s, %d characters, usage %s",
            answer.model,
            len(answer.text),
            answer.usage or "n/a",
        )
        text, usage = answer.text, dict(answer.usage or {})
        limit = self.settings.max_answer_chars
        if len(text) > limit:
            log.warning("The answer was cut at MAX_ANSWER_CHARS (%d of %d characters)", limit, len(text))
            text, usage[CUT_AT] = text[:limit], limit
        finished = self._record(
            partial(
                self.chatlog.finish,
                entry,
                text,
                model=answer.model,
                usage=usage,
                context_dropped=dropped,
            )
        )
        log_finished(finished, started)
        return finished

    def request_stop(self, entry: Entry) -> None:
        """Ask the (possibly other) process streaming `entry` to stop; it checks between chunks."""
        self.chatlog.claims.request_stop(entry.id)

    def claim(self, entry: Entry) -> str:
        """Who streams the pending `entry`: "mine" (the caller, exactly once across processes),
        "busy" (another request is streaming it), or "stale" (a stream that died with its server,
        or an entry too old to start answering now without being asked again)."""
        if _age(entry) > LATE_START and self.chatlog.claims.claimed_for(entry.id) is None:
            return "stale"
        if self.chatlog.claims.claim(entry.id):
            # Another stream may have finished (and released its claim) since the caller read
            # the entry: look again before asking the upstream.
            current = self.chatlog.get(entry.date, entry.index)
            if current is None or current.status != "pending":
                self.chatlog.claims.release(entry.id)
                return "done"
            return "mine"
        claimed_for = self.chatlog.claims.claimed_for(entry.id)
        if claimed_for is None:
            return "busy"  # just finished: the caller will see the outcome
        return "stale" if claimed_for > self.settings.upstream_timeout + CLAIM_GRACE else "busy"

    def abandon(self, entry: Entry) -> Entry:
        """Mark a stale pending entry failed; its prompt stays, with Retry."""
        self._release(entry)
        return self.chatlog.fail(entry, INTERRUPTED)

    def reap_interrupted(self) -> int:
        """Mark every answer that a dead server left pending as interrupted (failed, prompt
        kept, Retry offered), in History, the exports and the API alike; returns how many.

        An entry is left alone while it could still be answered: younger than the longest a
        request may take to finish and store its answer, or streamed under a live claim.
        """
        patience = self.settings.upstream_timeout + CLAIM_GRACE + RECORD_PATIENCE
        reaped = 0
        for entry in self.chatlog.pending():
            if _age(entry) <= patience:
                continue
            claimed_for = self.chatlog.claims.claimed_for(entry.id)
            if claimed_for is not None and claimed_for <= patience:
                continue
            if self.abandon(entry).status == "failed":
                reaped += 1
        if reaped:
            log.info("Marked %d answers interrupted by a server that stopped as failed.", reaped)
        return reaped

    def _start_run(self, entry: Entry) -> Run:
        """Answer the claimed `entry` in a worker thread, publishing its events in a Run.

        If nobody follows it (the browser went to another page, a closed tab), the answer still
        completes and is stored, so nothing is lost; only Stop (or the deadline) cancels it.
        """
        run = Run()

        def work() -> None:
            try:
                for event in self.stream_code(entry):
                    run.push(event)
            finally:
                run.close()

        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run, args=(work,), name=f"stream-{entry.id[:8]}", daemon=True
        )
        with self._workers_lock:
            self._workers = {w for w in self._workers if w.is_alive()} | {worker}
            # A finished run is kept a little while, so a browser that connects after a quick
            # answer is complete still sees it arrive token by token.
            self._runs = {k: r for k, r in self._runs.items() if not r.closed_for(RUN_KEPT)}
            self._runs[entry.id] = run
        worker.start()
        return run

    def follow(self, entry: Entry) -> Iterator[StreamEvent]:
        """The answer of `entry` for one listener: its `token` events from the first on, then
        exactly one `final` event. The first to ask starts the answer (unless its POST already
        did); everyone else follows it, so a reconnecting browser never asks the upstream twice.
        A stream claimed by another process is waited for and ends with its outcome alone."""
        with self._workers_lock:
            run = self._runs.get(entry.id)
        if run is not None and not run.worth_following():
            run = None
        if run is not None or entry.status == "pending":
            if run is None:
                state = self.claim(entry)
                if state == "stale":
                    yield StreamEvent("final", entry=self.abandon(entry))
                    return
                if state == "busy":
                    yield StreamEvent("final", entry=self._await_outcome(entry))
                    return
                run = self._start_run(entry) if state == "mine" else None
            if run is not None:
                final: Entry | None = None
                for event in run.follow(self.settings.upstream_timeout + CLAIM_GRACE):
                    if event.kind == "final":
                        final = event.entry
                    else:
                        yield event
                if final is not None and final.status != "pending":
                    yield StreamEvent("final", entry=final)
                    return
        yield StreamEvent("final", entry=self.chatlog.get(entry.date, entry.index) or entry)

    def _await_outcome(self, entry: Entry) -> Entry:
        """Wait (bounded) for another process to store the answer of `entry`."""
        current = entry
        for _ in range(int((self.settings.upstream_timeout + 10) / POLL_SECONDS)):
            self.sleep(POLL_SECONDS)
            current = self.chatlog.get(entry.date, entry.index) or entry
            if current.status != "pending":
                break
        return current

    def _release(self, entry: Entry) -> None:
        self.chatlog.claims.release(entry.id)

    def stream_code(self, entry: Entry) -> Iterator[StreamEvent]:
        """Stream the answer of a pending entry: `token` events, then exactly one `final` event.

        Whatever happens (answer, upstream fault, Stop, the browser going away), the entry ends
        up stored as done, failed or stopped, with every piece of text that arrived.
        """
        log.debug("Sende Anfrage an OpenAI API... (chat stream, model %s)", entry.model)
        started = time.monotonic()
        deadline = started + self.settings.upstream_timeout
        failure: str | None = None
        messages, dropped = self.context(entry)
        parts: list[str] = []
        usage: dict[str, int] = {}
        model = entry.model
        finish_reason: str | None = None
        record: Callable[[], Entry] | None = None
        limit, received = self.settings.max_answer_chars, 0  # MAX_ANSWER_CHARS, and how far
        try:
            stream = self._with_retries(
                lambda timeout: self.provider.stream(messages, entry.model, timeout), deadline
            )
            # A stall between chunks must not outlast the deadline either: close the stream then.
            watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), stream.close)
            watchdog.daemon = True
            watchdog.start()
            stop_check = _Every(self.chatlog.claims.poll_interval)
            for chunk in stream:
                if chunk.text and received + len(chunk.text) > limit:
                    # MAX_ANSWER_CHARS: keep what fits, stop the upstream, store it marked as cut.
                    head = chunk.text[: limit - received]
                    if head:
                        parts.append(head)
                        yield StreamEvent("token", text=head)
                    stream.close()
                    log.warning("The streamed answer was cut at MAX_ANSWER_CHARS (%d characters)", limit)
                    usage = {**usage, CUT_AT: limit}
                    record = partial(
                        self.chatlog.finish,
                        entry,
                        "".join(parts),
                        model=model,
                        usage=usage,
                        context_dropped=dropped,
                    )
                    break
                if chunk.text:
                    received += len(chunk.text)
                    parts.append(chunk.text)
                    yield StreamEvent("token", text=chunk.text)
                usage = chunk.usage or usage
                model = chunk.model or model
                finish_reason = chunk.finish_reason or finish_reason
                if stop_check.due() and self.chatlog.claims.stop_requested(entry.id):
                    stream.close()
                    record = partial(self.chatlog.stop, entry, "".join(parts), model=model, usage=usage)
                    break
                if time.monotonic() > deadline:
                    stream.close()
                    raise UpstreamTimeout(failure_message("unfinished_in_time"))
            watchdog.cancel()
            if record is None and time.monotonic() > deadline:
                raise UpstreamTimeout(failure_message("unfinished_in_time"))
            if record is None:
                text = "".join(parts)
                if finish_reason == "content_filter":
                    raise Refused(failure_message("content_filter"))
                if finish_reason is None:
                    raise IncompleteAnswer(failure_message("ended_early"))
                if not text.strip():
                    raise EmptyAnswer(failure_message("empty_answer"))
                log.debug(
                    "Antwort von OpenAI erhalten: chat stream, model %s, %d characters, usage %s",
                    model,
                    len(text),
                    usage or "n/a",
                )
                record = partial(
                    self.chatlog.finish, entry, text, model=model, usage=usage, context_dropped=dropped
                )
        except UpstreamError as error:
            error.partial = (error.partial or "".join(parts))[: self.settings.max_answer_chars]
            failure = error.kind
            record = partial(self.chatlog.fail, entry, error.message, partial=error.partial, usage=usage)
        except Exception:
            log.exception("Chat stream failed unexpectedly")
            failure = UpstreamError.kind
            message = failure_message("answer_failed")
            record = partial(self.chatlog.fail, entry, message, partial="".join(parts))
        try:
            outcome = self._record(record)
        except Exception as e:
            # Not stored: the entry stays pending (its prompt is safe) and is marked interrupted,
            # with Retry, when it is next opened. The browser is told what happened now.
            if not isinstance(e, HistoryUnavailable):
                log.exception("Storing the answer failed")
            message = failure_message("not_saved")
            outcome = replace(
                entry, status="failed", error=message, error_kind="not_saved", response="".join(parts)
            )
            failure = "not_saved"
        else:
            # The answer is stored; a leftover claim only matters to a pending entry.
            with contextlib.suppress(HistoryUnavailable):
                self._release(entry)
        log_finished(outcome, started, error=failure)
        yield StreamEvent("final", entry=outcome)

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

    # -- images ------------------------------------------------------------------------------

    def _make_image(self, entry: Entry, options: ImageOptions, deadline: float) -> tuple[str, StoredImage]:
        """Ask for the entry's picture, fetch it if it came as a URL, and store it as the entry's
        own file; returns the model that made it and the stored image."""
        answer = self._with_retries(lambda timeout: self._image_answer(entry, options, timeout), deadline)
        log.debug(
            "Antwort von OpenAI erhalten: image as %s",
            "URL" if answer.url else f"{len(answer.data or b'')} bytes",
        )
        data = answer.data
        if answer.url:
            log.debug("Bild-URL: %s", redact_url(answer.url))
            data = fetch_image(
                answer.url,
                timeout=max(1.0, deadline - time.monotonic()),
                trusted_upstream=self.settings.openai_base_url,
            )
        return answer.model, self.images.save(entry.id, data or b"")

    def _image_answer(self, entry: Entry, options: ImageOptions, timeout: float) -> ImageAnswer:
        """A new picture for `entry`: generated from its prompt, or its input picture edited."""
        if entry.input_image:
            picture = self.images.read(entry.input_image)
            return self.provider.edit_image(entry.prompt, picture, options, timeout)
        return self.provider.generate_image(entry.prompt, options, timeout)

    def image_options(
        self, size: object = None, quality: object = None, style: object = None
    ) -> ImageOptions:
        """Validate requested image options for the image model; PromptError says what is wrong."""
        try:
            return image_options.choose(
                self.provider.image_model, self.settings.image_size, size, quality, style
            )
        except ValueError as e:
            raise PromptError(message_of(e)) from None

    def generate_image(
        self,
        prompt: str,
        options: ImageOptions | None = None,
        parent: Entry | None = None,
        *,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        """Generate, validate and store one image for `prompt` as this entry's own file.

        With `parent` (an image entry) and no picture it is a variation: a new image from the
        edited prompt, linked to the earlier one. With `input_image` it is an edit: the stored
        picture and the prompt go to the image model's edits endpoint. The image APIs take no
        conversation, so only the prompt (and picture) count.
        """
        options = options or self.image_options()
        started = time.monotonic()
        entry = self.chatlog.begin(
            "image",
            prompt,
            self.provider.image_model,
            demo=self.provider.demo,
            parent=parent,
            replaces=replaces,
            input_image=input_image,
        )
        log.debug("Sende Anfrage an OpenAI API... (image, model %s, %s)", entry.model, options.as_dict())
        deadline = started + self.settings.upstream_timeout
        try:
            model, stored = self._make_image(entry, options, deadline)
        except UpstreamError as error:
            log.error("Fehler bei der Bildgenerierung: %s", error.message)
            raise self._fail(entry, error, started) from None
        except ImageStoreUnavailable:
            log.error("Fehler bei der Bildgenerierung: the image store cannot be reached")
            message = failure_message("image_not_stored")
            raise self._fail(entry, ImageNotStored(message), started) from None
        except Exception as e:
            log.exception("Fehler bei der Bildgenerierung: %s", type(e).__name__)
            raise self._fail(entry, UpstreamError(failure_message("image_failed")), started) from None
        finished = self._record(
            partial(
                self.chatlog.finish,
                entry,
                self.images.url(stored.name),
                model=model,
                image_file=stored.name,
                options=options.as_dict(),
                dimensions=[stored.width, stored.height],
            )
        )
        log_finished(finished, started, image_file=stored.name)
        if finished.deleted:
            self.images.delete(stored.name)  # deleted while it was being made: keep nothing
        return finished
