"""A streamed answer in progress, shared by everyone in this process who follows it.

The answer is produced once, in a worker thread, from the moment its prompt is stored; the
browser's event stream (and a second tab, or a reconnect) follows it from the first token on,
however late it connects. Nothing here talks to the upstream or the history: see streaming.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..history import Entry


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed answer: a `token` (text) or the `final` entry."""

    kind: str
    text: str = ""
    entry: Entry | None = None


class Run:
    """The events of one answer so far, and a way to wait for more."""

    def __init__(self) -> None:
        self._events: list[StreamEvent] = []
        self._done = False
        self._closed_at = 0.0
        self._followed = False
        self._changed = threading.Condition()

    def push(self, event: StreamEvent) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def close(self) -> None:
        """No more events will come (the answer is stored, or its worker ended)."""
        with self._changed:
            self._done = True
            self._closed_at = time.monotonic()
            self._changed.notify_all()

    def worth_following(self) -> bool:
        """Whether a new listener should follow this run: while it runs, and once after it has
        finished (a browser that connected late). Later ones just get the stored outcome."""
        with self._changed:
            return not (self._done and self._followed)

    def closed_for(self, seconds: float) -> bool:
        """True once the run has been closed for longer than `seconds`."""
        return self._done and time.monotonic() - self._closed_at > seconds

    def follow(self, timeout: float) -> Iterator[StreamEvent]:
        """Every event from the first on, as they come, until the run closes or `timeout`
        seconds have passed."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            self._followed = True
        while True:
            with self._changed:
                while seen == len(self._events) and not self._done:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._changed.wait(timeout=remaining)
                new, done = self._events[seen:], self._done
                seen = len(self._events)
            yield from new
            if done:
                return
