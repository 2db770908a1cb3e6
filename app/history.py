"""The chat history: TinyDB JSON grouped by date, behind the :class:`ChatLog` interface.

Layout on disk: `DATA_DIR/history/<YYYY-MM-DD>.json`, one TinyDB database per date whose table
`entries` holds that day's entries with `doc_id = index + 1`. An append rewrites only its own
day's file, so it costs the same with 100,000 entries as with 1,000. An entry's `index` is fixed
when it is created and never reused, so `/chatlog/<date>/<index>` keeps pointing at the same
entry for ever; a deleted entry leaves a tombstone without its content and answers 410.

Durability: every write replaces its file atomically (temp file in the same directory, fsync,
rename, fsync of the directory), so every `*.json` file is complete at every instant, kill -9
included. Every read-modify-write holds one cross-process file lock, so threads, gunicorn
workers and CLI runs can share a DATA_DIR. Readers take no lock: a rename is atomic.

Reads go through a per-process cache of parsed day files, checked against each file's inode,
size and mtime, so listing and searching re-parse only the days that changed.

A damaged day file is moved aside (`<date>.json.corrupt-<time>`), never overwritten, and logged
with its name; the rest of the history keeps working and the day's new entries continue after
the highest index still readable in the damaged file, so no permalink is ever reused.

Only this module imports `tinydb`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document

from .files import atomic_write

log = logging.getLogger("app.history")

# \Z, not $ (which also matches before a trailing newline); ASCII digits only. Callers use match().
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
KINDS = ("code", "image")
TABLE = "entries"
SEQUENCE_BLOCK = 16


class HistoryCorrupt(RuntimeError):
    """A history file was damaged; it has been moved aside (quarantined) and is named here."""

    def __init__(self, path: Path, detail: str, moved_to: Path | None = None) -> None:
        where = f"; it was moved aside to {moved_to.name}" if moved_to else ""
        super().__init__(f"The history file {path} is damaged ({detail}){where}.")
        self.path = path
        self.detail = detail
        self.moved_to = moved_to


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace `path` with `text` atomically (see app.files.atomic_write)."""
    atomic_write(path, text, durable=durable)


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


_UNREAD = object()


class AtomicJSONStorage(Storage):
    """A TinyDB storage that writes atomically and refuses to overwrite a damaged file.

    One instance serves one locked transaction, so it parses the file at most once (or takes
    the caller's already parsed `data`) and then keeps what it last read or wrote.
    """

    def __init__(self, path: str | os.PathLike, data: Any = _UNREAD) -> None:
        self.path = Path(path)
        self._data = data

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self._data is _UNREAD:
            self._data = parse_day_file(self.path)
        return self._data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        # An unpaired surrogate (model output can carry one through a JSON escape) has no UTF-8
        # form: it is written as "?" instead of failing the write and losing the answer.
        atomic_write(self.path, text.encode("utf-8", "replace"))
        self._data = data

    def close(self) -> None:
        pass


@dataclass
class Entry:
    """One exchange: a prompt and its answer (markdown text or the app's own image URL)."""

    id: str
    date: str
    index: int
    created_at: str
    kind: str
    prompt: str
    response: str = ""
    model: str = ""
    status: str = "pending"
    error: str | None = None
    demo: bool = False
    image_file: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    dimensions: list[int] = field(default_factory=list)
    # Conversations: the permalink of the turn this one follows up, and of the first turn.
    parent: str | None = None
    root: str | None = None
    turn: int = 1
    followups: int = 0  # live turns that follow up this one; History shows a thread's latest
    context_dropped: int = 0  # earlier turns left out of the context to fit the budget
    deleted: bool = False

    @property
    def permalink(self) -> str:
        return f"/chatlog/{self.date}/{self.index}"

    @property
    def thread(self) -> str:
        """The permalink of the conversation's first turn (its own for a single exchange)."""
        return self.root or self.permalink

    @property
    def image_url(self) -> str | None:
        """The same-origin URL of this entry's image, or None when it has none (any more)."""
        return self.response if self.kind == "image" and self.image_file else None

    @property
    def thumb_url(self) -> str | None:
        """The thumbnail's URL (images stored before thumbnails existed have none)."""
        if not self.image_url or not self.image_file:
            return None
        return "/images/" + self.image_file.removesuffix(".png") + ".thumb.webp"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Day:
    """The entries of one date, in the order the caller asked for."""

    date: str
    entries: list[Entry]


@dataclass(frozen=True)
class Page:
    """One page of history, newest first, and the cursor of the next (older) page if any."""

    days: list[Day]
    next_cursor: str | None


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def looks_like_image_response(response: str) -> bool:
    """True for the seed's image answers: its fixed PNG path or a bare image URL."""
    text = response.strip()
    if not text or any(c.isspace() for c in text):
        return False
    path = text.split("?", 1)[0].lower()
    if text.startswith("/static/") or text.startswith("/images/"):
        return path.endswith(_IMAGE_SUFFIXES)
    return text.startswith(("http://", "https://")) and (
        path.endswith(_IMAGE_SUFFIXES) or "dalle" in path or "blob.core.windows.net" in path
    )


def _group(entries: list[dict[str, Any]]) -> list[Day]:
    days: list[Day] = []
    for raw in entries:
        if not days or days[-1].date != raw["date"]:
            days.append(Day(raw["date"], []))
        days[-1].entries.append(Entry.from_dict(raw))
    return days


def parse_cursor(cursor: str | None) -> tuple[str, int] | None:
    """`"<date>/<index>"` → (date, index); None for a missing or malformed cursor."""
    if not cursor:
        return None
    date, _, index = cursor.partition("/")
    if not DATE_RE.match(date) or not index.isdigit():
        return None
    return date, int(index)


class HistoryUnavailable(RuntimeError):
    """The history store cannot be reached (its database is down); nothing was written."""


class HistoryStore:
    """What every history backend offers; the routes and the generator use only this.

    Backends: :class:`ChatLog` (TinyDB files in DATA_DIR, the default) and
    :class:`app.history_sql.SQLChatLog` (PostgreSQL, for several app servers). A backend
    implements the storage primitives; the behaviour built on them lives here, once.
    """

    backend = "abstract"
    # How often (seconds) a stream looks for a Stop request between chunks.
    stop_poll_interval = 0.0

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now().astimezone())

    def _new_entry(self, kind: str, prompt: str, model: str, demo: bool, parent: Entry | None) -> Entry:
        """A new pending entry (index 0 until the backend assigns the day's next one)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        now = self.clock()
        return Entry(
            id=uuid.uuid4().hex,
            date=now.date().isoformat(),
            index=0,
            created_at=now.isoformat(timespec="seconds"),
            kind=kind,
            prompt=prompt,
            model=model,
            demo=demo,
            parent=parent.permalink if parent else None,
            root=parent.thread if parent else None,
            turn=parent.turn + 1 if parent else 1,
        )

    @staticmethod
    def _seed_entry(date: str, index: int, row: dict[str, Any], image_file_for) -> Entry:
        """An entry for one row of the seed's chatlog.json."""
        prompt, response = row["prompt"], row.get("response", "")
        is_image = looks_like_image_response(response)
        error = row.get("error") if isinstance(row.get("error"), str) else None
        return Entry(
            id=uuid.uuid4().hex,
            date=date,
            index=index,
            created_at=f"{date}T00:00:00",
            kind="image" if is_image else "code",
            prompt=prompt,
            response=response,
            model="imported",
            status="failed" if error else "done",
            error=error,
            image_file=image_file_for(response) if is_image else None,
        )

    @staticmethod
    def _unseen(rows: list[dict[str, Any]], present: set[tuple[str, str]]) -> list[dict[str, Any]]:
        """The seed rows whose (prompt, response) is not among `present` (nor earlier in `rows`)."""
        new = []
        for row in rows:
            key = (row["prompt"], row.get("response", ""))
            if key not in present:
                present.add(key)
                new.append(row)
        return new

    def _update(self, entry: Entry, **changes: Any) -> Entry:
        raise NotImplementedError

    def get(self, date: str, index: int) -> Entry | None:
        raise NotImplementedError

    def delete(self, date: str, index: int) -> Entry | None:
        raise NotImplementedError

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def finish(self, entry: Entry, response: str, **extra: Any) -> Entry:
        """Record the answer of a pending entry; it is durable when this returns."""
        return self._update(entry, response=response, status="done", error=None, **extra)

    def fail(self, entry: Entry, error: str, *, partial: str = "", **extra: Any) -> Entry:
        """Mark a pending entry failed with a human error message; the prompt stays, and so does
        any `partial` answer that arrived before the failure."""
        return self._update(entry, status="failed", error=error, response=partial, **extra)

    def stop(self, entry: Entry, partial: str, **extra: Any) -> Entry:
        """Mark a pending entry stopped by the user, keeping the partial answer."""
        return self._update(entry, status="stopped", error=None, response=partial, **extra)

    @staticmethod
    def _tombstone(stored: dict[str, Any]) -> dict[str, Any]:
        # The content goes; only what keeps the permalink meaningful (410, not reused) stays.
        # `parent` and `root` stay too: later turns of a conversation remain linked through it.
        return {"deleted": True, "prompt": "", "response": "", "error": None, "image_file": None, "usage": {}}

    def _live_ancestor(self, permalink: str | None) -> Entry | None:
        """The first live entry up a parent chain starting at `permalink` (tombstones skipped)."""
        for _ in range(10_000):  # bounded, as in chain()
            target = parse_cursor((permalink or "").removeprefix("/chatlog/"))
            entry = self.get(*target) if target else None
            if entry is None or not entry.deleted:
                return entry
            permalink = entry.parent
        return None

    def chain(self, entry: Entry) -> list[Entry]:
        """The turns `entry` follows up, oldest first, ending with `entry` (deleted ones skipped)."""
        turns: list[Entry] = []
        current: Entry | None = entry
        for _ in range(10_000):  # bounded: a chain never loops, but a hand-edited file might
            if current is None:
                break
            if not current.deleted:
                turns.append(current)
            parent = parse_cursor((current.parent or "").removeprefix("/chatlog/"))
            current = self.get(*parent) if parent else None
        return list(reversed(turns))

    def days(self, *, newest_first: bool = True, limit: int | None = None) -> list[Day]:
        """Entries grouped by date (deleted ones left out); `limit` caps the number of entries."""
        picked: list[dict[str, Any]] = []
        for raw in self.iter_entries(newest_first=newest_first):
            if limit is not None and len(picked) >= limit:
                break
            picked.append(raw)
        return _group(picked)

    def today(self) -> str:
        """Today's date by the store's clock (the server's local date)."""
        return self.clock().date().isoformat()

    def quarantined(self) -> list[str]:
        """Names of damaged parts of the history that were moved aside (none for a database)."""
        return []

    def ready(self) -> tuple[bool, str]:
        """Whether the store can take writes now, and a short word on why not."""
        raise NotImplementedError

    # -- import / export ---------------------------------------------------------------------

    def export_seed(self) -> dict[str, list[dict[str, str]]]:
        """The whole history in the seed's `chatlog.json` shape, oldest date first.

        Failed entries carry an `error` field next to the seed's `prompt` and `response`.
        """
        out: dict[str, list[dict[str, str]]] = {}
        for date, row in self.iter_seed():
            out.setdefault(date, []).append(row)
        return out

    def iter_seed(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(date, seed row) of every live entry, oldest first, read a batch at a time."""
        for raw in self.iter_entries(newest_first=False):
            row = {"prompt": raw["prompt"], "response": raw["response"]}
            if raw.get("status") == "failed" and raw.get("error"):
                row["error"] = raw["error"]
            elif raw.get("status") == "pending":
                row["error"] = "The answer was not finished."
            yield raw["date"], row

    def export_full(self) -> list[dict[str, Any]]:
        """Every live entry with all its fields, oldest first."""
        return list(self.iter_full())

    def iter_full(self) -> Iterator[dict[str, Any]]:
        """Every live entry with all its fields, oldest first, read a batch at a time."""
        for raw in self.iter_entries(newest_first=False):
            yield Entry.from_dict(raw).to_dict()

    @staticmethod
    def validate_seed(data: Any) -> None:
        """Raise ValueError saying what is wrong unless `data` is in the seed's format."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of dates, as the seed's chatlog.json")
        for date, rows in data.items():
            if not isinstance(date, str) or not DATE_RE.match(date):
                raise ValueError(f"{date!r} is not a date (YYYY-MM-DD)")
            try:
                datetime.strptime(date, "%Y-%m-%d")
            except ValueError:
                raise ValueError(f"{date!r} is not a valid date") from None
            if not isinstance(rows, list) or not all(
                isinstance(r, dict)
                and isinstance(r.get("prompt"), str)
                and isinstance(r.get("response", ""), str)
                for r in rows
            ):
                raise ValueError(f"entries of {date} must be objects with string 'prompt' and 'response'")


class ChatLog(HistoryStore):
    """The history store in TinyDB files. Each write is one short, locked transaction on one
    day's file."""

    backend = "tinydb"

    def __init__(self, data_dir: Path, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(clock)
        self.root = Path(data_dir) / "history"
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir = Path(data_dir) / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(str(self.root / ".lock"), timeout=60)
        self.seq_path = self.root / "sequence.json"
        self._cache: dict[str, tuple[tuple[int, int, int], list[dict[str, Any]]]] = {}
        self._folded: dict[str, tuple[tuple[int, int, int], str]] = {}
        self._cache_lock = threading.Lock()

    # -- files -------------------------------------------------------------------------------

    def _path(self, date: str) -> Path:
        if not DATE_RE.match(date):
            raise ValueError(f"{date!r} is not a date (YYYY-MM-DD)")
        return self.root / f"{date}.json"

    def dates(self) -> list[str]:
        """Every date with a day file, oldest first."""
        return sorted(
            name[:-5] for name in os.listdir(self.root) if name.endswith(".json") and DATE_RE.match(name[:-5])
        )

    def quarantined(self) -> list[str]:
        """Names of damaged day files that were moved aside, for the owner to repair."""
        return sorted(name for name in os.listdir(self.root) if ".json.corrupt-" in name)

    def _quarantine(self, path: Path, error: HistoryCorrupt) -> HistoryCorrupt:
        """Move a damaged file aside (under the lock, after checking it is still damaged)."""
        with self.lock:
            try:
                parse_day_file(path)
                return error  # repaired or replaced meanwhile: nothing to move
            except HistoryCorrupt:
                pass
            stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            try:
                highest = self._highest_index_in(path)
                os.replace(path, target)
            except FileNotFoundError:
                return error
            if highest is not None:
                # Keep the damaged day's permalinks unused: new entries continue after them.
                self._advance_sequence(path.name[:-5], highest + 1)
        moved = HistoryCorrupt(error.path, error.detail, target)
        log.error("%s The rest of the history keeps working.", moved)
        return moved

    @staticmethod
    def _highest_index_in(path: Path) -> int | None:
        text = path.read_bytes().decode("utf-8", errors="replace")
        found = [int(n) for n in re.findall(r'"index"\s*:\s*(\d+)', text)]
        found += [int(n) - 1 for n in re.findall(r'"(\d+)"\s*:\s*\{', text)]
        return max(found) if found else None

    # The next index of each date, kept beside the day files so a day file lost to damage
    # cannot hand out its permalinks again. Written atomically under the lock but without
    # fsync: it matters only when a day file is destroyed, and the day file itself is durable.

    def _sequence(self) -> dict[str, int]:
        try:
            data = json.loads(self.seq_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _advance_sequence(self, date: str, next_index: int) -> None:
        seq = self._sequence()
        if seq.get(date, 0) >= next_index:
            return
        seq[date] = next_index
        atomic_write_text(self.seq_path, json.dumps(seq, sort_keys=True), durable=False)

    def _reserve_sequence(self, date: str, index: int) -> None:
        """Record that indexes up to a block boundary past `index` may be in use (one write per
        SEQUENCE_BLOCK appends): a lost day then continues after the block, never inside it."""
        if index >= int(self._sequence().get(date, 0)):
            self._advance_sequence(date, (index // SEQUENCE_BLOCK + 1) * SEQUENCE_BLOCK)

    def _next_index(self, table, date: str) -> int:
        """The next index of a day: after its last entry, or, for a day whose file was lost to
        damage (an empty table), after everything the sequence says may have existed."""
        last = max((doc.doc_id for doc in table.all()), default=0)
        return last if last else int(self._sequence().get(date, 0))

    def _read_day(self, date: str) -> list[dict[str, Any]]:
        """The raw entries of a day in index order (tombstones included), from the cache if fresh."""
        path = self._path(date)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return []
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._cache_lock:
            cached = self._cache.get(date)
        if cached and cached[0] == key:
            return cached[1]
        try:
            data = parse_day_file(path) or {}
        except HistoryCorrupt as error:
            self._quarantine(path, error)
            return self._read_day(date) if path.exists() else []
        table = data.get(TABLE, {})
        entries = [table[k] for k in sorted(table, key=int)]
        with self._cache_lock:
            self._cache[date] = (key, entries)
        return entries

    def _db(self, date: str) -> TinyDB:
        """The day's database for one locked transaction (a damaged file is moved aside first)."""
        path = self._path(date)
        try:
            data = parse_day_file(path)
        except HistoryCorrupt as error:
            self._quarantine(path, error)
            data = None
        return TinyDB(path, storage=AtomicJSONStorage, data=data)

    # -- writes ------------------------------------------------------------------------------

    def begin(
        self, kind: str, prompt: str, model: str, *, demo: bool = False, parent: Entry | None = None
    ) -> Entry:
        """Store a new pending entry for `prompt` before the upstream is asked, and return it.

        With `parent`, the entry is the next turn of the parent's conversation.
        """
        entry = self._new_entry(kind, prompt, model, demo, parent)
        with self.lock:
            if parent is not None:
                self._count_followup(parent, +1)
            # Durable like every write: the rewrite carries the day's acknowledged entries too.
            with self._db(entry.date) as db:
                table = db.table(TABLE)
                entry.index = self._next_index(table, entry.date)
                table.insert(Document(entry.to_dict(), doc_id=entry.index + 1))
                self._reserve_sequence(entry.date, entry.index)
        return entry

    def _count_followup(self, entry: Entry, step: int) -> None:
        """Count a follow-up turn on `entry` (under the lock, in its own day's transaction)."""
        with self._db(entry.date) as db:
            table = db.table(TABLE)
            stored = table.get(doc_id=entry.index + 1)
            if stored is None or stored.get("id") != entry.id or stored.get("deleted"):
                return
            table.update({"followups": max(0, stored.get("followups", 0) + step)}, doc_ids=[entry.index + 1])

    def _update(self, entry: Entry, **changes: Any) -> Entry:
        with self.lock, self._db(entry.date) as db:
            table = db.table(TABLE)
            stored = table.get(doc_id=entry.index + 1)
            if stored is None or stored.get("id") != entry.id:
                raise KeyError(f"entry {entry.id} is not in the history")
            if stored.get("deleted") or stored.get("status") != "pending":
                # Deleted while generating, or already finished by another request: an outcome
                # arriving late never overwrites it.
                return Entry.from_dict(stored)
            table.update(changes, doc_ids=[entry.index + 1])
            return Entry.from_dict({**stored, **changes})

    def delete(self, date: str, index: int) -> Entry | None:
        """Delete one entry, leaving a tombstone; returns what was deleted (None if nothing)."""
        if not DATE_RE.match(date) or index < 0 or not self._path(date).exists():
            return None
        with self.lock:
            with self._db(date) as db:
                table = db.table(TABLE)
                stored = table.get(doc_id=index + 1)
                if stored is None or stored.get("deleted"):
                    return None
                table.update(self._tombstone(stored), doc_ids=[index + 1])
            self._release_parent(stored)
        return Entry.from_dict(stored)

    def _release_parent(self, deleted: dict[str, Any]) -> None:
        """Keep History's count of follow-ups right when a turn goes: its nearest live ancestor
        loses this follow-up but inherits the deleted turn's own follow-ups (which continue the
        same conversation), so a thread stays listed exactly once."""
        ancestor = self._live_ancestor(deleted.get("parent"))
        if ancestor is not None:
            self._count_followup(ancestor, deleted.get("followups", 0) - 1)

    def delete_day(self, date: str) -> list[Entry]:
        """Delete every entry of a date (tombstones keep its indexes unused); returns them."""
        if not DATE_RE.match(date) or not self._path(date).exists():
            return []
        deleted: list[Entry] = []
        with self.lock:
            live = [raw for raw in self._read_day(date) if not raw.get("deleted")]
            # One at a time, newest first, so follow-up counts move exactly as for single deletes.
            for raw in reversed(live):
                if (entry := self.delete(date, raw["index"])) is not None:
                    deleted.append(entry)
        return deleted

    # -- reads -------------------------------------------------------------------------------

    def get(self, date: str, index: int) -> Entry | None:
        """The entry at `/chatlog/<date>/<index>`, a tombstone if deleted, or None if never existed."""
        if not DATE_RE.match(date) or index < 0:
            return None
        for raw in self._read_day(date):
            if raw["index"] == index:
                return Entry.from_dict(raw)
        return None

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Raw live entries (no tombstones), a day at a time: only as many days are read as used.

        `until` and `since` skip the dates after / before them without reading them.
        """
        dates = self.dates()
        if until is not None:
            dates = [d for d in dates if d <= until]
        if since is not None:
            dates = [d for d in dates if d >= since]
        for date in reversed(dates) if newest_first else dates:
            entries = [e for e in self._read_day(date) if not e.get("deleted")]
            yield from reversed(entries) if newest_first else entries

    def page(self, limit: int, before: str | None = None) -> Page:
        """Up to `limit` entries, newest first, older than the cursor `before` ("<date>/<index>").

        A conversation appears once, as its latest turn (earlier turns have follow-ups).
        """
        start = parse_cursor(before)
        picked: list[dict[str, Any]] = []
        more = False
        for raw in self.iter_entries(until=start[0] if start else None):
            if start and (raw["date"], raw["index"]) >= start:
                continue
            if raw.get("followups", 0) > 0:
                continue
            if len(picked) == limit:
                more = True
                break
            picked.append(raw)
        cursor = f"{picked[-1]['date']}/{picked[-1]['index']}" if more and picked else None
        return Page(_group(picked), cursor)

    def images_page(self, limit: int, before: str | None = None) -> tuple[list[Entry], str | None]:
        """Up to `limit` image entries that still have their image, newest first, older than the
        cursor `before`; and the cursor of the next page, if any."""
        start = parse_cursor(before)
        picked: list[Entry] = []
        for raw in self.iter_entries(until=start[0] if start else None):
            if start and (raw["date"], raw["index"]) >= start:
                continue
            if raw["kind"] != "image" or not raw.get("image_file"):
                continue
            if len(picked) == limit:
                last = picked[-1]
                return picked, f"{last.date}/{last.index}"
            picked.append(Entry.from_dict(raw))
        return picked, None

    @staticmethod
    def _searchable(raw: dict[str, Any]) -> str:
        if raw.get("deleted"):
            return ""
        answer = raw["response"] if raw["kind"] != "image" else ""
        return f"{raw['prompt']}\x00{answer}".casefold()

    def _folded_day(self, date: str) -> tuple[list[dict[str, Any]], str]:
        """A day's entries and their casefolded text joined into one string (cached with them).

        One substring scan of this string rules a whole day in or out, so a search over 100,000
        entries touches only the few days that can match.
        """
        entries = self._read_day(date)
        with self._cache_lock:
            key = self._cache[date][0] if date in self._cache else None
            folded = self._folded.get(date)
        if folded is None or folded[0] != key:
            folded = (key, "\x01".join(self._searchable(raw) for raw in entries))
            with self._cache_lock:
                self._folded[date] = folded
        return entries, folded[1]

    def conversation(self, entry: Entry) -> list[Entry]:
        """Every live turn of `entry`'s conversation in order (just `entry` for a single one)."""
        thread = entry.thread
        target = parse_cursor(thread.removeprefix("/chatlog/"))
        if target is None:
            return [entry]
        turns = [
            Entry.from_dict(raw)
            for raw in self.iter_entries(newest_first=False, since=target[0])
            if raw.get("root") == thread or (raw["date"], raw["index"]) == target
        ]
        return turns or [entry]

    def search(self, query: str, limit: int = 100) -> list[Entry]:
        """Entries whose prompt or answer contains `query` (case-insensitive), newest first."""
        needle = query.casefold().strip()
        if not needle:
            return []
        found: list[Entry] = []
        for date in reversed(self.dates()):
            entries, text = self._folded_day(date)
            if needle not in text:
                continue
            for raw in reversed(entries):
                if needle in self._searchable(raw):
                    found.append(Entry.from_dict(raw))
                    if len(found) >= limit:
                        return found
        return found

    def count_on(self, date: str) -> int:
        """Entries created on `date`, deleted ones included (they were generated all the same)."""
        return len(self._read_day(date)) if DATE_RE.match(date) else 0

    def count(self) -> int:
        """Number of entries (deleted ones left out)."""
        return sum(1 for _ in self.iter_entries())

    def ready(self) -> tuple[bool, str]:
        try:
            probe = self.root / f".readyz-{uuid.uuid4().hex}.tmp"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError:
            return False, "not writable"
        return True, "writable"

    # -- streams -----------------------------------------------------------------------------
    # Which process streams a pending entry, and Stop requests for it, as marker files in
    # DATA_DIR/run: every process sharing the DATA_DIR sees them.

    def claim_run(self, entry_id: str) -> bool:
        """Claim the stream of an entry; True for exactly one caller across processes."""
        try:
            (self.run_dir / f"{entry_id}.claim").open("x").close()
        except FileExistsError:
            return False
        return True

    def run_claimed_for(self, entry_id: str) -> float | None:
        """Seconds since the entry's stream was claimed, None if nobody holds it."""
        try:
            return time.time() - (self.run_dir / f"{entry_id}.claim").stat().st_mtime
        except FileNotFoundError:
            return None

    def request_stop(self, entry_id: str) -> None:
        (self.run_dir / f"{entry_id}.stop").touch()

    def stop_requested(self, entry_id: str) -> bool:
        return (self.run_dir / f"{entry_id}.stop").exists()

    def release_run(self, entry_id: str) -> None:
        for suffix in (".claim", ".stop"):
            (self.run_dir / f"{entry_id}{suffix}").unlink(missing_ok=True)

    # -- import / export ---------------------------------------------------------------------

    def import_seed(
        self, data: Any, image_file_for: Callable[[str], str | None] = lambda response: None
    ) -> tuple[int, int]:
        """Import the seed's `{date: [{prompt, response}]}` format; returns (added, skipped).

        Entries already present (same date, prompt and response) are skipped, so importing the
        same file twice adds nothing the second time. `image_file_for` maps an image response to
        a local file name if that image still exists here; seed images that are gone stay
        readable and are shown as no longer available. Each date is one write.
        """
        self.validate_seed(data)
        added = skipped = 0
        with self.lock:
            for date in sorted(data):
                with self._db(date) as db:
                    table = db.table(TABLE)
                    existing = table.all()
                    present = {(e["prompt"], e["response"]) for e in existing if not e.get("deleted")}
                    index = self._next_index(table, date)
                    rows = self._unseen(data[date], present)
                    skipped += len(data[date]) - len(rows)
                    new_docs = []
                    for row in rows:
                        entry = self._seed_entry(date, index, row, image_file_for)
                        new_docs.append(Document(entry.to_dict(), doc_id=index + 1))
                        index += 1
                    if new_docs:
                        table.insert_multiple(new_docs)
                        self._advance_sequence(date, index)
                        added += len(new_docs)
        return added, skipped
