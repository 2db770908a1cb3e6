"""The history engine in PostgreSQL, for several app servers sharing one history (HISTORY_URL).

- `store`: SQLChatLog, the engine, put together from its parts: `database` (schema, rows,
  connections, one transaction per operation), `writes`, `reads` (entries, pages, search) and
  `copies` (import, copies for backups and migrations, restore).
"""

from __future__ import annotations

from .database import MIGRATIONS, search_columns, sqlalchemy_url
from .store import SQLChatLog

__all__ = ["MIGRATIONS", "SQLChatLog", "search_columns", "sqlalchemy_url"]
