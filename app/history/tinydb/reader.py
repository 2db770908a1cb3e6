"""Reading the TinyDB history: each day as it is now (its document and the journal records
since), cached per process and caught up without a lock; the day sequence that keeps a lost
day's permalinks unused; and damaged documents, which are moved aside, never overwritten.

A reader takes no lock: a checkpoint that replaces the document between the steps is noticed (the
document changed, or a journal read before is gone) and the read starts again; after a few such
races the read is made under the lock, which checkpoints take to finish.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from ...files import atomic_write
from ..claims import FileClaims
from ..model import HistoryCorrupt, is_date
from ..store import StoreBase
from .days import (
    MAX_GENERATIONS,
    META,
    Coverage,
    DayPaths,
    DayState,
    doc_key,
    document_rows,
    document_text,
    parse_day_file,
)
from .formats import FORMAT, folder_format, mark_format
from .index import DayIndex
from .journal import HistoryLock, JournalFile, read_journal

log = logging.getLogger("app.history")

CHECKPOINT_BYTES = 2 * 1024 * 1024  # a journal this long is folded into its day's document
CACHED_DAYS = 128  # day states kept in memory per process (the newest are the ones read)
READ_ATTEMPTS = 5  # lock-free reads that race a checkpoint before reading under the lock


class DayReader(StoreBase):
    """The days of one DATA_DIR as this process sees them (see the module docstring)."""

    backend = "tinydb"

    def __init__(
        self,
        data_dir: Path,
        clock: Callable[[], datetime] | None = None,
        *,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        background: bool = False,
    ) -> None:
        """`background`: fold journals in a background thread (the app) instead of in the
        writing thread once it has answered (tools and tests, for determinism)."""
        super().__init__(clock)
        self.root = Path(data_dir) / "history"
        self.root.mkdir(parents=True, exist_ok=True)
        self.paths = DayPaths(self.root)
        if folder_format(self.root) < FORMAT and not self.dates():
            mark_format(self.root)  # a new folder starts in the newest format
        self.claims = FileClaims(Path(data_dir) / "run")
        self.lock = HistoryLock(self.root / ".lock")
        self.checkpoint_lock = HistoryLock(self.root / ".checkpoint.lock")
        self.seq_path = self.root / "sequence.json"
        self.checkpoint_bytes = checkpoint_bytes
        self.background = background
        self._states: OrderedDict[str, DayState] = OrderedDict()
        self._states_lock = threading.Lock()
        self._journals: dict[str, dict[int, JournalFile]] = {}
        self._indexes: dict[str, tuple[tuple[int, int, int] | None, DayIndex | None]] = {}
        self._due: set[str] = set()
        self._due_lock = threading.Lock()
        self._folding = False
        self._last_write_date: str | None = None
        self._reserved: dict[str, int] = {}  # a lower bound of sequence.json's value per date

    # -- days ------------------------------------------------------------------------------------

    def dates(self) -> list[str]:
        """Every date with a day document, oldest first."""
        return sorted(
            name[:-5] for name in self.paths.names() if name.endswith(".json") and is_date(name[:-5])
        )

    def day_size(self, date: str) -> int:
        """The size in bytes of a day's document (a migration's progress counts them)."""
        return self.paths.doc(date).stat().st_size

    def _day(self, date: str) -> DayState:
        """The day as it is now, every write so far included.

        No lock is needed: a checkpoint that replaces the document between the steps is noticed
        (the document changed, or a journal read before is gone) and the read starts again; after
        a few such races the read is made under the lock, which checkpoints take to finish.
        """
        for _ in range(READ_ATTEMPTS):
            state = self._try_day(date)
            if state is not None:
                return state
        with self.lock:
            for _ in range(READ_ATTEMPTS):
                state = self._try_day(date)
                if state is not None:
                    return state
        raise HistoryCorrupt(self.paths.doc(date), "it keeps changing while it is read")

    def _try_day(self, date: str) -> DayState | None:
        path = self.paths.doc(date)
        key = doc_key(path)
        with self._states_lock:
            state = self._states.get(date)
        if state is None or state.key != key:
            state = self._load(date, state, key)
            if state is None:
                return None
        with state.lock:
            complete = self._catch_up(state)
        if not complete or doc_key(path) != key:
            return None
        with self._states_lock:
            self._states[date] = state
            self._states.move_to_end(date)
            while len(self._states) > CACHED_DAYS:
                self._states.popitem(last=False)
        return state

    def _load(self, date: str, old: DayState | None, key: tuple[int, int, int] | None) -> DayState | None:
        """The state for the document with `key`: `old` moved onto it when the document folds
        exactly what `old` holds, else the document read afresh (None when it changed meanwhile
        or was damaged and has been moved aside)."""
        if key is None:
            return DayState(date, None, Coverage(), [])  # no document: the day has no entries
        path = self.paths.doc(date)
        if old is not None:
            coverage = Coverage.peek(path)
            with old.lock:
                if old.key == key or (coverage is not None and old.adopt(key, coverage)):
                    return old
        try:
            data = parse_day_file(path)
        except HistoryCorrupt as error:
            self._quarantine(date, error)
            return None
        if data is None:
            return None
        return DayState(date, key, Coverage.from_table(data.get(META)), document_rows(data))

    def _catch_up(self, state: DayState) -> bool:
        """Apply what the day's journals gained since `state` last read them (under state.lock).
        False when a journal read before has gone: a checkpoint folded it, read the day again."""
        gen = state.coverage.gen + 1
        for _ in range(MAX_GENERATIONS):
            path = self.paths.journal(state.date, gen)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                return gen not in state.offsets
            if gen in state.offsets and size == state.offsets[gen] + state.tails.get(gen, 0):
                gen += 1  # nothing new (a stat is cheaper than opening and reading)
                continue
            chunk = read_journal(path, state.offsets.get(gen, 0))
            if chunk is None:
                return gen not in state.offsets
            for record in chunk.records:
                state.apply(record)
            if chunk.damaged:
                log.error(
                    "Skipped %d damaged records in %s.",
                    chunk.damaged,
                    self.paths.journal(state.date, gen).name,
                )
            state.offsets[gen], state.tails[gen] = chunk.end, chunk.tail
            gen += 1
        return True

    def _forget(self, date: str) -> None:
        with self._states_lock:
            self._states.pop(date, None)

    def _rows(self, date: str) -> list[dict[str, Any]]:
        """The raw entries of a day in index order, tombstones included."""
        return self._day(date).rows() if is_date(date) else []

    # -- this process's open journals --------------------------------------------------------------

    def _journal(self, date: str, gen: int) -> JournalFile:
        """The open journal of `date` for generation `gen` (under the lock)."""
        handles = self._journals.setdefault(date, {})
        handle = handles.get(gen)
        if handle is None:
            handle = handles[gen] = JournalFile(self.paths.journal(date, gen))
        return handle

    def _retire_journals(self, date: str, upto: int) -> None:
        """Close this process's handles of journals a checkpoint folded (under the lock)."""
        handles = self._journals.get(date, {})
        for gen in [g for g in handles if g <= upto]:
            handles.pop(gen).close()

    def _new_document(self, date: str, coverage: Coverage) -> None:
        """Write an empty document for `date` (the first write of a day, or after damage)."""
        atomic_write(self.paths.doc(date), document_text(coverage, []))

    # -- the sequence ----------------------------------------------------------------------------
    # The next index of each date, kept beside the day files so a day document lost to damage
    # cannot hand out its permalinks again. Written atomically under the lock but without fsync:
    # it matters only when a document is destroyed, and the journal itself is durable.

    def _sequence(self) -> dict[str, int]:
        try:
            data = json.loads(self.seq_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _advance_sequence(self, date: str, next_index: int) -> None:
        seq = self._sequence()
        if seq.get(date, 0) >= next_index:
            return
        seq[date] = next_index
        atomic_write(self.seq_path, json.dumps(seq, sort_keys=True), durable=False)

    # -- damage ----------------------------------------------------------------------------------

    def quarantined(self) -> list[str]:
        """Names of damaged day documents that were moved aside, for the owner to repair."""
        return sorted(name for name in self.paths.names() if ".json.corrupt-" in name)

    def _quarantine(self, date: str, error: HistoryCorrupt) -> None:
        """Move a damaged document aside and put an empty one in its place (after checking,
        under the locks, that it is still damaged); the day's journals stay and are read."""
        path = self.paths.doc(date)
        with self.checkpoint_lock, self.lock:
            try:
                parse_day_file(path)
                return  # repaired or replaced meanwhile: nothing to move
            except HistoryCorrupt:
                pass
            stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            try:
                highest = self._highest_index_in(path)
                os.replace(path, target)
            except FileNotFoundError:
                return
            floor = highest + 1 if highest is not None else 0
            if highest is not None:
                # Keep the damaged day's permalinks unused: new entries continue after them.
                self._advance_sequence(date, floor)
            gens = self.paths.journal_gens(date)
            self._new_document(
                date, Coverage(uuid.uuid4().hex, None, min(gens) - 1 if gens else 0, {}, floor)
            )
            self._forget(date)
        moved = HistoryCorrupt(error.path, error.detail, target)
        log.error("%s The rest of the history keeps working.", moved)

    @staticmethod
    def _highest_index_in(path: Path) -> int | None:
        text = path.read_bytes().decode("utf-8", errors="replace")
        # A link's "index" (another entry's) is counted too: a floor too high only leaves some
        # indexes unused, never hands one out twice.
        found = [int(n) for n in re.findall(r'"index"\s*:\s*(\d+)', text)]
        found += [int(n) - 1 for n in re.findall(r'"(\d+)"\s*:\s*\{', text)]
        return max(found) if found else None
