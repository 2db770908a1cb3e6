"""Code and text answers: asked in one request (the seed's JSON), or streamed a chunk at a time
(`stream_code`, which a run of app.generation.streaming drives).

Whatever happens to a streamed answer (it completes, the upstream fails, Stop, the browser goes
away, MAX_ANSWER_CHARS), the entry ends up stored as done, failed or stopped with every piece of
text that arrived.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from functools import partial

from ..history import Entry, HistoryUnavailable
from ..messages import failure as failure_message
from ..messages import failure_fields
from ..providers import (
    EmptyAnswer,
    IncompleteAnswer,
    Message,
    Refused,
    TextStream,
    UpstreamError,
    UpstreamTimeout,
)
from .base import CUT_AT, GeneratorBase, Prompt, log_finished
from .runs import StreamEvent

log = logging.getLogger("app.generation")

Record = Callable[[], Entry]  # the write that stores an outcome


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


@dataclass
class _Received:
    """What has arrived of a streamed answer so far."""

    model: str
    parts: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    finish_reason: str | None = None
    length: int = 0  # characters received, for MAX_ANSWER_CHARS

    @property
    def text(self) -> str:
        return "".join(self.parts)


class CodeAnswers(GeneratorBase):
    """Answers from the chat model."""

    def generate_code(self, prompt: Prompt, model: str | None = None) -> Entry:
        """Answer `prompt` with the chat model (`model`, or the default); raise GenerationFailed
        after storing the failure."""
        started = time.monotonic()
        entry = self._begin("code", prompt, model or self.provider.chat_model)
        log.debug(
            "Sende Anfrage an OpenAI API... (chat, model %s, %d characters)", entry.model, len(prompt.text)
        )
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
        got = _Received(model=entry.model)
        try:
            record = yield from self._streamed(entry, messages, dropped, deadline, got)
        except UpstreamError as error:
            error.partial = (error.partial or got.text)[: self.settings.max_answer_chars]
            failure = error.kind
            record = partial(self.chatlog.fail, entry, error.message, partial=error.partial, usage=got.usage)
        except Exception:
            log.exception("Chat stream failed unexpectedly")
            failure = UpstreamError.kind
            message = failure_message("answer_failed")
            record = partial(self.chatlog.fail, entry, message, partial=got.text)
        outcome, failure = self._store_streamed(entry, record, got, failure)
        log_finished(outcome, started, error=failure)
        yield StreamEvent("final", entry=outcome)

    def _streamed(
        self, entry: Entry, messages: list[Message], dropped: int, deadline: float, got: _Received
    ) -> Generator[StreamEvent, None, Record]:
        """Ask for the stream (with retries) and pass its text on; returns how to store it."""
        stream = self._with_retries(
            lambda timeout: self.provider.stream(messages, entry.model, timeout), deadline
        )
        # A stall between chunks must not outlast the deadline either: close the stream then.
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), stream.close)
        watchdog.daemon = True
        watchdog.start()
        record = yield from self._chunks(entry, stream, dropped, deadline, got)
        watchdog.cancel()
        if record is None and time.monotonic() > deadline:
            raise UpstreamTimeout(failure_message("unfinished_in_time"))
        return record if record is not None else self._complete(entry, dropped, got)

    def _chunks(
        self, entry: Entry, stream: TextStream, dropped: int, deadline: float, got: _Received
    ) -> Generator[StreamEvent, None, Record | None]:
        """The stream's text as `token` events until it ends (None), or until MAX_ANSWER_CHARS
        or Stop end it early (how to store what arrived)."""
        stop_check = _Every(self.chatlog.claims.poll_interval)
        limit = self.settings.max_answer_chars
        for chunk in stream:
            if chunk.text and got.length + len(chunk.text) > limit:
                # MAX_ANSWER_CHARS: keep what fits, stop the upstream, store it marked as cut.
                head = chunk.text[: limit - got.length]
                if head:
                    got.parts.append(head)
                    yield StreamEvent("token", text=head)
                stream.close()
                log.warning("The streamed answer was cut at MAX_ANSWER_CHARS (%d characters)", limit)
                got.usage = {**got.usage, CUT_AT: limit}
                return partial(
                    self.chatlog.finish,
                    entry,
                    got.text,
                    model=got.model,
                    usage=got.usage,
                    context_dropped=dropped,
                )
            if chunk.text:
                got.length += len(chunk.text)
                got.parts.append(chunk.text)
                yield StreamEvent("token", text=chunk.text)
            got.usage = chunk.usage or got.usage
            got.model = chunk.model or got.model
            got.finish_reason = chunk.finish_reason or got.finish_reason
            if stop_check.due() and self.chatlog.claims.stop_requested(entry.id):
                stream.close()
                return partial(self.chatlog.stop, entry, got.text, model=got.model, usage=got.usage)
            if time.monotonic() > deadline:
                stream.close()
                raise UpstreamTimeout(failure_message("unfinished_in_time"))
        return None

    def _complete(self, entry: Entry, dropped: int, got: _Received) -> Record:
        """How to store a stream that ended by itself: the answer, unless it was filtered, cut
        off or empty (an UpstreamError then)."""
        text = got.text
        if got.finish_reason == "content_filter":
            raise Refused(failure_message("content_filter"))
        if got.finish_reason is None:
            raise IncompleteAnswer(failure_message("ended_early"))
        if not text.strip():
            raise EmptyAnswer(failure_message("empty_answer"))
        log.debug(
            "Antwort von OpenAI erhalten: chat stream, model %s, %d characters, usage %s",
            got.model,
            len(text),
            got.usage or "n/a",
        )
        return partial(
            self.chatlog.finish, entry, text, model=got.model, usage=got.usage, context_dropped=dropped
        )

    def _store_streamed(
        self, entry: Entry, record: Record, got: _Received, failure: str | None
    ) -> tuple[Entry, str | None]:
        """Store the outcome (and let go of the claim); the entry as stored, and the failure."""
        try:
            outcome = self._record(record)
        except Exception as e:
            # Not stored: the entry stays pending (its prompt is safe) and is marked interrupted,
            # with Retry, when it is next opened. The browser is told what happened now.
            if not isinstance(e, HistoryUnavailable):
                log.exception("Storing the answer failed")
            unsaved = failure_fields(failure_message("not_saved"))
            return replace(entry, status="failed", response=got.text, **unsaved), "not_saved"
        # The answer is stored; a leftover claim only matters to a pending entry.
        with contextlib.suppress(HistoryUnavailable):
            self._release(entry)
        return outcome, failure

    def _release(self, entry: Entry) -> None:
        self.chatlog.claims.release(entry.id)
