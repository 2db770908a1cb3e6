"""Writing the TinyDB history: every change is one record appended to its day's journal, so a
write costs the same on the busiest day as on an empty one. The answer's record is synced before
the request is answered (writers share the fdatasync); the pending prompt's is not synced on its
own. Deletes leave tombstones and fold the day at once, so the deleted text leaves the disk.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from ..model import Entry, Permalink, is_date
from .checkpoints import Checkpoints
from .days import Coverage
from .journal import JournalFile, decode_record, encode_record

log = logging.getLogger("app.history")

SEQUENCE_BLOCK = 16


class JournalWriter(Checkpoints):
    """Appends, entry writes and deletes (see the module docstring)."""

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

    def _insert(self, entry: Entry, parent: Entry | None, replaces: Entry | None) -> Entry:
        """Append the new entry at its day's next index. The record is not synced on its own:
        it survives a killed process in the page cache, and the answer's record, which is synced
        before the answer is acknowledged, takes it to the disk."""
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
        first = entry.thread
        stored = self._day(first.date).entries.get(first.index)
        if stored is None or stored.get("branched"):
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
        ancestor = self._live_ancestor(Permalink.of(stored.get("parent")))
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
