"""The default history: one TinyDB document per date in DATA_DIR, under an append-only journal.

A write appends one record to its day's journal (app.history.journal) and costs the same on the
busiest day as on an empty one; a checkpoint folds the journal into the day's TinyDB document
(app.history.days) in the background, when the journal has grown, when the day is over and at
start-up. Every `*.json` file is complete at every instant: documents are replaced atomically and
journals have another suffix. An index is fixed when an entry is created and never reused, so
`/chatlog/<date>/<index>` points at the same entry for ever; a deleted entry leaves a tombstone,
and the checkpoint that follows the delete removes its content from the disk.

Several threads, gunicorn workers and CLI runs share a DATA_DIR: writers take one lock for the
length of an append; readers take none and catch up on what was appended since they last looked.

A damaged day document is moved aside (`<date>.json.corrupt-<time>`), never overwritten, and
logged with its name; the rest keeps working, and the day's new entries continue after the highest
index still readable in the damaged file, so no permalink is ever reused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ..files import atomic_write, fsync_dir, write_temp
from .claims import FileClaims
from .days import (
    MAX_GENERATIONS,
    META,
    TABLE,
    Coverage,
    DayPaths,
    DayState,
    doc_key,
    document_rows,
    document_text,
    parse_day_file,
)
from .journal import HistoryLock, JournalFile, decode_record, encode_record, read_journal
from .model import Entry, HistoryCorrupt, Page, Permalink, group_days, is_date
from .query import Query, searchable_fields
from .search import DayIndex, index_body
from .seed import ImageFileFor, seed_entry, unseen_rows, validate_seed
from .store import ImportResult, StoreBase

log = logging.getLogger("app.history")

SEQUENCE_BLOCK = 16
CHECKPOINT_BYTES = 2 * 1024 * 1024  # a journal this long is folded into its day's document
CACHED_DAYS = 128  # day states kept in memory per process (the newest are the ones read)
READ_ATTEMPTS = 5  # lock-free reads that race a checkpoint before reading under the lock


class ChatLog(StoreBase):
    """The history store in TinyDB files under a journal (see the module docstring)."""

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

    # -- writes ----------------------------------------------------------------------------------

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

    def _append(self, date: str, records: list[dict[str, Any]]) -> tuple[JournalFile, int, int]:
        """Append `records` to the day's journal in one write (under the lock); returns the
        journal, the ticket to sync it and the journal's size afterwards."""
        state = self._day(date)
        if state.key is None:
            self._new_document(date, Coverage(id=uuid.uuid4().hex))
            state = self._day(date)
        with state.lock:
            self._retire_journals(date, state.coverage.gen)
            gen = state.active or state.coverage.gen + 1
            journal = self._journal(date, gen)
            if state.tails.get(gen):
                # Under the lock nobody is appending: these bytes are a record torn by a crash.
                log.warning("Cut a torn record of %d bytes off %s.", state.tails[gen], journal.path.name)
                os.truncate(journal.path, state.offsets.get(gen, 0))
                state.tails[gen] = 0
            lines = [encode_record(record) for record in records]
            data = b"".join(line for line, _ in lines)
            ticket = journal.append(data)
            for record, (line, exact) in zip(records, lines, strict=True):
                state.apply(record if exact else decode_record(line[:-1]) or {})
            state.offsets[gen] = state.offsets.get(gen, 0) + len(data)
            return journal, ticket, state.offsets[gen]

    def _written(self, date: str, size: int) -> None:
        """After a write: fold a long journal, and yesterday's once a new day has begun."""
        if size >= self.checkpoint_bytes:
            self._fold_later(date)
        previous, self._last_write_date = self._last_write_date, date
        if previous is not None and previous < date:
            self._fold_later(previous)

    def begin(
        self,
        kind: str,
        prompt: str,
        model: str,
        *,
        demo: bool = False,
        parent: Entry | None = None,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        """Store a new pending entry for `prompt` before the upstream is asked, and return it.

        With `parent`, the entry is the next turn of the parent's conversation; with `replaces`,
        another version of that turn. The record is not synced on its own: it survives a killed
        process in the page cache, and the answer's record, which is synced before the answer
        is acknowledged, takes it to the disk.
        """
        entry = self._new_entry(kind, prompt, model, demo, parent, replaces, input_image)
        with self.lock:
            if parent is not None:
                self._count_followup(parent, +1)
            if replaces is not None:
                self._mark_branched(entry)
            state = self._day(entry.date)
            # The sequence matters only to a day with no entry yet (see DayState.next_index).
            reserved = int(self._sequence().get(entry.date, 0)) if not state.entries else 0
            entry.index = state.next_index(reserved)
            _, _, size = self._append(entry.date, [{"put": entry.to_dict()}])
            self._reserve_sequence(entry.date, entry.index)
        self._written(entry.date, size)
        return entry

    def _count_followup(self, entry: Entry, step: int) -> None:
        """Count a follow-up turn on `entry` (under the lock, in its own day's journal)."""
        stored = self._day(entry.date).entries.get(entry.index)
        if stored is None or stored.get("id") != entry.id or stored.get("deleted"):
            return
        followups = max(0, stored.get("followups", 0) + step)
        self._append(entry.date, [{"set": entry.index, "id": entry.id, "c": {"followups": followups}}])

    def _mark_branched(self, entry: Entry) -> None:
        """Note on the conversation's first turn (a deleted one too) that it has branches, so
        History lists it by its newest turn (under the lock)."""
        first = self._first_turn(entry)
        stored = self._day(first.date).entries.get(first.index) if first else None
        if first is None or stored is None or stored.get("branched"):
            return
        self._append(first.date, [{"set": first.index, "id": stored["id"], "c": {"branched": True}}])

    def _update(self, entry: Entry, **changes: Any) -> Entry:
        with self.lock:
            stored = self._day(entry.date).entries.get(entry.index)
            if stored is None or stored.get("id") != entry.id:
                raise KeyError(f"entry {entry.id} is not in the history")
            if stored.get("deleted") or stored.get("status") != "pending":
                # Deleted while generating, or already finished by another request: an outcome
                # arriving late never overwrites it.
                return Entry.from_dict(stored)
            record = {"set": entry.index, "id": entry.id, "c": changes}
            journal, ticket, size = self._append(entry.date, [record])
            result = Entry.from_dict(self._day(entry.date).entries[entry.index])
        journal.sync(ticket)  # outside the lock: writers meanwhile share this fdatasync
        self._written(entry.date, size)
        return result

    def _tombstone_locked(self, date: str, index: int) -> tuple[dict[str, Any], JournalFile, int] | None:
        stored = self._day(date).entries.get(index)
        if stored is None or stored.get("deleted"):
            return None
        record = {"set": index, "id": stored["id"], "c": self._tombstone(stored)}
        journal, ticket, _ = self._append(date, [record])
        # Keep History's count of follow-ups right when a turn goes: its nearest live ancestor
        # loses this follow-up but inherits the deleted turn's own follow-ups (which continue the
        # same conversation), so a thread stays listed exactly once.
        ancestor = self._live_ancestor(stored.get("parent"))
        if ancestor is not None:
            self._count_followup(ancestor, stored.get("followups", 0) - 1)
        return stored, journal, ticket

    def delete(self, date: str, index: int) -> Entry | None:
        """Delete one entry, leaving a tombstone; returns what was deleted (None if nothing).
        Its content is gone from the disk when this returns (its day is folded at once)."""
        if not is_date(date) or index < 0 or not self.paths.doc(date).exists():
            return None
        with self.lock:
            done = self._tombstone_locked(date, index)
        if done is None:
            return None
        stored, journal, ticket = done
        journal.sync(ticket)
        self.checkpoint(date)
        return Entry.from_dict(stored)

    def delete_day(self, date: str) -> list[Entry]:
        """Delete every entry of a date (tombstones keep its indexes unused); returns them."""
        if not is_date(date) or not self.paths.doc(date).exists():
            return []
        done = []
        with self.lock:
            live = [raw["index"] for raw in self._day(date).rows() if not raw.get("deleted")]
            # One at a time, newest first, so follow-up counts move exactly as for single deletes.
            for index in reversed(live):
                if (tombstone := self._tombstone_locked(date, index)) is not None:
                    done.append(tombstone)
        if done:
            _, journal, ticket = done[-1]
            journal.sync(ticket)
            self.checkpoint(date)
        return [Entry.from_dict(stored) for stored, _, _ in done]

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

    def _reserve_sequence(self, date: str, index: int) -> None:
        """Record that indexes up to a block boundary past `index` may be in use (one write per
        SEQUENCE_BLOCK appends): a lost day then continues after the block, never inside it.
        The sequence only grows, so what this process last saw of it is a safe lower bound and
        the file is read only when that bound is reached."""
        if index < self._reserved.get(date, 0):
            return
        known = int(self._sequence().get(date, 0))
        if index >= known:
            known = (index // SEQUENCE_BLOCK + 1) * SEQUENCE_BLOCK
            self._advance_sequence(date, known)
        self._reserved[date] = known

    # -- checkpoints -----------------------------------------------------------------------------

    def _fold_later(self, date: str) -> None:
        """Fold `date` soon: in a background thread (the app), or now (tools, tests)."""
        if not self.background:
            self.checkpoint(date, wait=False)
            return
        with self._due_lock:
            self._due.add(date)
            if self._folding:
                return
            self._folding = True
        threading.Thread(target=self._fold_due, name="history-checkpoint", daemon=True).start()

    def _fold_due(self) -> None:
        for _ in range(100_000):  # until nothing is due; each round folds one day
            with self._due_lock:
                if not self._due:
                    self._folding = False
                    return
                date = self._due.pop()
            try:
                self.checkpoint(date)
            except Exception:
                log.exception("Folding the journal of %s failed; it is tried again later.", date)

    def _has_journal(self, date: str, coverage_gen: int) -> bool:
        """True when the day has journal records its document does not hold yet."""
        try:
            return os.stat(self.paths.journal(date, coverage_gen + 1)).st_size > 0
        except FileNotFoundError:
            return False

    def checkpoint(self, date: str, *, wait: bool = True) -> bool:
        """Fold the day's journals into its document, and write its search index.

        Writers wait only while the journal is switched and, later, while the new document is
        renamed into place and the folded journals are removed: the document is written in
        between, without the lock. Crash-safe at every step: the document says which journals
        it holds, and records assign values, so reading a journal twice changes nothing.
        Returns False when nothing was done (nothing to fold, or another fold is running and
        `wait` is false).
        """
        if wait:
            self.checkpoint_lock.__enter__()
        elif not self.checkpoint_lock.try_acquire():
            return False
        try:
            with self.lock:
                state = self._day(date)
                with state.lock:
                    if state.key is None:
                        return False
                    before, frozen, rows = state.coverage, dict(state.offsets), state.rows()
                    if any(frozen.values()):
                        switch_to = max(frozen) + 1
                        self._journal(date, switch_to)  # from now on writers append there
                        state.offsets[switch_to] = 0
            if not any(frozen.values()):
                self._ensure_index(date)
                return False
            coverage = Coverage(uuid.uuid4().hex, before.id, max(frozen), frozen, before.floor)
            tmp = write_temp(self.paths.doc(date), document_text(coverage, rows))
            with self.lock:
                os.replace(tmp, self.paths.doc(date))
                # The folded journals, and any an earlier fold was stopped before removing.
                for gen in self.paths.journal_gens(date):
                    if gen <= coverage.gen:
                        self.paths.journal(date, gen).unlink(missing_ok=True)
                self._retire_journals(date, max(frozen))
                key = doc_key(self.paths.doc(date))
                with state.lock:
                    adopted = key is not None and state.adopt(key, coverage)
                if not adopted:
                    self._forget(date)
            fsync_dir(self.root)
            if key is not None:
                self._write_index(date, key, coverage.gen, rows)
            return True
        finally:
            self.checkpoint_lock.release()

    def _write_index(
        self, date: str, key: tuple[int, int, int], gen: int, rows: list[dict[str, Any]]
    ) -> None:
        live = [raw for raw in rows if not raw.get("deleted")]
        pending = [raw["index"] for raw in live if raw.get("status") == "pending"]
        words, pairs = index_body(live)
        index = DayIndex(list(key), gen, b"\n" + words, pending, b"\n" + pairs)
        index.write(self.paths.index(date))
        self._indexes[date] = (key, index)

    def _ensure_index(self, date: str) -> None:
        """Write the search index of a day document that has none (documents from before
        indexes, or whose index was lost, or of an older version). Only the index's first line
        is read to tell: its words are for searches to read."""
        key = doc_key(self.paths.doc(date))
        if key is not None and DayIndex.describes(self.paths.index(date), key):
            return
        state = self._day(date)
        if state.key is not None and not state.journaled:
            self._write_index(date, state.key, state.coverage.gen, state.rows())

    def _index_of(self, date: str) -> DayIndex | None:
        """The day's search index if it describes the day's current document, else None."""
        key = doc_key(self.paths.doc(date))
        cached = self._indexes.get(date)
        if cached is not None and cached[0] == key:
            return cached[1]
        index = DayIndex.read(self.paths.index(date))
        if index is None or key is None or tuple(index.document) != key:
            index = None
        self._indexes[date] = (key, index)
        return index

    def maintain(self, *, startup: bool = False) -> None:
        """Fold the journals of days that are over (all of them at start-up, today's too: the
        server that wrote them may have died) and index the documents that have no index yet,
        so a new or upgraded DATA_DIR needs no step by hand."""
        today = self.today()
        for date in self.dates():
            if self._needs_fold(date) and (startup or date != today):
                self.checkpoint(date, wait=False)
            elif self._index_of(date) is None and self.checkpoint_lock.try_acquire():
                # Not while another process folds or indexes: it is doing this work already.
                try:
                    self._ensure_index(date)
                finally:
                    self.checkpoint_lock.release()

    def _needs_fold(self, date: str) -> bool:
        """True when the day has journal records its document does not hold: seen from the
        document's head and a journal's size, without reading the day (a fresh server's upkeep
        would otherwise parse the whole history while its first requests wait for the CPU)."""
        coverage = Coverage.peek(self.paths.doc(date))
        if coverage is None:  # a document from before journals, or none: read it
            return self._day(date).journaled
        return self._has_journal(date, coverage.gen)

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
        found = [int(n) for n in re.findall(r'"index"\s*:\s*(\d+)', text)]
        found += [int(n) - 1 for n in re.findall(r'"(\d+)"\s*:\s*\{', text)]
        return max(found) if found else None

    # -- reads -----------------------------------------------------------------------------------

    def _rows(self, date: str) -> list[dict[str, Any]]:
        """The raw entries of a day in index order, tombstones included."""
        return self._day(date).rows() if is_date(date) else []

    def get(self, date: str, index: int) -> Entry | None:
        """The entry at `/chatlog/<date>/<index>`, a tombstone if deleted, or None if never existed."""
        if not is_date(date) or index < 0:
            return None
        raw = self._day(date).entries.get(index)
        return Entry.from_dict(raw) if raw is not None else None

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Raw live entries (no tombstones), a day at a time: only as many days are read as used.

        `until` and `since` skip the dates after / before them without reading them.
        """
        dates = self.dates()
        if until is not None:
            dates = [d for d in dates if d <= until]
        if since is not None:
            dates = [d for d in dates if d >= since]
        for date in reversed(dates) if newest_first else dates:
            entries = [e for e in self._rows(date) if not e.get("deleted")]
            yield from reversed(entries) if newest_first else entries

    def _after_cursor(self, before: str | None) -> Iterator[dict[str, Any]]:
        start = Permalink.parse(before)
        for raw in self.iter_entries(until=start.date if start else None):
            if start is None or (raw["date"], raw["index"]) < (start.date, start.index):
                yield raw

    def page(self, limit: int, before: str | None = None) -> Page:
        """Up to `limit` entries, newest first, older than the cursor `before` ("<date>/<index>").

        A conversation appears once, as its latest turn (earlier turns have follow-ups).
        """
        picked: list[dict[str, Any]] = []
        more = False
        newest: dict[str, str] = {}  # a branched conversation's thread → its newest turn
        for raw in self._after_cursor(before):
            if raw.get("followups", 0) > 0 or not self._is_newest(Entry.from_dict(raw), newest):
                continue
            if len(picked) == limit:
                more = True
                break
            picked.append(raw)
        cursor = Permalink(picked[-1]["date"], picked[-1]["index"]).cursor if more and picked else None
        return Page(group_days(picked), cursor)

    def _is_newest(self, entry: Entry, newest: dict[str, str]) -> bool:
        """Whether `entry` is the newest live turn of its conversation, as History lists it.
        Only a conversation with branches can have another turn without follow-ups."""
        if not self._branched(entry):
            return True
        if entry.thread not in newest:
            newest[entry.thread] = self.conversation(entry)[-1].permalink
        return newest[entry.thread] == entry.permalink

    def images_page(self, limit: int, before: str | None = None) -> tuple[list[Entry], str | None]:
        """Up to `limit` image entries that still have their image, newest first, older than the
        cursor `before`; and the cursor of the next page, if any."""
        picked: list[Entry] = []
        for raw in self._after_cursor(before):
            if raw["kind"] != "image" or not raw.get("image_file"):
                continue
            if len(picked) == limit:
                return picked, picked[-1].address.cursor
            picked.append(Entry.from_dict(raw))
        return picked, None

    def conversation(self, entry: Entry) -> list[Entry]:
        """Every live turn of `entry`'s conversation in order (just `entry` for a single one)."""
        thread = entry.thread
        target = Permalink.parse(thread)
        if target is None:
            return [entry]
        turns = [
            Entry.from_dict(raw)
            for raw in self.iter_entries(newest_first=False, since=target.date)
            if raw.get("root") == thread or Permalink(raw["date"], raw["index"]) == target
        ]
        return turns or [entry]

    def _folded_day(self, date: str) -> dict[int, tuple[dict[str, Any], str, str]]:
        """A day's live entries by index with their folded prompt and answer (kept with the
        day's state until it changes), for the text the word index cannot decide."""
        state = self._day(date)
        with state.lock:
            rows, version = state.rows(), state.version
            if state.folded is None or state.folded[0] != version:
                live = [raw for raw in rows if not raw.get("deleted")]
                state.folded = (version, {raw["index"]: (raw, *searchable_fields(raw)) for raw in live})
            return state.folded[1]

    def _day_hits(self, date: str, query: Query) -> dict[int, int]:
        """The day's matching entries (index → score): from its word index when that is up to
        date, checking only what the index cannot decide against the text; else from the text."""
        index = self._index_of(date)
        candidates: Iterable[int] | None = None
        if index is not None and not self._has_journal(date, index.gen):
            ranked, exact = index.rank(query)
            if exact or not ranked:
                return ranked
            candidates = ranked
        folded = self._folded_day(date)
        hits = {}
        for number in folded if candidates is None else candidates:
            if number not in folded:
                continue
            raw, prompt, answer = folded[number]
            if query.filters_ok(raw) and (score := query.score(prompt, answer)) is not None:
                hits[number] = score
        return hits

    def _search(self, query: Query, limit: int) -> list[Entry]:
        """Days newest first, until `limit` entries with every term in the prompt are found (no
        older entry can rank above them); then the best `limit` by score, date and index."""
        top = len(query.terms)
        hits: list[tuple[int, str, int]] = []
        best = 0
        for date in reversed(self.dates()):
            if not query.date_ok(date):
                continue
            for number, score in self._day_hits(date, query).items():
                hits.append((score, date, number))
                best += score == top
            if best >= limit:
                break
        hits.sort(reverse=True)
        wanted: dict[str, list[int]] = {}
        for _, date, number in hits[:limit]:
            wanted.setdefault(date, []).append(number)
        found = {date: self._entries_at(date, numbers) for date, numbers in wanted.items()}
        return [Entry.from_dict(found[date][n]) for _, date, n in hits[:limit] if n in found[date]]

    def _entries_at(self, date: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
        """Some raw entries of a day. A day this process has not read yet, whose document holds
        everything (a current index, no journal since), gives just those entries, decoded from
        their place in the document: a search's hits spread over many days cost no full parse."""
        with self._states_lock:
            loaded = date in self._states
        index = None if loaded else self._index_of(date)
        if index is not None and not self._has_journal(date, index.gen):
            picked = self._decode_entries(date, numbers)
            if picked is not None:
                return picked
        entries = self._day(date).entries
        return {n: entries[n] for n in numbers if n in entries and not entries[n].get("deleted")}

    def _decode_entries(self, date: str, numbers: list[int]) -> dict[int, dict[str, Any]] | None:
        """The live entries `numbers` decoded from the day document alone; None when the
        document does not hold them where a folded document keeps them (read the day instead)."""
        try:
            data = self.paths.doc(date).read_bytes()
        except FileNotFoundError:
            return None
        decoder = json.JSONDecoder()
        start = data.find(b'"%s":{' % TABLE.encode())
        picked: dict[int, dict[str, Any]] = {}
        for number in numbers:
            # Keys are the indexes + 1 and each entry starts with its id; inside a JSON string
            # these quotes would be escaped, so the first unescaped match is the entry itself.
            # Only its bytes are decoded: up to the next entry's key.
            at = data.find(b'"%d":{"id":' % (number + 1), start) if start >= 0 else -1
            if at < 0:
                return None
            brace = data.index(b"{", at)
            end = data.find(b'"%d":{"id":' % (number + 2), brace)
            try:
                raw, _ = decoder.raw_decode(data[brace : end if end > 0 else len(data)].decode("utf-8"))
            except ValueError:
                return None
            if not isinstance(raw, dict) or raw.get("index") != number:
                return None
            if not raw.get("deleted"):
                picked[number] = raw
        return picked

    def pending(self) -> list[Entry]:
        """Every entry still waiting for its answer; days whose index lists none are not read."""
        found: list[Entry] = []
        for date in self.dates():
            index = self._index_of(date)
            if index is not None and not index.pending and not self._has_journal(date, index.gen):
                continue
            found += [
                Entry.from_dict(raw)
                for raw in self._rows(date)
                if raw.get("status") == "pending" and not raw.get("deleted")
            ]
        return found

    def count_on(self, date: str) -> int:
        """Entries created on `date`, deleted ones included (they were generated all the same)."""
        return len(self._day(date).entries) if is_date(date) else 0

    def count(self) -> int:
        """Number of entries (deleted ones left out)."""
        return sum(1 for _ in self.iter_entries())

    def close(self) -> None:
        """Close the journals and lock files this process holds open (the store stays usable:
        they are opened again when needed). A store that never wrote holds no journal, so it
        needs no lock either: its folder may be gone (a broken DATA_DIR)."""
        if self._journals:
            with self.lock:
                for handles in self._journals.values():
                    for journal in handles.values():
                        journal.close()
                self._journals.clear()
        self.lock.close()
        self.checkpoint_lock.close()

    def ready(self) -> tuple[bool, str]:
        try:
            probe = self.root / f".readyz-{uuid.uuid4().hex}.tmp"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError:
            return False, "not writable"
        return True, "writable"

    # -- import / export -------------------------------------------------------------------------

    def import_seed(self, data: Any, image_file_for: ImageFileFor = lambda response: None) -> tuple[int, int]:
        """Import the seed's `{date: [{prompt, response}]}` format; returns (added, skipped).

        Entries already present (same date, prompt and response) are skipped, so importing the
        same file twice adds nothing the second time. `image_file_for` maps an image response to
        a local file name if that image still exists here; seed images that are gone stay
        readable and are shown as no longer available. Each date is one append, then folded.
        """
        validate_seed(data)
        added = skipped = 0
        synced: list[tuple[JournalFile, int]] = []
        with self.lock:
            for date in sorted(data):
                state = self._day(date)
                present = {(e["prompt"], e["response"]) for e in state.rows() if not e.get("deleted")}
                rows = unseen_rows(data[date], present)
                skipped += len(data[date]) - len(rows)
                if not rows:
                    continue
                first = state.next_index(int(self._sequence().get(date, 0)))
                records = [
                    {"put": seed_entry(date, first + n, row, image_file_for).to_dict()}
                    for n, row in enumerate(rows)
                ]
                journal, ticket, _ = self._append(date, records)
                synced.append((journal, ticket))
                self._advance_sequence(date, first + len(rows))
                added += len(rows)
        for journal, ticket in synced:
            journal.sync(ticket)
        for date in sorted(data):
            self.checkpoint(date)
        return added, skipped

    def day_for_copy(self, date: str) -> tuple[list[dict[str, Any]], int]:
        """A day's raw entries (tombstones included) and its next index, for copying the history
        elsewhere (migrate-history); a day lost to damage has no entries but keeps its index."""
        rows = self._rows(date)
        reserved = int(self._sequence().get(date, 0))
        next_index = max(raw["index"] for raw in rows) + 1 if rows else reserved
        self._forget(date)  # one day in memory at a time
        return rows, next_index

    def copy_days(self) -> Iterator[tuple[str, list[dict[str, Any]], int]]:
        """Every date, oldest first, with its raw entries (tombstones too) and next index; days
        lost to damage come with no entries, only the indexes they may have used."""
        lost = self.lost_days()
        for date in sorted(set(self.dates()) | set(lost)):
            if date in lost:
                yield date, [], lost[date]
            else:
                yield (date, *self.day_for_copy(date))

    def restore_entries(self, batch: list[dict[str, Any]], next_index: dict[str, int]) -> ImportResult:
        """Put entries at their permalinks through the journal, leaving what is there alone (see
        HistoryStore.restore_entries); each date is one append, synced, then folded."""
        result = ImportResult()
        by_date: dict[str, list[dict[str, Any]]] = {}
        for raw in batch:
            by_date.setdefault(raw["date"], []).append(raw)
        synced: list[tuple[JournalFile, int]] = []
        with self.lock:
            for date in sorted(set(by_date) | set(next_index)):
                rows = by_date.get(date, [])
                records = self._restore_records(date, rows, result)
                if records:
                    journal, ticket, _ = self._append(date, records)
                    synced.append((journal, ticket))
                highest = max((raw["index"] for raw in rows), default=-1)
                self._advance_sequence(date, max(next_index.get(date, 0), highest + 1))
        for journal, ticket in synced:
            journal.sync(ticket)
        for date in by_date:
            self.checkpoint(date)
        return result

    def _restore_records(
        self, date: str, rows: list[dict[str, Any]], result: ImportResult
    ) -> list[dict[str, Any]]:
        """The journal records that add those of `rows` not yet there (under the lock)."""
        stored = dict(self._day(date).entries)
        records: list[dict[str, Any]] = []
        for raw in rows:
            there = stored.get(raw["index"])
            if there is None:
                records.append({"put": raw})
                stored[raw["index"]] = raw  # the same permalink twice in one batch: added once
                result.added += 1
            elif there.get("id") == raw["id"]:
                result.unchanged += 1
            else:
                result.conflicts.append(Permalink(date, raw["index"]).url)
        return records

    def lost_days(self) -> dict[str, int]:
        """Days whose document was lost to damage, with the indexes they may have used."""
        present = set(self.dates())
        return {d: int(n) for d, n in self._sequence().items() if d not in present and is_date(d)}
