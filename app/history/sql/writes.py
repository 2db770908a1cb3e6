"""Writing the PostgreSQL history: a new pending entry at the day's next index (a counter row
per day, so no index is ever reused), an outcome that never overwrites a result, and deletes
that leave tombstones and keep the conversation's follow-up counts right."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..model import Entry, Permalink, is_date
from .database import (
    MAX_INDEX,
    Database,
    columns_of,
    entries,
    entry_of,
    entry_row,
    link_of,
    position,
    raw_entry,
)


class Writes(Database):
    """The store's writes (see the module docstring)."""

    @staticmethod
    def _allocate(conn: Connection, day: str, count: int = 1) -> int:
        """Reserve `count` indexes of `day`; returns the first (row lock until commit)."""
        stmt = sa.text(
            "INSERT INTO days (day, next_idx) VALUES (:day, :n) "
            "ON CONFLICT (day) DO UPDATE SET next_idx = days.next_idx + :n RETURNING next_idx"
        )
        return conn.execute(stmt, {"day": day, "n": count}).scalar_one() - count

    def _insert(self, entry: Entry, parent: Entry | None, replaces: Entry | None) -> Entry:
        """Insert the new entry at its day's next index (the day's counter row, locked)."""
        first = entry.thread if replaces is not None else None  # where `branched` is kept

        def work(conn: Connection) -> Entry:
            if parent is not None:
                self._count_followup(conn, parent, +1)
            if first is not None and first.index <= MAX_INDEX:
                # The conversation has branches now (kept on its first turn, deleted or not).
                conn.execute(entries.update().where(position == tuple(first)).values(branched=True))
            entry.index = self._allocate(conn, entry.date)
            conn.execute(entries.insert().values(entry_row(entry.to_dict())))
            return entry

        return self._tx(work)

    @staticmethod
    def _row_at(conn: Connection, date: str, index: int, *, lock: bool = False) -> Any:
        """The row at a permalink (locked until commit with `lock`), or None."""
        query = entries.select().where(entries.c.day == date, entries.c.idx == index)
        return conn.execute(query.with_for_update() if lock else query).mappings().first()

    def _count_followup(self, conn: Connection, entry: Entry, step: int) -> None:
        conn.execute(
            entries.update()
            .where(
                entries.c.day == entry.date,
                entries.c.idx == entry.index,
                entries.c.id == entry.id,
                sa.not_(entries.c.deleted),
            )
            .values(followups=sa.func.greatest(0, entries.c.followups + step))
        )

    def _update(self, entry: Entry, **changes: Any) -> Entry:
        def work(conn: Connection) -> Entry:
            row = self._row_at(conn, entry.date, entry.index, lock=True)
            if row is None or row["id"] != entry.id:
                raise KeyError(f"entry {entry.id} is not in the history")
            stored = raw_entry(row)
            if stored["deleted"] or stored["status"] != "pending":
                return Entry.from_dict(stored)  # a late outcome never overwrites a result
            merged = {**stored, **changes}
            wanted = columns_of(changes) | {"searchable", "fold_prompt"}
            values = {k: v for k, v in entry_row(merged).items() if k in wanted}
            conn.execute(
                entries.update()
                .where(entries.c.day == entry.date, entries.c.idx == entry.index)
                .values(values)
            )
            return Entry.from_dict(merged)

        return self._tx(work)

    def delete(self, date: str, index: int) -> Entry | None:
        if not is_date(date) or not 0 <= index <= MAX_INDEX:
            return None

        def work(conn: Connection) -> Entry | None:
            row = self._row_at(conn, date, index, lock=True)
            if row is None or row["deleted"]:
                return None
            stored = raw_entry(row)
            tomb = {**self._tombstone(stored), "searchable": "", "fold_prompt": ""}
            conn.execute(entries.update().where(entries.c.day == date, entries.c.idx == index).values(tomb))
            # Lock the ancestors while walking up (always child before parent, as every write
            # here does): a concurrent delete further up the chain is then seen, not missed.
            ancestor = self._live_ancestor_in(conn, link_of(row, "parent"))
            if ancestor is not None:
                self._count_followup(conn, ancestor, stored.get("followups", 0) - 1)
            return Entry.from_dict(stored)

        return self._tx(work)

    def _live_ancestor_in(self, conn: Connection, link: Permalink | None) -> Entry | None:
        for _ in range(10_000):  # bounded, as in chain()
            row = self._row_at(conn, *link, lock=True) if link is not None else None
            if row is None or not row["deleted"]:
                return entry_of(row) if row is not None else None
            link = link_of(row, "parent")
        return None

    def delete_day(self, date: str) -> list[Entry]:
        if not is_date(date):
            return []
        live = self._tx(
            lambda c: (
                c.execute(
                    sa.select(entries.c.idx)
                    .where(entries.c.day == date, sa.not_(entries.c.deleted))
                    .order_by(entries.c.idx.desc())
                )
                .scalars()
                .all()
            )
        )
        # One at a time, newest first, so follow-up counts move exactly as for single deletes.
        return [e for index in live if (e := self.delete(date, index)) is not None]
