"""The chat history in PostgreSQL, for several app servers sharing one history.

Chosen with `HISTORY_URL=postgresql://user:password@host:5432/db`; the schema is created and
upgraded by Alembic (app/migrations) when the app starts, under an advisory lock so servers
starting together do not race. It implements the same :class:`HistoryStore` interface as the
TinyDB files, with the same permalinks: an entry is `(day, idx)`, the day's next index comes from
a per-day counter row (`days`), so indexes are never reused, and a deleted entry stays as a
tombstone that answers 410.

Search means what app.history.query says, as in the TinyDB store: every term a substring of the
folded (case- and accent-free) prompt or answer, phrases as whole words. Two trigram GIN indexes
(pg_trgm) serve it, on the folded prompt and on the folded prompt and answer together; a search
asks for the best-scored tier first, newest first with a limit, so a common word is answered
from the newest rows and a rare one from the indexes.

Every operation is one short transaction. A database that cannot be reached raises
:class:`HistoryUnavailable` (HTTP 503 with a clear message; nothing half-written).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from .claims import SQLClaims
from .model import Entry, HistoryUnavailable, Page, Permalink, group_days, is_date
from .query import Query, Term, fold
from .seed import ImageFileFor, seed_entry, unseen_rows, validate_seed
from .store import ImportResult, StoreBase

log = logging.getLogger("app.history")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
SEPARATOR = "\x1f"  # between prompt and answer in the searchable text (PostgreSQL text has no NUL)
BATCH = 500  # rows per round trip when walking the whole history
SEARCH_WINDOWS = (1_000, 5_000, 21_000, 85_000)  # where the newest rows read in turn end
SCHEMA_LOCK = 0x6869_7374  # advisory lock id held while migrating ("hist")
MAX_INDEX = 2**31 - 1  # the idx column is an integer: larger indexes cannot exist
SCHEMA_RETRY = 2.0  # seconds between attempts to reach a database that was down at start
STATEMENT_TIMEOUT_MS = 15_000  # no query may hang a request thread for longer
RETRIED_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock: safe to run again

metadata = sa.MetaData()
entries = sa.Table(
    "entries",
    metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("id", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("demo", sa.Boolean, nullable=False),
    sa.Column("image_file", sa.Text),
    sa.Column("usage", JSONB, nullable=False),
    sa.Column("options", JSONB, nullable=False),
    sa.Column("dimensions", JSONB, nullable=False),
    sa.Column("parent", sa.Text),
    sa.Column("root", sa.Text),
    sa.Column("turn", sa.Integer, nullable=False),
    sa.Column("followups", sa.Integer, nullable=False),
    sa.Column("context_dropped", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("searchable", sa.Text, nullable=False),
    sa.Column("sibling_of", sa.Text),
    sa.Column("branched", sa.Boolean, nullable=False),
    sa.Column("input_image", sa.Text),
    sa.Column("fold_prompt", sa.Text, nullable=False),
    sa.Column("error_kind", sa.Text),
    sa.Column("error_params", JSONB, nullable=False),
)
days_table = sa.Table(
    "days",
    metadata,
    sa.Column("day", sa.Text, primary_key=True),
    sa.Column("next_idx", sa.Integer, nullable=False),
)
runs = sa.Table(
    "stream_runs",
    metadata,
    sa.Column("entry_id", sa.Text, primary_key=True),
    sa.Column("claimed_at", sa.DateTime(timezone=True)),
    sa.Column("stop_requested", sa.Boolean, nullable=False),
)

FIELDS = tuple(Entry.__dataclass_fields__)
position = sa.tuple_(entries.c.day, entries.c.idx)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://…` (what people write) → the psycopg 3 driver SQLAlchemy should use."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("HISTORY_URL must start with postgresql://")


def searchable(kind: str, prompt: str, response: str, deleted: bool = False) -> str:
    """The folded text a search matches: the prompt, and the answer unless it is an image."""
    if deleted:
        return ""
    return f"{fold(prompt)}{SEPARATOR}{fold(response) if kind != 'image' else ''}"


def search_columns(kind: str, prompt: str, response: str, deleted: bool = False) -> dict[str, str]:
    """The columns search reads, derived from an entry's text."""
    return {
        "searchable": searchable(kind, prompt, response, deleted),
        "fold_prompt": "" if deleted else fold(prompt),
    }


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


def storable(value: Any) -> Any:
    """`value` with what PostgreSQL text cannot hold replaced: NUL characters (model output and
    imported files may contain them) and lone surrogates. Dicts and lists are cleaned through."""
    if isinstance(value, str):
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _row(entry: dict[str, Any]) -> dict[str, Any]:
    """A table row for an entry's fields."""
    row = {f: storable(entry.get(f)) for f in FIELDS if f not in ("date", "index")}
    row["day"], row["idx"] = entry["date"], entry["index"]
    defaults = Entry(id="", date="", index=0, created_at="", kind="code", prompt="").to_dict()
    for name, value in defaults.items():
        if name in row and row[name] is None and value is not None:
            row[name] = value
    row.update(search_columns(row["kind"], row["prompt"], row["response"], row["deleted"]))
    return row


def _raw(row: Any) -> dict[str, Any]:
    """The entry dict (as the TinyDB store keeps it) of a table row."""
    data = {f: row[f] for f in FIELDS if f not in ("date", "index")}
    data["date"], data["index"] = row["day"], row["idx"]
    return data


def _entry(row: Any) -> Entry:
    return Entry.from_dict(_raw(row))


def _all_rows(query: Any, conn: Connection) -> list[Any]:
    return list(conn.execute(query).mappings().all())


def _scalar(query: Any, conn: Connection) -> Any:
    return conn.execute(query).scalar()


def _public_error(error: Exception) -> str:
    """The kind of a database failure, for the log, without the connection string."""
    original = getattr(error, "orig", None)
    return type(original or error).__name__


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
        self.found += [_entry(r) for r in rows]
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


class SQLChatLog(StoreBase):
    """The history store in PostgreSQL (see the module's docstring)."""

    backend = "postgresql"

    def __init__(
        self,
        url: str,
        clock: Callable[[], datetime] | None = None,
        *,
        pool_size: int = 10,
        max_overflow: int = 30,
        connect_timeout: int = 5,
    ) -> None:
        super().__init__(clock)
        self.engine: Engine = sa.create_engine(
            sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            pool_timeout=connect_timeout * 2,
            connect_args={
                "connect_timeout": connect_timeout,
                "application_name": "flask-chat",
                "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                # A network partition is noticed in about 20 s, not after the kernel's hours.
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 2,
            },
        )
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._schema_retry_at = 0.0
        self.claims = SQLClaims(self._tx, HistoryUnavailable)

    # -- connection and schema ---------------------------------------------------------------

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision (idempotent)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL statement_timeout = 0"))  # an index build may take long
            # One server migrates; the others wait here and then find nothing left to do.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": SCHEMA_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        self._schema_ready = True

    def ensure_schema(self) -> bool:
        """Migrate once per process; False (logged) while the database cannot be reached."""
        if self._schema_ready:
            return True
        if time.monotonic() < self._schema_retry_at:
            return False  # tried a moment ago: fail fast instead of queueing on the lock
        with self._schema_lock:
            if self._schema_ready:
                return True
            try:
                self.migrate()
            except (OperationalError, DBAPIError, sa.exc.TimeoutError) as e:
                self._schema_retry_at = time.monotonic() + SCHEMA_RETRY
                log.error("The history database is not reachable (%s).", _public_error(e))
                return False
            except CommandError as e:
                # A rolling upgrade: a newer server already moved the schema past this code's
                # newest revision. Migrations only add, so this server keeps working meanwhile.
                log.warning("The history schema is newer than this version of the app (%s).", e)
                self._schema_ready = True
        return True

    def _tx(self, work: Callable[[Connection], Any]) -> Any:
        """Run `work` in one transaction; a deadlock or serialization failure is retried."""
        if not self.ensure_schema():
            raise HistoryUnavailable("The history database is not reachable.")
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except DBAPIError as e:
                state = getattr(e.orig, "sqlstate", None)
                if state in RETRIED_SQLSTATES and attempt < 2:
                    continue
                if isinstance(e, OperationalError) or e.connection_invalidated:
                    log.error("The history database is not reachable (%s).", _public_error(e))
                    raise HistoryUnavailable("The history database is not reachable.") from None
                raise
            except sa.exc.TimeoutError:
                # Every pooled connection is busy (more request threads than the pool allows).
                log.error("No history database connection became free in time.")
                raise HistoryUnavailable("The history database is busy.") from None
        raise AssertionError("unreachable")

    def ready(self) -> tuple[bool, str]:
        try:
            self._tx(lambda c: c.execute(sa.text("SELECT 1")))
        except HistoryUnavailable:
            return False, "database unreachable"
        return True, "database reachable"

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------------

    @staticmethod
    def _allocate(conn: Connection, day: str, count: int = 1) -> int:
        """Reserve `count` indexes of `day`; returns the first (row lock until commit)."""
        stmt = sa.text(
            "INSERT INTO days (day, next_idx) VALUES (:day, :n) "
            "ON CONFLICT (day) DO UPDATE SET next_idx = days.next_idx + :n RETURNING next_idx"
        )
        return conn.execute(stmt, {"day": day, "n": count}).scalar_one() - count

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
        entry = self._new_entry(kind, prompt, model, demo, parent, replaces, input_image)
        first = self._first_turn(entry) if replaces is not None else None

        def work(conn: Connection) -> Entry:
            if parent is not None:
                self._count_followup(conn, parent, +1)
            if first is not None and first.index <= MAX_INDEX:
                # The conversation has branches now (kept on its first turn, deleted or not).
                conn.execute(entries.update().where(position == tuple(first)).values(branched=True))
            entry.index = self._allocate(conn, entry.date)
            conn.execute(entries.insert().values(_row(entry.to_dict())))
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
            stored = _raw(row)
            if stored["deleted"] or stored["status"] != "pending":
                return Entry.from_dict(stored)  # a late outcome never overwrites a result
            merged = {**stored, **changes}
            derived = ("searchable", "fold_prompt")
            values = {k: v for k, v in _row(merged).items() if k in changes or k in derived}
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
            stored = _raw(row)
            tomb = {**self._tombstone(stored), "searchable": "", "fold_prompt": ""}
            conn.execute(entries.update().where(entries.c.day == date, entries.c.idx == index).values(tomb))
            # Lock the ancestors while walking up (always child before parent, as every write
            # here does): a concurrent delete further up the chain is then seen, not missed.
            ancestor = self._live_ancestor_in(conn, stored.get("parent"))
            if ancestor is not None:
                self._count_followup(conn, ancestor, stored.get("followups", 0) - 1)
            return Entry.from_dict(stored)

        return self._tx(work)

    def _live_ancestor_in(self, conn: Connection, permalink: str | None) -> Entry | None:
        for _ in range(10_000):  # bounded, as in chain()
            target = Permalink.parse(permalink)
            row = self._row_at(conn, *target, lock=True) if target and target.index <= MAX_INDEX else None
            if row is None or not row["deleted"]:
                return _entry(row) if row is not None else None
            permalink = row["parent"]
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

    # -- reads -------------------------------------------------------------------------------

    def get(self, date: str, index: int) -> Entry | None:
        if not is_date(date) or not 0 <= index <= MAX_INDEX:
            return None
        row = self._tx(lambda c: self._row_at(c, date, index))
        return _entry(row) if row is not None else None

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
                yield _raw(row)
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
        thread = sa.func.coalesce(
            entries.c.root, "/chatlog/" + entries.c.day + "/" + sa.cast(entries.c.idx, sa.Text)
        )
        superseded = sa.exists().where(
            newer.c.root == thread,
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
        picked = [_raw(r) for r in rows[:limit]]
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
        picked = [_entry(r) for r in rows[:limit]]
        if len(rows) > limit and picked:
            return picked, picked[-1].address.cursor
        return picked, None

    def conversation(self, entry: Entry) -> list[Entry]:
        thread = entry.thread
        target = Permalink.parse(thread)
        if target is None or target.index > MAX_INDEX:
            return [entry]
        where = [
            sa.not_(entries.c.deleted),
            sa.or_(entries.c.root == thread, position == tuple(target)),
        ]
        rows = self._select(*where, newest_first=False, limit=10_000)
        return [_entry(r) for r in rows] or [entry]

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
        return [_entry(r) for r in self._select(*where, newest_first=False, limit=10_000)]

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

    # -- import ------------------------------------------------------------------------------

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
                        _row(seed_entry(date, first + i, row, image_file_for).to_dict())
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
                batch: list[Any] = self._tx(partial(_all_rows, query))
                rows += [_raw(r) for r in batch]
                if len(batch) < BATCH:
                    break
                after = batch[-1]["idx"]
            counter = sa.select(days_table.c.next_idx).where(days_table.c.day == day)
            next_index: int = self._tx(partial(_scalar, counter)) or 0
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
        same permalink is a conflict and is left alone. `next_index` raises each day's counter, so new entries
        never reuse a copied index.
        """

        def work(conn: Connection) -> ImportResult:
            for day, nxt in next_index.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO days (day, next_idx) VALUES (:day, :n) "
                        "ON CONFLICT (day) DO UPDATE SET next_idx = GREATEST(days.next_idx, :n)"
                    ),
                    {"day": day, "n": nxt},
                )
            result = ImportResult()
            if not batch:
                return result
            rows = {(r["day"], r["idx"]): r for r in (_row(raw) for raw in batch)}
            keys = list(rows)
            existing = {
                (row["day"], row["idx"]): row
                for row in conn.execute(
                    entries.select()
                    .where(sa.or_(position.in_(keys), entries.c.id.in_([r["id"] for r in rows.values()])))
                    .with_for_update()
                ).mappings()
            }
            ids_elsewhere = {row["id"]: key for key, row in existing.items()}
            new = []
            for key, row in rows.items():
                there = existing.get(key)
                if there is None:
                    if row["id"] in ids_elsewhere:  # the same entry under another permalink
                        result.conflicts.append(f"/chatlog/{key[0]}/{key[1]}")
                    else:
                        new.append(row)
                    continue
                if there["id"] != row["id"]:
                    result.conflicts.append(f"/chatlog/{key[0]}/{key[1]}")
                elif not overwrite or there["deleted"] or all(there[c] == v for c, v in row.items()):
                    result.unchanged += 1
                else:
                    conn.execute(entries.update().where(position == key).values(row))
                    result.updated += 1
                    for name in ("image_file", "input_image"):
                        if there[name] and there[name] != row[name]:
                            result.orphaned_images.append(there[name])
            if new:
                from sqlalchemy.dialects.postgresql import insert

                inserted = set(
                    conn.execute(
                        insert(entries).values(new).on_conflict_do_nothing().returning(entries.c.id)
                    ).scalars()
                )
                result.added += len(inserted)
                result.conflicts += [
                    f"/chatlog/{r['day']}/{r['idx']}" for r in new if r["id"] not in inserted
                ]
            return result

        return self._tx(work)
