"""Copies into and out of the PostgreSQL history: the seed's chatlog.json import, whole days
for a backup, a restore, and the migration's import that brings copied entries up to date."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from ..model import Permalink
from ..seed import ImageFileFor, seed_entry, unseen_rows, validate_seed
from ..store import ImportResult
from .database import BATCH, MAX_INDEX, all_rows, days_table, entries, entry_row, position, raw_entry, scalar
from .reads import Reads


class Copies(Reads):
    """Imports, copies and restores (see the module docstring)."""

    def import_seed(self, data: Any, image_file_for: ImageFileFor = lambda response: None) -> tuple[int, int]:
        """As :meth:`ChatLog.import_seed`: (added, skipped), entries already present skipped."""
        validate_seed(data)
        added = skipped = 0
        for date in sorted(data):

            def work(conn: Connection, date: str = date) -> tuple[int, int]:
                # One import of a day at a time (two would both miss each other's rows).
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:day))"), {"day": date})
                query = sa.select(entries.c.prompt, entries.c.response).where(
                    entries.c.day == date, sa.not_(entries.c.deleted)
                )
                present = {(prompt, response) for prompt, response in conn.execute(query)}
                rows = unseen_rows(data[date], present)
                skipped_here = len(data[date]) - len(rows)
                if rows:
                    first = self._allocate(conn, date, len(rows))
                    new = [
                        entry_row(seed_entry(date, first + i, row, image_file_for).to_dict())
                        for i, row in enumerate(rows)
                    ]
                    conn.execute(entries.insert(), new)
                return len(rows), skipped_here

            a, s = self._tx(work)
            added, skipped = added + a, skipped + s
        return added, skipped

    def copy_days(self) -> Iterator[tuple[str, list[dict[str, Any]], int]]:
        """Every date, oldest first, with its raw entries (tombstones too) and next index."""
        for day in self.dates():
            rows, after = [], -1
            for _ in range(MAX_INDEX // BATCH + 1):  # a batch at a time, by index
                query = (
                    entries.select()
                    .where(entries.c.day == day, entries.c.idx > after)
                    .order_by(entries.c.idx)
                    .limit(BATCH)
                )
                batch: list[Any] = self._tx(partial(all_rows, query))
                rows += [raw_entry(r) for r in batch]
                if len(batch) < BATCH:
                    break
                after = batch[-1]["idx"]
            counter = sa.select(days_table.c.next_idx).where(days_table.c.day == day)
            next_index: int = self._tx(partial(scalar, counter)) or 0
            yield day, rows, max(next_index, rows[-1]["index"] + 1 if rows else 0)

    def restore_entries(self, batch: list[dict[str, Any]], next_index: dict[str, int]) -> ImportResult:
        """Put entries at their permalinks, leaving whatever is there already alone."""
        return self.import_entries(batch, next_index, overwrite=False)

    def import_entries(
        self, batch: list[dict[str, Any]], next_index: dict[str, int], *, overwrite: bool = True
    ) -> ImportResult:
        """Copy entries (tombstones included) keeping their permalinks; for migrate-history.

        An entry not here yet is added. One already here (same permalink, same id) is brought up
        to date from the copy (unless `overwrite` is false): an answer that was pending, a delete
        made since the last run. A deleted entry is never brought back. A different entry at the
        same permalink is a conflict and is left alone. `next_index` raises each day's counter,
        so new entries never reuse a copied index.
        """

        def work(conn: Connection) -> ImportResult:
            _raise_counters(conn, next_index)
            result = ImportResult()
            if not batch:
                return result
            rows = {(r["day"], r["idx"]): r for r in (entry_row(raw) for raw in batch)}
            new = _merge(conn, rows, _locked_rows(conn, rows), overwrite, result)
            if new:
                _insert(conn, new, result)
            return result

        return self._tx(work)


Key = tuple[str, int]  # a row's (day, idx)


def _raise_counters(conn: Connection, next_index: dict[str, int]) -> None:
    """Raise each day's counter to at least the given next index (never lower it)."""
    for day, nxt in next_index.items():
        conn.execute(
            sa.text(
                "INSERT INTO days (day, next_idx) VALUES (:day, :n) "
                "ON CONFLICT (day) DO UPDATE SET next_idx = GREATEST(days.next_idx, :n)"
            ),
            {"day": day, "n": nxt},
        )


def _locked_rows(conn: Connection, rows: dict[Key, dict[str, Any]]) -> dict[Key, Any]:
    """The rows already at these permalinks or with these ids, locked until commit."""
    ids = [r["id"] for r in rows.values()]
    query = entries.select().where(sa.or_(position.in_(list(rows)), entries.c.id.in_(ids)))
    return {(row["day"], row["idx"]): row for row in conn.execute(query.with_for_update()).mappings()}


def _merge(
    conn: Connection,
    rows: dict[Key, dict[str, Any]],
    existing: dict[Key, Any],
    overwrite: bool,
    result: ImportResult,
) -> list[dict[str, Any]]:
    """Bring the rows already here up to date (counted in `result`); returns those to add."""
    ids_elsewhere = {row["id"]: key for key, row in existing.items()}
    new = []
    for key, row in rows.items():
        there = existing.get(key)
        if there is None:
            if row["id"] in ids_elsewhere:  # the same entry under another permalink
                result.conflicts.append(Permalink(*key).url)
            else:
                new.append(row)
            continue
        if there["id"] != row["id"]:
            result.conflicts.append(Permalink(*key).url)
        elif not overwrite or there["deleted"] or all(there[c] == v for c, v in row.items()):
            result.unchanged += 1
        else:
            conn.execute(entries.update().where(position == key).values(row))
            result.updated += 1
            for name in ("image_file", "input_image"):
                if there[name] and there[name] != row[name]:
                    result.orphaned_images.append(there[name])
    return new


def _insert(conn: Connection, new: list[dict[str, Any]], result: ImportResult) -> None:
    """Insert the new rows; one that another writer put there meanwhile is a conflict."""
    inserted = set(
        conn.execute(insert(entries).values(new).on_conflict_do_nothing().returning(entries.c.id)).scalars()
    )
    result.added += len(inserted)
    result.conflicts += [Permalink(r["day"], r["idx"]).url for r in new if r["id"] not in inserted]
