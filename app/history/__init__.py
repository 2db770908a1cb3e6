"""The chat history: entries, their permalinks, and the store interface with its two engines.

- `model`: Entry, Permalink, Day, Page and the errors.
- `store`: the HistoryStore protocol (every method the app calls) and the behaviour both engines
  share.
- `query`: what a search means (words, phrases, filters, ranking), the same for both engines.
- `tinydb/`: the default engine, TinyDB day documents in DATA_DIR under an append-only journal,
  with a word index per day for search.
- `sql/`: PostgreSQL, for several app servers.
- `seed`: the original project's chatlog.json format; `claims`: who streams a pending answer.

Only `tinydb/` reads and writes the TinyDB documents, and only `sql/` and `claims`
talk SQL.
"""

from __future__ import annotations

from .claims import StreamClaims
from .model import (
    DATE_RE,
    KINDS,
    Day,
    Entry,
    HistoryCorrupt,
    HistoryUnavailable,
    Page,
    Permalink,
    is_date,
    parse_cursor,
)
from .store import HistoryStore
from .tinydb import ChatLog

__all__ = [
    "DATE_RE",
    "KINDS",
    "ChatLog",
    "Day",
    "Entry",
    "HistoryCorrupt",
    "HistoryStore",
    "HistoryUnavailable",
    "Page",
    "Permalink",
    "StreamClaims",
    "is_date",
    "parse_cursor",
]
