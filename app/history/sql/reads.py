"""Reading the PostgreSQL history: entries a batch at a time (keyset pagination, no long
transaction), History's pages, the gallery, a conversation, and search.

Search means what app.history.query says, as in the TinyDB store: every term a substring of the
folded prompt or answer, phrases as whole words. Two trigram GIN indexes (pg_trgm) serve it, on
the folded prompt and on the folded prompt and answer together; a search asks for the
best-scored tier first, newest first with a limit, so a common word is answered from the newest
rows and a rare one from the indexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..model import Entry, Page, Permalink, group_days, is_date
from ..query import Query, Term
from .database import BATCH, MAX_INDEX, days_table, entries, entry_of, position, raw_entry
from .writes import Writes

SEARCH_WINDOWS = (1_000, 5_000, 21_000, 85_000)  # where the newest rows read in turn end


def _like_pattern(needle: str) -> str:
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _term_sql(term: Term, column: Any) -> Any:
    """A term in a folded column: a substring (trigram-indexed LIKE); a phrase also as whole
    words (a regular expression checked on the rows the LIKE found)."""
    like = column.like(_like_pattern(term.text), escape="\\")
    if not term.phrase:
        return like
    body = re.sub(r"([^\w\s])", r"\\\1", term.text)
    head = "(^|[^[:alnum:]_])" if term.text[:1].isalnum() or term.text[:1] == "_" else ""
    tail = "($|[^[:alnum:]_])" if term.text[-1:].isalnum() or term.text[-1:] == "_" else ""
    return sa.and_(like, column.regexp_match(head + body + tail))


def _filters(query: Query) -> list[Any]:
    where: list[Any] = []
    if query.kind is not None:
        where.append(entries.c.kind == query.kind)
    if query.model is not None:
        where.append(sa.func.lower(entries.c.model) == query.model)
    if query.before is not None:
        where.append(entries.c.day < query.before)
    if query.after is not None:
        where.append(entries.c.day > query.after)
    return where


class _TierSearch:
    """Fills a page of hits from score tiers, best tier first, each newest first.

    A tier is read from the newest rows down the primary key in growing windows (a term common
    enough to fill the page is found there at once, however common its trigrams, which would
    make an index plan read nearly every row), and as soon as a window holds no hit, from the
    older rows through the trigram indexes (where a rare term is found at once).
    """

    def __init__(self, conn: Connection, limit: int) -> None:
        self.conn = conn
        self.limit = limit
        self.found: list[Entry] = []
        self._edges: dict[int, tuple[str, int] | None] = {}
        # Each search's own plan: a generic one cannot see how common a LIKE pattern is.
        conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))

    def _edge(self, offset: int) -> tuple[str, int] | None:
        """The position of the row `offset` rows below the newest (None: there are fewer)."""
        if offset not in self._edges:
            row = self.conn.execute(
                sa.select(entries.c.day, entries.c.idx)
                .order_by(entries.c.day.desc(), entries.c.idx.desc())
                .offset(offset)
                .limit(1)
            ).first()
            self._edges[offset] = (row[0], row[1]) if row is not None else None
        return self._edges[offset]

    def _read(self, where: list[Any], *, bitmaps: bool) -> int:
        self.conn.execute(sa.text(f"SET LOCAL enable_bitmapscan = {'on' if bitmaps else 'off'}"))
        rows = self.conn.execute(
            entries.select()
            .where(*where)
            .order_by(entries.c.day.desc(), entries.c.idx.desc())
            .limit(self.limit - len(self.found))
        ).mappings()
        before = len(self.found)
        self.found += [entry_of(r) for r in rows]
        return len(self.found) - before

    def _tier(self, where: list[Any]) -> None:
        upper: tuple[str, int] | None = None  # the window's top (exclusive); None: the newest
        for offset in SEARCH_WINDOWS:
            lower = self._edge(offset)
            bounds = [position < upper] if upper is not None else []
            if lower is None:  # the window reaches the oldest row: the tier is complete
                self._read([*where, *bounds], bitmaps=False)
                return
            hits = self._read([*where, *bounds, position >= lower], bitmaps=False)
            upper = lower
            if len(self.found) >= self.limit or hits == 0:
                break
        if len(self.found) < self.limit and upper is not None:
            self._read([*where, position < upper], bitmaps=True)

    def run(self, tiers: list[list[Any]]) -> list[Entry]:
        for where in tiers:
            self._tier(where)
            if len(self.found) >= self.limit:
                break
        return self.found


class Reads(Writes):
    """The store's reads and search (see the module docstring)."""

    def get(self, date: str, index: int) -> Entry | None:
        if not is_date(date) or not 0 <= index <= MAX_INDEX:
            return None
        row = self._tx(lambda c: self._row_at(c, date, index))
        return entry_of(row) if row is not None else None

    def _select(self, *where: Any, newest_first: bool = True, limit: int) -> list[Any]:
        order = (
            (entries.c.day.desc(), entries.c.idx.desc()) if newest_first else (entries.c.day, entries.c.idx)
        )
        query = entries.select().where(*where).order_by(*order).limit(limit)
        return self._tx(lambda c: c.execute(query).mappings().all())

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Live entries a batch at a time (keyset pagination: no long-running transaction)."""
        where: list[Any] = [sa.not_(entries.c.deleted)]
        if until is not None:
            where.append(entries.c.day <= until)
        if since is not None:
            where.append(entries.c.day >= since)
        after: tuple[str, int] | None = None
        while True:
            page_where = list(where)
            if after is not None:
                page_where.append(position < after if newest_first else position > after)
            rows = self._select(*page_where, newest_first=newest_first, limit=BATCH)
            for row in rows:
                yield raw_entry(row)
            if len(rows) < BATCH:
                return
            after = (rows[-1]["day"], rows[-1]["idx"])

    def _before(self, before: str | None) -> list[Any]:
        start = Permalink.parse(before)
        if start is None:
            return []
        if start.index > MAX_INDEX:  # beyond any index there can be: the whole day counts
            return [position <= (start.date, MAX_INDEX)]
        return [position < tuple(start)]

    def page(self, limit: int, before: str | None = None) -> Page:
        """As :meth:`ChatLog.page`: a conversation appears once, as its newest live turn (with
        branches, an older branch's last turn has no follow-ups either: a newer turn hides it)."""
        newer = entries.alias("newer")
        # The entry's conversation: its first turn (root), or the entry itself for a first turn.
        superseded = sa.exists().where(
            newer.c.root_day == sa.func.coalesce(entries.c.root_day, entries.c.day),
            newer.c.root_idx == sa.func.coalesce(entries.c.root_idx, entries.c.idx),
            sa.not_(newer.c.deleted),
            sa.tuple_(newer.c.day, newer.c.idx) > position,
        )
        where = [
            sa.not_(entries.c.deleted),
            entries.c.followups == 0,
            sa.not_(superseded),
            *self._before(before),
        ]
        rows = self._select(*where, limit=limit + 1)
        picked = [raw_entry(r) for r in rows[:limit]]
        more = len(rows) > limit and picked
        cursor = Permalink(picked[-1]["date"], picked[-1]["index"]).cursor if more else None
        return Page(group_days(picked), cursor)

    def images_page(self, limit: int, before: str | None = None) -> tuple[list[Entry], str | None]:
        where = [
            sa.not_(entries.c.deleted),
            entries.c.kind == "image",
            entries.c.image_file.is_not(None),
            *self._before(before),
        ]
        rows = self._select(*where, limit=limit + 1)
        picked = [entry_of(r) for r in rows[:limit]]
        if len(rows) > limit and picked:
            return picked, picked[-1].address.cursor
        return picked, None

    def conversation(self, entry: Entry) -> list[Entry]:
        thread = entry.thread
        if thread.index > MAX_INDEX:
            return [entry]
        in_thread = sa.and_(entries.c.root_day == thread.date, entries.c.root_idx == thread.index)
        where = [sa.not_(entries.c.deleted), sa.or_(in_thread, position == tuple(thread))]
        rows = self._select(*where, newest_first=False, limit=10_000)
        return [entry_of(r) for r in rows] or [entry]

    def _search(self, query: Query, limit: int) -> list[Entry]:
        """One score tier at a time, best first, each newest first with what is left of `limit`,
        never sorting every match (see :class:`_TierSearch`)."""
        where = [sa.not_(entries.c.deleted), *_filters(query)]
        anywhere = [_term_sql(t, entries.c.searchable) for t in query.terms]
        in_prompt = [_term_sql(t, entries.c.fold_prompt) for t in query.terms]
        score = sum((sa.case((hit, 1), else_=0) for hit in in_prompt), sa.literal(0))
        tiers = [[*where, *in_prompt]]  # every term in the prompt (so in the text too)
        for tier in range(len(in_prompt) - 1, -1, -1):  # the OR lets the prompt's index narrow it
            tiers.append([*where, *anywhere, score == tier, *([sa.or_(*in_prompt)] if tier else [])])
        return self._tx(lambda conn: _TierSearch(conn, limit).run(tiers))

    def pending(self) -> list[Entry]:
        """Entries still waiting for their answer, oldest first (a partial index finds them)."""
        where = [entries.c.status == "pending", sa.not_(entries.c.deleted)]
        return [entry_of(r) for r in self._select(*where, newest_first=False, limit=10_000)]

    def count_on(self, date: str) -> int:
        if not is_date(date):
            return 0
        query = sa.select(sa.func.count()).select_from(entries).where(entries.c.day == date)
        return self._tx(lambda c: c.execute(query).scalar_one())

    def count(self) -> int:
        query = sa.select(sa.func.count()).select_from(entries).where(sa.not_(entries.c.deleted))
        return self._tx(lambda c: c.execute(query).scalar_one())

    def dates(self) -> list[str]:
        return self._tx(
            lambda c: c.execute(sa.select(days_table.c.day).order_by(days_table.c.day)).scalars().all()
        )
