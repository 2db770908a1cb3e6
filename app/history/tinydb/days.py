"""One day of the TinyDB history on disk: its document, its journals, and their state in memory.

Files of a date in `DATA_DIR/history`:

- `<date>.json`: the day's TinyDB document. Table `entries` holds the entries with
  `doc_id = index + 1`; table `_journal` says which journals it already contains. Always complete,
  valid JSON (written elsewhere, fsynced, renamed).
- `<date>.<gen>.journal`: changes made since (see app.history.tinydb.journal), generation after
  generation. The document covers every generation up to its `gen`; the ones after it exist
  without gaps, the newest taking appends.
- `<date>.idx`: the day's word index for search (app.history.tinydb.index), derived and rebuildable.

An entry is stored with its fields as `Entry.to_dict()` gives them; its links to other entries
(`parent`, `root`, `sibling_of`) as `{"date": "YYYY-MM-DD", "index": n}` objects, or null.
Documents and journals written before (history format 1) hold them as `/chatlog/<date>/<index>`
text: a day's state reads either and holds the objects (app.history.tinydb.formats moves old
files forward once).

A day's state in a process is its document plus the journal records read so far; catching up
reads only what was appended since the last look.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import MemoryStorage
from tinydb.table import Document

from ..model import HistoryCorrupt, stored_links

TABLE = "entries"
META = "_journal"
MAX_GENERATIONS = 1_000  # journals a day can have at once (a checkpoint keeps it to one or two)
_META_HEAD = re.compile(rb'\{"' + META.encode() + rb'":\{"1":(\{[^{}]*\})\}')

DocKey = tuple[int, int, int]  # (inode, size, mtime_ns): a document changes, its key changes


def doc_key(path: Path) -> DocKey | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def parse_day_file(path: Path) -> dict[str, dict[str, Any]] | None:
    """The TinyDB document of a day file, None if it does not exist; HistoryCorrupt if damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    if not raw.strip():
        # Our writes never leave an empty file: this one was truncated by a crash of the disk.
        raise HistoryCorrupt(path, "empty file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise HistoryCorrupt(path, f"not UTF-8 text: {e.reason}") from None
    except json.JSONDecodeError as e:
        raise HistoryCorrupt(path, f"invalid JSON at line {e.lineno}, column {e.colno}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise HistoryCorrupt(path, "not a TinyDB database")
    table = data.get(TABLE, {})
    if not all(k.isdigit() and isinstance(v, dict) and "index" in v for k, v in table.items()):
        raise HistoryCorrupt(path, "entries are not history entries")
    return data


def document_rows(data: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of a parsed day document, in index order, read through TinyDB."""
    db = TinyDB(storage=MemoryStorage)
    db.storage.write(data)
    return sorted((dict(doc) for doc in db.table(TABLE).all()), key=lambda raw: raw["index"])


def document_text(coverage: Coverage, rows: list[dict[str, Any]]) -> bytes:
    """A day document holding `rows`, built with TinyDB (its `_journal` table first, so that
    Coverage.peek finds it at the head of the file) and serialised as compact UTF-8 JSON."""
    db = TinyDB(storage=MemoryStorage)
    db.table(META).insert(Document(coverage.as_table()["1"], doc_id=1))
    db.table(TABLE).insert_multiple(Document(raw, doc_id=raw["index"] + 1) for raw in rows)
    text = json.dumps(db.storage.read(), ensure_ascii=False, separators=(",", ":"))
    # A lone surrogate (model output can carry one) has no UTF-8 form: written as "?".
    return text.encode("utf-8", "replace")


@dataclass(frozen=True)
class Coverage:
    """What a day document already contains of the journals: every generation up to `gen`,
    the last ones at the sizes in `sizes`; `id` names the document, `parent` the one it folded.
    No entry of the day ever had an index below `floor` that is not in it (a document damaged and
    moved aside leaves its highest index here, so its permalinks are never handed out again)."""

    id: str | None = None
    parent: str | None = None
    gen: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    floor: int = 0

    def as_table(self) -> dict[str, dict[str, Any]]:
        sizes = ",".join(f"{g}:{n}" for g, n in sorted(self.sizes.items()))
        row = {"id": self.id, "parent": self.parent, "gen": self.gen, "sizes": sizes, "floor": self.floor}
        return {"1": row}

    @classmethod
    def from_table(cls, table: object) -> Coverage:
        row = table.get("1") if isinstance(table, dict) else None
        if not isinstance(row, dict):
            return cls()  # a document from before journals: it covers none
        try:
            sizes: dict[int, int] = {}
            for part in str(row.get("sizes") or "").split(","):
                if part:
                    number, _, size = part.partition(":")
                    sizes[int(number)] = int(size)
            gen, floor = int(row.get("gen", 0)), int(row.get("floor", 0))
            return cls(row.get("id"), row.get("parent"), gen, sizes, floor)
        except (TypeError, ValueError):
            return cls()

    @classmethod
    def peek(cls, path: Path) -> Coverage | None:
        """The coverage at the head of a document, read without parsing the rest of it."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(512)
        except FileNotFoundError:
            return None
        match = _META_HEAD.match(head)
        if match is None:
            return None
        try:
            return cls.from_table({"1": json.loads(match.group(1))})
        except ValueError:
            return None


class DayPaths:
    """Where the files of each date live."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Paths are built on every read of a day: keep the few in use (a pathlib join is slow).
        self._paths: dict[tuple[str, int], Path] = {}
        self._listing: tuple[int, list[str]] | None = None

    def _path(self, date: str, gen: int, name: str) -> Path:
        path = self._paths.get((date, gen))
        if path is None:
            if len(self._paths) > 4096:
                self._paths.clear()
            path = self._paths[(date, gen)] = self.root / name
        return path

    def doc(self, date: str) -> Path:
        return self._path(date, 0, f"{date}.json")

    def journal(self, date: str, gen: int) -> Path:
        return self._path(date, gen, f"{date}.{gen}.journal")

    def index(self, date: str) -> Path:
        return self.root / f"{date}.idx"

    def names(self) -> list[str]:
        """The names in the history folder. A listing is read again only when the folder
        changed (its mtime), and always while that change is recent: a second change within the
        file system's clock tick would not move the mtime."""
        st = os.stat(self.root)
        listed = self._listing
        if listed is not None and listed[0] == st.st_mtime_ns and time.time_ns() - st.st_mtime_ns > 2e9:
            return listed[1]
        names = os.listdir(self.root)
        self._listing = (st.st_mtime_ns, names)
        return names

    def journal_gens(self, date: str) -> list[int]:
        """Every journal generation of `date` on disk (a directory listing: for rare paths)."""
        prefix, suffix = f"{date}.", ".journal"
        gens = []
        for name in os.listdir(self.root):
            middle = name[len(prefix) : -len(suffix)]
            if name.startswith(prefix) and name.endswith(suffix) and middle.isdigit():
                gens.append(int(middle))
        return sorted(gens)


class DayState:
    """A day as this process knows it: the document it started from and the journal records
    applied since. Copy-on-write: a list handed out by :meth:`rows` never changes afterwards."""

    def __init__(self, date: str, key: DocKey | None, coverage: Coverage, rows: list[dict[str, Any]]) -> None:
        self.date = date
        self.key = key
        self.coverage = coverage
        self.offsets: dict[int, int] = {}  # journal generation → bytes applied
        self.tails: dict[int, int] = {}  # journal generation → bytes after its last complete line
        self.legacy = False  # some entry had its links in the text form of older data
        self.entries: dict[int, dict[str, Any]] = {raw["index"]: self._current(raw) for raw in rows}
        self.version = 0  # bumped on every change, for caches derived from the rows
        self.lock = threading.Lock()
        # (version, {index: (entry, folded prompt, folded answer)}) of the live entries, for search
        self.folded: tuple[int, dict[int, tuple[dict[str, Any], str, str]]] | None = None
        self._rows: list[dict[str, Any]] | None = None

    @property
    def journaled(self) -> bool:
        """True when journal records beyond the document have been applied."""
        return any(self.offsets.values())

    @property
    def active(self) -> int | None:
        """The newest journal generation seen (None: no journal since the document)."""
        return max(self.offsets) if self.offsets else None

    def _current(self, raw: dict[str, Any]) -> dict[str, Any]:
        """`raw` with its links in the stored form (older data holds them as text)."""
        upgraded = stored_links(raw)
        if upgraded is None:
            return raw
        self.legacy = True
        return upgraded

    def apply(self, record: dict[str, Any]) -> None:
        """Apply one journal record: `put` an entry, or `set` fields of the entry at an index.
        Records assign values, so applying a record twice changes nothing."""
        if "put" in record:
            raw = record["put"]
            self.entries[raw["index"]] = self._current(raw)
        elif "set" in record:
            stored = self.entries.get(record["set"])
            if stored is None or stored.get("id") != record.get("id"):
                return  # its entry was in a damaged document that was moved aside
            self.entries[record["set"]] = self._current({**stored, **record["c"]})
        else:
            return
        self.version += 1
        self._rows = None

    def rows(self) -> list[dict[str, Any]]:
        """Every entry of the day in index order, tombstones included."""
        if self._rows is None:
            self._rows = sorted(self.entries.values(), key=lambda raw: raw["index"])
        return self._rows

    def adopt(self, key: DocKey, coverage: Coverage) -> bool:
        """Take a new document in place of re-reading it: possible when it folds exactly the
        document and journal records this state holds. True if adopted."""
        if coverage.parent is None or coverage.parent != self.coverage.id:
            return False
        if any(self.offsets.get(gen, 0) != size for gen, size in coverage.sizes.items() if size):
            return False
        self.key, self.coverage = key, coverage
        self.offsets = {g: n for g, n in self.offsets.items() if g > coverage.gen}
        self.tails = {g: n for g, n in self.tails.items() if g > coverage.gen}
        return True

    def next_index(self, reserved: int) -> int:
        """The next index of the day: after its last entry and the document's floor; for a day
        with no entry at all, after `reserved` (what the sequence says may have existed)."""
        last = max(self.entries, default=-1)
        return max(last + 1, self.coverage.floor, reserved if last < 0 else 0)
