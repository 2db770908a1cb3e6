"""A settable clock for the history stores (their `clock=` argument), shared by the tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

CEST = timezone(timedelta(hours=2))


class Clock:
    """Returns `now` until changed: a test moves time on by setting `clock.now`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
