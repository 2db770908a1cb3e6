"""The chat history: TinyDB JSON grouped by date, behind the :class:`ChatLog` interface.

Layout on disk: `DATA_DIR/history.json`, one TinyDB document per date holding that day's entries
in index order. An entry's `index` is fixed when it is created and never reused, so the permalink
`/chatlog/<date>/<index>` keeps pointing at the same entry for ever (a deleted entry leaves a
tombstone and answers 410).

Every write replaces the file atomically (temp file, fsync, rename, fsync of the directory) and
every read-modify-write holds a cross-process file lock, so threads, gunicorn workers and CLI
runs can share one DATA_DIR. Only this module imports `tinydb`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock
from tinydb import Query, TinyDB
from tinydb.storages import Storage

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
KINDS = ("code", "image")
STATUSES = ("pending", "done", "failed")


class HistoryCorrupt(RuntimeError):
    """The history file exists but is not valid JSON; it is left untouched for the owner to fix."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"The history file {path} is damaged ({detail}); it was left untouched.")
        self.path = path


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see either the old or the new file, never half.

    The temporary file lives in the same directory (rename is atomic only within a file system)
    and has a `.tmp` suffix, so no half-written `*.json` ever exists.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that writes atomically and refuses to overwrite a damaged file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as e:
            raise HistoryCorrupt(self.path, f"not UTF-8 text: {e.reason}") from None
        if not text.strip():
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise HistoryCorrupt(self.path, f"invalid JSON at line {e.lineno}, column {e.colno}") from None
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise HistoryCorrupt(self.path, "not a TinyDB document")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        atomic_write_text(self.path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))

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
    deleted: bool = False

    @property
    def permalink(self) -> str:
        return f"/chatlog/{self.date}/{self.index}"

    @property
    def image_url(self) -> str | None:
        """The same-origin URL of this entry's image, or None when it has none (any more)."""
        return self.response if self.kind == "image" and self.image_file else None

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


class ChatLog:
    """The history store. Each method is one short, locked transaction on the history file."""

    def __init__(self, data_dir: Path, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(data_dir) / "history.json"
        self.lock = FileLock(str(self.path) + ".lock", timeout=30)
        self.clock = clock or (lambda: datetime.now().astimezone())

    def _db(self) -> TinyDB:
        return TinyDB(self.path, storage=AtomicJSONStorage)

    def _day_doc(self, table, date: str) -> tuple[int | None, dict[str, Any]]:
        found = table.get(Query().date == date)
        if found is None:
            return None, {"date": date, "next_index": 0, "entries": []}
        return found.doc_id, dict(found)

    @staticmethod
    def _save_day(table, doc_id: int | None, doc: dict[str, Any]) -> None:
        if doc_id is None:
            table.insert(doc)
        else:
            table.update(doc, doc_ids=[doc_id])

    # -- writes ------------------------------------------------------------------------------

    def begin(self, kind: str, prompt: str, model: str, *, demo: bool = False) -> Entry:
        """Store a new pending entry for `prompt` before the upstream is asked, and return it."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        now = self.clock()
        date = now.date().isoformat()
        with self.lock, self._db() as db:
            table = db.table("days")
            doc_id, doc = self._day_doc(table, date)
            entry = Entry(
                id=uuid.uuid4().hex,
                date=date,
                index=doc["next_index"],
                created_at=now.isoformat(timespec="seconds"),
                kind=kind,
                prompt=prompt,
                model=model,
                demo=demo,
            )
            doc["entries"] = [*doc["entries"], entry.to_dict()]
            doc["next_index"] = entry.index + 1
            self._save_day(table, doc_id, doc)
        return entry

    def _update(self, entry: Entry, **changes: Any) -> Entry:
        with self.lock, self._db() as db:
            table = db.table("days")
            doc_id, doc = self._day_doc(table, entry.date)
            entries = doc["entries"]
            for i, stored in enumerate(entries):
                if stored["id"] == entry.id:
                    stored = {**stored, **changes}
                    entries[i] = stored
                    break
            else:
                raise KeyError(f"entry {entry.id} is not in the history")
            self._save_day(table, doc_id, doc)
        return Entry.from_dict(stored)

    def finish(self, entry: Entry, response: str, **extra: Any) -> Entry:
        """Record the answer of a pending entry; it is durable when this returns."""
        return self._update(entry, response=response, status="done", error=None, **extra)

    def fail(self, entry: Entry, error: str) -> Entry:
        """Mark a pending entry failed with a human error message; the prompt stays."""
        return self._update(entry, status="failed", error=error)

    # -- reads -------------------------------------------------------------------------------

    def _all_docs(self) -> list[dict[str, Any]]:
        with self.lock, self._db() as db:
            return sorted((dict(d) for d in db.table("days").all()), key=lambda d: d["date"])

    def get(self, date: str, index: int) -> Entry | None:
        """The entry at `/chatlog/<date>/<index>`, a tombstone if deleted, or None if never existed."""
        if not DATE_RE.match(date) or index < 0:
            return None
        with self.lock, self._db() as db:
            found = db.table("days").get(Query().date == date)
        if found is None:
            return None
        for stored in found["entries"]:
            if stored["index"] == index:
                return Entry.from_dict(stored)
        return None

    def days(self, *, newest_first: bool = True, limit: int | None = None) -> list[Day]:
        """Entries grouped by date (deleted ones left out); `limit` caps the number of entries."""
        docs = self._all_docs()
        if newest_first:
            docs.reverse()
        result: list[Day] = []
        remaining = limit if limit is not None else float("inf")
        for doc in docs:
            if remaining <= 0:
                break
            entries = [Entry.from_dict(e) for e in doc["entries"] if not e.get("deleted")]
            if newest_first:
                entries.reverse()
            entries = entries[: int(min(remaining, len(entries)))]
            if entries:
                result.append(Day(doc["date"], entries))
                remaining -= len(entries)
        return result

    def count(self) -> int:
        """Number of entries (deleted ones left out)."""
        return sum(1 for doc in self._all_docs() for e in doc["entries"] if not e.get("deleted"))

    # -- seed format -------------------------------------------------------------------------

    def export_seed(self) -> dict[str, list[dict[str, str]]]:
        """The whole history in the seed's `chatlog.json` shape, oldest date first.

        Failed entries carry an `error` field next to the seed's `prompt` and `response`.
        """
        out: dict[str, list[dict[str, str]]] = {}
        for day in self.days(newest_first=False):
            rows = []
            for e in day.entries:
                row = {"prompt": e.prompt, "response": e.response}
                if e.status == "failed" and e.error:
                    row["error"] = e.error
                rows.append(row)
            out[day.date] = rows
        return out

    def import_seed(
        self, data: Any, image_file_for: Callable[[str], str | None] = lambda response: None
    ) -> tuple[int, int]:
        """Import the seed's `{date: [{prompt, response}]}` format; returns (added, skipped).

        Entries already present (same date, prompt and response) are skipped, so importing the
        same file twice adds nothing the second time. `image_file_for` maps an image response to
        a local file name if that image still exists here; seed images that are gone stay
        readable and are shown as no longer available.
        """
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
        added = skipped = 0
        with self.lock, self._db() as db:
            table = db.table("days")
            for date in sorted(data):
                doc_id, doc = self._day_doc(table, date)
                present = {(e["prompt"], e["response"]) for e in doc["entries"] if not e.get("deleted")}
                new_entries = list(doc["entries"])
                for row in data[date]:
                    prompt, response = row["prompt"], row.get("response", "")
                    if (prompt, response) in present:
                        skipped += 1
                        continue
                    present.add((prompt, response))
                    is_image = looks_like_image_response(response)
                    error = row.get("error") if isinstance(row.get("error"), str) else None
                    entry = Entry(
                        id=uuid.uuid4().hex,
                        date=date,
                        index=doc["next_index"],
                        created_at=f"{date}T00:00:00",
                        kind="image" if is_image else "code",
                        prompt=prompt,
                        response=response,
                        model="imported",
                        status="failed" if error else "done",
                        error=error,
                        image_file=image_file_for(response) if is_image else None,
                    )
                    doc["next_index"] += 1
                    new_entries.append(entry.to_dict())
                    added += 1
                doc["entries"] = new_entries
                if new_entries:
                    self._save_day(table, doc_id, doc)
        return added, skipped
