"""The append-only journal under the TinyDB day documents, and the lock its writers share.

A journal is a file of records, one per line: `<crc32 as 8 hex digits> <JSON>\n`. Writers append
a whole record with one `write()` on a file opened with O_APPEND while they hold the history lock,
so records never interleave. A reader (in any process, without the lock) takes only complete
lines; a last line without its newline is a write in progress or one torn by a crash, and a line
whose checksum does not match is damage: both are skipped, never guessed at. A writer that finds
a torn tail while it holds the lock (so no live writer can be in the middle of it) cuts it off
before appending, so the next record starts on a line of its own.

Durability: the outcome of an answer must be on disk before its request is answered; the pending
prompt need not (it survives a killed process in the page cache, and is made durable by the next
synced record). Concurrent writers share their fdatasync calls (group commit): whoever syncs
covers every record appended before the call started.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...files import fsync_dir

log = logging.getLogger("app.history")

LOCK_TIMEOUT = 60.0  # seconds a thread waits for another thread of its process to finish writing


def encode_record(record: dict[str, Any]) -> tuple[bytes, bool]:
    """One journal line for `record`, and whether it holds `record` exactly.

    An unpaired surrogate (model output can carry one through a JSON escape) has no UTF-8 form: it
    is written as "?" instead of failing the write and losing the answer (not exact then).
    """
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        body, exact = text.encode("utf-8"), True
    except UnicodeEncodeError:
        body, exact = text.encode("utf-8", "replace"), False
    return b"%08x %s\n" % (zlib.crc32(body), body), exact


def decode_record(line: bytes) -> dict[str, Any] | None:
    """The record of one complete line (without its newline); None if it is damaged."""
    crc, _, body = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
            return None
        record = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


@dataclass
class Chunk:
    """What a read of a journal from some offset found."""

    records: list[dict[str, Any]]
    end: int  # the offset just past the last complete line read
    damaged: int  # complete lines skipped because their checksum or JSON was wrong
    tail: int  # bytes after the last complete line (a write in progress, or torn)


def read_journal(path: Path, offset: int) -> Chunk | None:
    """The complete records of `path` from `offset` on; None if the file does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return None
    complete = data.rfind(b"\n") + 1
    records: list[dict[str, Any]] = []
    damaged = 0
    if complete:
        for line in data[: complete - 1].split(b"\n"):
            record = decode_record(line)
            if record is None:
                damaged += 1
            else:
                records.append(record)
    return Chunk(records, offset + complete, damaged, len(data) - complete)


class JournalFile:
    """A journal opened for appending, with group commit of its fdatasync calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        # A file object (unbuffered, append mode) closes its descriptor when it is collected,
        # so a store that is dropped without close() leaks nothing.
        self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close() or collection
        self.fd = self._file.fileno()
        self.inode = os.fstat(self.fd).st_ino
        if created:
            fsync_dir(path.parent)  # the file itself must survive a power cut, not only its data
        self._cond = threading.Condition()
        self._appended = 0  # records appended through this handle
        self._synced = 0  # of those, how many are known to be on disk
        self._syncing = False
        self._closed = False

    def append(self, data: bytes) -> int:
        """Append whole records (under the history lock); returns a ticket for :meth:`sync`."""
        view = memoryview(data)
        for _ in range(10_000):  # a regular file takes it all at once; a full disk raises
            written = os.write(self.fd, view)
            view = view[written:]
            if not view:
                break
        with self._cond:
            self._appended += 1
            return self._appended

    def sync(self, ticket: int) -> None:
        """Return once the record of `ticket` is on disk; one fdatasync serves every waiter whose
        record was appended before it started."""
        with self._cond:
            for _ in range(100_000):  # each round either syncs or waits for a sync in progress
                if self._synced >= ticket or self._closed:
                    # Closed: a checkpoint has already made these records durable in the day file.
                    return
                if self._syncing:
                    self._cond.wait(timeout=1.0)
                    continue
                self._syncing = True
                target = self._appended
                self._cond.release()
                try:
                    os.fdatasync(self.fd)
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    self._cond.notify_all()
                self._synced = max(self._synced, target)
        raise TimeoutError(f"the journal {self.path.name} could not be synced")

    def close(self) -> None:
        """Close the file, once no fdatasync of it is under way: a sync works on the descriptor
        outside the condition's lock, and closing it under that sync would fail the sync (or,
        were the number reused at once, sync another file)."""
        with self._cond:
            for _ in range(100_000):  # bounded, as sync() is
                if not self._syncing:
                    break
                self._cond.wait(timeout=1.0)
            else:
                raise TimeoutError(f"the journal {self.path.name} is still being synced")
            if not self._closed:
                self._closed = True
                self._file.close()
                self._cond.notify_all()


class HistoryLock:
    """One writer at a time across threads and processes: a thread lock, then `flock`.

    A blocking `flock` wakes the waiter the moment the holder lets go (lock libraries poll, which
    quantises every contended wait to their poll interval). Holders keep it for one append, so
    waits are short; a process that dies holding it releases it with its file descriptor.
    Re-entrant within a thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._file: io.FileIO | None = None

    def _fd(self) -> int:
        """The lock file's descriptor, opened on first use (a file object: closed when the lock
        is collected, or by close())."""
        if self._file is None:
            self._file = io.FileIO(self.path, "a+")
        return self._file.fileno()

    def close(self) -> None:
        """Let go of the lock file (the lock must not be held)."""
        if self._file is not None and self._depth == 0:
            self._file.close()
            self._file = None

    def __enter__(self) -> HistoryLock:
        if not self._thread_lock.acquire(timeout=LOCK_TIMEOUT):
            raise TimeoutError("the history is locked by a writer that does not finish")
        try:
            if self._depth == 0:
                fcntl.flock(self._fd(), fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._file is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def try_acquire(self) -> bool:
        """Take the lock only if nobody holds it (for work that can be done later instead)."""
        if not self._thread_lock.acquire(blocking=False):
            return False
        if self._depth == 0:
            try:
                fcntl.flock(self._fd(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._thread_lock.release()
                return False
        self._depth += 1
        return True

    def release(self) -> None:
        self.__exit__()
