"""The stream protocol of code answers: who answers a pending entry (exactly once across
processes), who follows it, what a stale or stopped one becomes, and waiting for answers still
being written at shutdown.

An answer is produced once, in a worker thread of the process that claimed it, from the moment
its prompt is stored (`start_code(stream=True)`), and published as a Run (app.generation.runs);
every listener in that process follows the run, and a listener in another process waits for the
stored outcome. Stop requests and claims live with the history (files, or the database), so they
hold across workers and servers.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from ..history import Entry, HistoryUnavailable
from .base import RECORD_PATIENCE, Prompt
from .code import CodeAnswers
from .errors import HISTORY_DOWN, INTERRUPTED
from .runs import Run, StreamEvent

log = logging.getLogger("app.generation")

CLAIM_GRACE = 30.0  # seconds past UPSTREAM_TIMEOUT after which a claimed stream is presumed dead
LATE_START = 600.0  # a pending entry older than this is not answered without a new request
POLL_SECONDS = 0.25  # how often a stream streamed by another process is looked at
RUN_KEPT = 60.0  # seconds a finished run's events stay to be replayed


def _age(entry: Entry) -> float:
    """Seconds since the entry was created (an unreadable time counts as very old)."""
    try:
        created = datetime.fromisoformat(entry.created_at)
        return (datetime.now(created.tzinfo) - created).total_seconds()
    except ValueError:
        return float("inf")


class StreamedAnswers(CodeAnswers):
    """Code answers streamed to whoever follows them (see the module docstring)."""

    def start_code(self, prompt: Prompt, model: str | None = None, *, stream: bool = False) -> Entry:
        """Store the prompt as a pending code entry (for `model`, or the default). With `stream`,
        start answering it at once in the background, so the answer is on its way while the
        browser connects to follow it."""
        entry = self._begin("code", prompt, model or self.provider.chat_model)
        if stream and self.chatlog.claims.claim(entry.id):
            self._start_run(entry)
        return entry

    def drain(self, timeout: float) -> int:
        """Wait (up to `timeout` s) for streamed answers still being written; returns how many
        are left. Called on shutdown so in-flight answers are stored before the process ends."""
        deadline = time.monotonic() + timeout
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return sum(1 for worker in workers if worker.is_alive())

    def request_stop(self, entry: Entry) -> bool:
        """Ask the (possibly other) process streaming `entry` to stop, if it is still being
        answered (it checks between chunks); whether it was."""
        if entry.status != "pending":
            return False
        self.chatlog.claims.request_stop(entry.id)
        return True

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
        A stream claimed by another process is waited for and ends with its outcome alone.

        When the history database goes away meanwhile, the `final` event says so in place of
        the answer (the listener's stream has begun: it cannot become an error response)."""
        try:
            yield from self._follow(entry)
        except HistoryUnavailable:
            yield StreamEvent("final", entry=replace(entry, status="failed", error=HISTORY_DOWN))

    def _follow(self, entry: Entry) -> Iterator[StreamEvent]:
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
