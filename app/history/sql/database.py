"""The PostgreSQL history's schema and connection: the tables, an entry as a row and back, the
Alembic migrations run once per process under an advisory lock, and one short transaction per
operation, a database that cannot be reached raising HistoryUnavailable."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.util import CommandError
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..claims import SQLClaims
from ..model import LINKS, Entry, HistoryUnavailable, Permalink
from ..query import fold
from ..store import StoreBase

log = logging.getLogger("app.history")

MIGRATIONS = Path(__file__).resolve().parent.parent.parent / "migrations"
SEPARATOR = "\x1f"  # between prompt and answer in the searchable text (PostgreSQL text has no NUL)
BATCH = 500  # rows per round trip when walking the whole history
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
    sa.Column("parent_day", sa.Text),
    sa.Column("parent_idx", sa.Integer),
    sa.Column("root_day", sa.Text),
    sa.Column("root_idx", sa.Integer),
    sa.Column("turn", sa.Integer, nullable=False),
    sa.Column("followups", sa.Integer, nullable=False),
    sa.Column("context_dropped", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("searchable", sa.Text, nullable=False),
    sa.Column("sibling_of_day", sa.Text),
    sa.Column("sibling_of_idx", sa.Integer),
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

# An entry's links (Entry.parent, .root, .sibling_of) are a (day, idx) pair of columns each,
# both NULL for no link; its other fields are a column each, of the same name.
LINK_COLUMNS = {name: (f"{name}_day", f"{name}_idx") for name in LINKS}
FIELDS = tuple(f for f in Entry.__dataclass_fields__ if f not in ("date", "index", *LINKS))
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


def link_columns(name: str, value: object) -> dict[str, Any]:
    """The pair of columns of the link `name` (see LINK_COLUMNS) holding `value` (a link in any
    form Permalink.of reads). A link past the largest index there can be points at nothing."""
    link = Permalink.of(value)
    if link is not None and link.index > MAX_INDEX:
        link = None
    day, idx = LINK_COLUMNS[name]
    return {day: link.date if link else None, idx: link.index if link else None}


def link_of(row: Any, name: str) -> Permalink | None:
    """The link `name` of a table row, or None."""
    day, idx = LINK_COLUMNS[name]
    return Permalink(row[day], row[idx]) if row[day] is not None and row[idx] is not None else None


def columns_of(fields: Any) -> set[str]:
    """The columns that hold these fields of an entry."""
    return {column for name in fields for column in LINK_COLUMNS.get(name, (name,))}


def entry_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A table row for an entry's fields (the stored form, or links as text)."""
    row = {f: storable(entry.get(f)) for f in FIELDS}
    row["day"], row["idx"] = entry["date"], entry["index"]
    for name in LINKS:
        row.update(link_columns(name, entry.get(name)))
    defaults = Entry(id="", date="", index=0, created_at="", kind="code", prompt="").to_dict()
    for name, value in defaults.items():
        if name in row and row[name] is None and value is not None:
            row[name] = value
    row.update(search_columns(row["kind"], row["prompt"], row["response"], row["deleted"]))
    return row


def raw_entry(row: Any) -> dict[str, Any]:
    """The entry dict of a table row, in the stored form (as the TinyDB store keeps it)."""
    data = {f: row[f] for f in FIELDS}
    data["date"], data["index"] = row["day"], row["idx"]
    for name in LINKS:
        link = link_of(row, name)
        data[name] = link.stored() if link is not None else None
    return data


def entry_of(row: Any) -> Entry:
    """The Entry of a table row."""
    return Entry.from_dict(raw_entry(row))


def all_rows(query: Any, conn: Connection) -> list[Any]:
    """Every row `query` selects, as mappings (for a transaction of its own: `partial`)."""
    return list(conn.execute(query).mappings().all())


def scalar(query: Any, conn: Connection) -> Any:
    """The first value `query` selects (for a transaction of its own: `partial`)."""
    return conn.execute(query).scalar()


def public_error(error: Exception) -> str:
    """The kind of a database failure, for the log, without the connection string."""
    original = getattr(error, "orig", None)
    return type(original or error).__name__


class Database(StoreBase):
    """A connection pool to the history database, and the schema kept up to date."""

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
                log.error("The history database is not reachable (%s).", public_error(e))
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
                    log.error("The history database is not reachable (%s).", public_error(e))
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
