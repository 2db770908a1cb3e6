"""Which server process streams a pending entry, and Stop requests for it.

A streamed answer is produced by exactly one request in one process; a reconnecting browser, a
second tab or another server only follows it. The claim and the Stop request live where every
process sharing the history sees them: marker files in `DATA_DIR/run` beside the TinyDB history,
a table beside the PostgreSQL one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class StreamClaims(Protocol):
    """Claims on pending entries' streams and Stop requests, shared by every process."""

    # How often (seconds) a stream looks for a Stop request between chunks (0: every chunk).
    poll_interval: float

    def claim(self, entry_id: str) -> bool:
        """Claim the stream of an entry; True for exactly one caller across processes."""
        ...

    def claimed_for(self, entry_id: str) -> float | None:
        """Seconds since the entry's stream was claimed, None if nobody holds it."""
        ...

    def request_stop(self, entry_id: str) -> None:
        """Ask whoever streams the entry to stop."""
        ...

    def stop_requested(self, entry_id: str) -> bool:
        """Whether Stop was asked for the entry (False when that cannot be told right now)."""
        ...

    def release(self, entry_id: str) -> None:
        """Forget the claim and any Stop request (the entry is finished)."""
        ...


class FileClaims:
    """Claims as marker files: `<entry id>.claim` (created exclusively) and `<entry id>.stop`."""

    poll_interval = 0.0  # a stat() is cheap enough to check after every chunk

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def claim(self, entry_id: str) -> bool:
        try:
            (self.run_dir / f"{entry_id}.claim").open("x").close()
        except FileExistsError:
            return False
        return True

    def claimed_for(self, entry_id: str) -> float | None:
        try:
            return time.time() - (self.run_dir / f"{entry_id}.claim").stat().st_mtime
        except FileNotFoundError:
            return None

    def request_stop(self, entry_id: str) -> None:
        (self.run_dir / f"{entry_id}.stop").touch()

    def stop_requested(self, entry_id: str) -> bool:
        return (self.run_dir / f"{entry_id}.stop").exists()

    def release(self, entry_id: str) -> None:
        for suffix in (".claim", ".stop"):
            (self.run_dir / f"{entry_id}{suffix}").unlink(missing_ok=True)


# Runs one function in a database transaction and returns its result (SQLChatLog._tx).
Transaction = Callable[[Callable[[Any], Any]], Any]


class SQLClaims:
    """Claims as rows of the `stream_runs` table, so a stream on one server can be stopped from
    another."""

    poll_interval = 0.25  # a round trip per check: not after every token

    def __init__(self, tx: Transaction, unavailable: type[Exception]) -> None:
        self.tx = tx
        self.unavailable = unavailable

    @staticmethod
    def _run(statement: str, entry_id: str) -> Callable[[Any], Any]:
        from sqlalchemy import text

        return lambda conn: conn.execute(text(statement), {"id": entry_id})

    def claim(self, entry_id: str) -> bool:
        stmt = (
            "INSERT INTO stream_runs (entry_id, claimed_at, stop_requested) VALUES (:id, now(), false) "
            "ON CONFLICT (entry_id) DO UPDATE SET claimed_at = now() "
            "WHERE stream_runs.claimed_at IS NULL RETURNING 1"
        )
        return self.tx(lambda conn: self._run(stmt, entry_id)(conn).first() is not None)

    def claimed_for(self, entry_id: str) -> float | None:
        stmt = (
            "SELECT EXTRACT(EPOCH FROM now() - claimed_at) FROM stream_runs "
            "WHERE entry_id = :id AND claimed_at IS NOT NULL"
        )
        value = self.tx(lambda conn: self._run(stmt, entry_id)(conn).scalar())
        return float(value) if value is not None else None

    def request_stop(self, entry_id: str) -> None:
        stmt = (
            "INSERT INTO stream_runs (entry_id, claimed_at, stop_requested) VALUES (:id, NULL, true) "
            "ON CONFLICT (entry_id) DO UPDATE SET stop_requested = true"
        )
        self.tx(self._run(stmt, entry_id))

    def stop_requested(self, entry_id: str) -> bool:
        stmt = "SELECT stop_requested FROM stream_runs WHERE entry_id = :id"
        try:
            return bool(self.tx(lambda conn: self._run(stmt, entry_id)(conn).scalar()))
        except self.unavailable:
            return False  # a database hiccup must not cut an answer short; Stop is asked again

    def release(self, entry_id: str) -> None:
        self.tx(self._run("DELETE FROM stream_runs WHERE entry_id = :id", entry_id))
