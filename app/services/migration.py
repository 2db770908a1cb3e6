"""Moving a history from one machine's DATA_DIR into the shared stores (`flask migrate-history`):
the TinyDB days into PostgreSQL, the image files into S3-compatible storage.

It reads one day at a time, so its memory does not grow with the history, and may run as often
as wanted before the switch-over: each run adds what is new, brings entries copied before up to
date (an answer finished since, an entry deleted since: its image goes from the bucket too) and
never brings back an entry deleted in the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..history import ChatLog
from ..history.sql import SQLChatLog
from ..history.store import ImportResult
from ..images import ImageStore

BATCH = 500  # entries per database round trip


def copy_history(
    source: ChatLog, target: SQLChatLog, sizes: dict[str, int], progress: Callable[[int], None]
) -> ImportResult:
    """Copy the days of `source` that `sizes` names (each day file's size) into `target`,
    keeping permalinks and tombstones; `progress` is told each day's size once it is copied."""
    # Days whose file was lost to damage keep their used indexes only in the sequence: carry
    # them over too, so the database never hands out those permalinks again.
    target.import_entries([], source.lost_days())
    copied = ImportResult()
    for date, size in sizes.items():
        rows, next_index = source.day_for_copy(date)
        for start in range(0, max(len(rows), 1), BATCH):
            copied.add(target.import_entries(rows[start : start + BATCH], {date: next_index}))
        progress(size)
    return copied


def copy_images(local: ImageStore, remote: ImageStore, names: Iterable[str]) -> int:
    """Copy the images among `names` that `remote` does not hold yet; returns how many."""
    copied = 0
    for name in names:
        if not remote.exists(name):
            remote.put(name, local.read(name))
            copied += 1
    return copied
