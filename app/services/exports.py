"""The history streamed out: the seed's chatlog.json, every field, Markdown, one batch of entries
(the Markdown one a conversation) at a time, so an export of millions of entries never sits in
memory. The HTTP exports and the backup ZIP write the same text from here.

The bodies need only the store, not a request: a client that hangs up drops a plain generator
unread without touching a context that is gone.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from ..history import Entry, HistoryStore, Permalink

Turn = Callable[[Entry, str], str]  # a turn as Markdown (the chatlog.md macro): entry, heading
Day = Callable[[str], str]  # a day's heading as Markdown


def compact_json(value: Any) -> str:
    """JSON without spaces, non-ASCII text as it is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def seed_json(history: HistoryStore, *, newline: str = "") -> Iterator[str]:
    """The whole history in the seed's chatlog.json format (`{date: [{prompt, response}]}`),
    oldest first; `newline` after each row (the backup's copy reads better with one)."""
    current = None
    for date, row in history.iter_seed():
        if date != current:
            yield ("{" if current is None else "]," + newline) + compact_json(date) + ":[" + newline
            yield compact_json(row)
            current = date
        else:
            yield "," + newline + compact_json(row)
    yield ("{" if current is None else "]") + "}\n"


def full_json(history: HistoryStore) -> Iterator[str]:
    """Every live entry with all its fields, oldest first, as one JSON array."""
    first = True
    for entry in history.iter_full():
        yield ("[" if first else ",") + compact_json(entry)
        first = False
    yield ("[" if first else "") + "]\n"


def conversations(history: HistoryStore) -> Iterator[tuple[Entry, Iterator[Entry] | None]]:
    """Every live entry, oldest first; with a conversation's first turn (or a single exchange)
    its later live turns in order, read as they are taken, and None with a later turn (it is
    taken with its first). A turn whose first turn was deleted counts as a first turn."""
    later: dict[Permalink, list[Permalink]] = {}  # first pass: only where the later turns are
    for raw in history.iter_entries(newest_first=False):
        root = Permalink.of(raw.get("root"))
        if root is not None:
            later.setdefault(root, []).append(Permalink(raw["date"], raw["index"]))
    threads = {root for root in later if _is_live(history, root)}
    for raw in history.iter_entries(newest_first=False):
        entry = Entry.from_dict(raw)
        if entry.root in threads:
            yield entry, None
        else:
            yield entry, _live_turns(history, later.get(entry.address, []))


def markdown(history: HistoryStore, turn: Turn, day: Day) -> Iterator[str]:
    """The whole history as one Markdown document, oldest first: a heading per day, each
    conversation's later turns under its first."""
    yield "# Chat history\n"
    current = None
    for entry, turns in conversations(history):
        if entry.date != current:
            current = entry.date
            yield day(current)
        if turns is None:
            continue  # shown under its first turn
        yield turn(entry, "###") + "\n"
        for follow in turns:
            yield turn(follow, "#### ↳") + "\n"


def download_name(prompt: str, extension: str) -> str:
    """A readable ASCII file name from the prompt: `a-red-fox-in-the-snow.png`."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()[:60].rstrip("-")
    return f"{slug or 'image'}.{extension}"


def _is_live(history: HistoryStore, link: Permalink) -> bool:
    entry = history.get(*link)
    return entry is not None and not entry.deleted


def _live_turns(history: HistoryStore, permalinks: list[Permalink]) -> Iterator[Entry]:
    for permalink in permalinks:
        follow = history.get(*permalink)
        if follow is not None and not follow.deleted:
            yield follow
