"""The history engine in PostgreSQL, for several app servers sharing one history.

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

from .copies import Copies


class SQLChatLog(Copies):
    """The history store in PostgreSQL (see the module's docstring).

    Its parts, each a module: `database` (schema, rows, connections, transactions), `writes`,
    `reads` (entries, pages, search) and `copies` (import, backup copies, restore, migration).
    """
