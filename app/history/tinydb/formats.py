"""The format of a TinyDB history folder, recorded in `history/format.json` as `{"format": 2}`.

- 1: an entry's links to other entries (`parent`, `root`, `sibling_of`) are permalink text,
  `/chatlog/<date>/<index>`. A folder without `format.json` is in format 1: it was written before
  formats were recorded.
- 2: those links are `{"date": "YYYY-MM-DD", "index": n}` objects (app.history.tinydb.days).

A folder with no day yet is marked with the newest format when a store first opens it. The app
moves an older folder forward once, when it starts (`Checkpoints.upgrade_format`, called by
app.stores.make_history): every day whose document or journals hold a link as text is written
again, the way a checkpoint writes a document (elsewhere, fsynced, renamed into place, its journals
folded into it), and then the folder is marked, so later starts only read this file. Reading never
depends on the mark: a day's state takes links in either form, so a journal appended by an older
process during a rolling upgrade, or an upgrade cut short, costs nothing but the next start's
rescan.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...files import atomic_write

FORMAT = 2  # the format this version writes
FILE = "format.json"


def folder_format(root: Path) -> int:
    """The format a history folder says it is in; 1 when it says nothing (or nothing readable)."""
    try:
        data = json.loads((root / FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return 1
    value = data.get("format") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def mark_format(root: Path) -> None:
    """Record that the folder's files are in FORMAT (atomically, durably)."""
    atomic_write(root / FILE, json.dumps({"format": FORMAT}) + "\n")
