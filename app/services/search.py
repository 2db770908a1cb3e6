"""A search of the history as the views show it: the best hits with their snippets, and whether
more entries match than are shown."""

from __future__ import annotations

from dataclasses import dataclass

from ..history import HistoryStore
from ..history.query import parse_query
from ..snippets import Hit, Link, hits

SEARCH_LIMIT = 100


@dataclass(frozen=True)
class Found:
    """The hits of one search, best first, and whether there are more than SEARCH_LIMIT."""

    hits: list[Hit]
    more: bool


def search(history: HistoryStore, text: str, link: Link) -> Found:
    """Search for `text` (words, phrases, filters: app.history.query); QueryError for a
    malformed filter. `link` gives an entry's URL (a hit's link jumps to its match)."""
    query = parse_query(text)
    entries = history.search(query, limit=SEARCH_LIMIT + 1)
    found = hits(entries[:SEARCH_LIMIT], query, text, link)
    return Found(found, more=len(found) == SEARCH_LIMIT and len(entries) > SEARCH_LIMIT)
