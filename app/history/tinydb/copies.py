"""Copies into and out of the TinyDB history: the seed's chatlog.json import, whole days for a
backup or a migration (tombstones and the next index included), and a restore that puts entries
at their own permalinks. Each date is one append, synced, then folded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..model import Permalink, is_date, stored_links
from ..seed import ImageFileFor, seed_entry, unseen_rows, validate_seed
from ..store import ImportResult
from .journal import JournalFile
from .reads import EntryReads


class Copies(EntryReads):
    """Imports, copies and restores (see the module docstring)."""

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
            raw = stored_links(raw) or raw  # a copy may come with links as text
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
