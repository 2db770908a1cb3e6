"""Writing a backup: one ZIP with everything, streamed, so no history is ever whole in memory.

Members, in the order written:

- `history.json`: every entry with every field, deleted ones as tombstones, and each day's next
  index; one entry per line, so a restore reads it a line at a time.
- `chatlog.json`: the seed's format (what `/chatlog.json` exports).
- `markdown/<date>-<index>-<slug>.md`: one readable file per conversation; images are linked as
  `../images/<name>`, so the folder reads well on its own.
- `images/<name>`: every image in the image store (originals, thumbnails, pictures attached to
  prompts), by name, so whatever the entries refer to comes along.
- `manifest.json` (last): format and app version, counts, and the size and sha256 of every member.

Entries are carried with every field (`Entry.exported`: as the store keeps them, links to other
entries as permalink text, `/chatlog/<date>/<index>`, as before links were stored as values), so
fields added later travel without code here.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zipfile import ZIP_DEFLATED, ZIP_STORED, ZipFile, ZipInfo

from ..history import Entry, HistoryStore
from ..images import ImageStore
from ..services.exports import compact_json, conversations, download_name, seed_json

FORMAT = "flask-chat-backup"
FORMAT_VERSION = 1
HISTORY_HEAD = '{"format":"flask-chat-history","version":1,"entries":[\n'
CHUNK = 256 * 1024  # bytes handed to the response (or file) at a time

Render = Callable[[Entry, str, str], str]  # a turn as Markdown: entry, heading, image folder


class _Sink(io.RawIOBase):
    """Where ZipFile writes: bytes collected until the streaming side takes them. Not seekable,
    so ZipFile writes data descriptors and never goes back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.chunks.append(chunk)
        self.size += len(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


@dataclass
class Counts:
    """What went into a backup (written to its manifest)."""

    entries: int = 0
    deleted: int = 0
    days: int = 0
    conversations: int = 0
    images: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


class BackupWriter:
    """Streams the ZIP of one store and image store (see the module docstring)."""

    def __init__(self, store: HistoryStore, images: ImageStore, turn: Render, app_version: str) -> None:
        self.store = store
        self.images = images
        self.turn = turn
        self.app_version = app_version
        self.counts = Counts()
        self._sink = _Sink()
        self._zip = ZipFile(self._sink, "w", compression=ZIP_DEFLATED, compresslevel=6)

    def chunks(self) -> Iterator[bytes]:
        """The ZIP's bytes, a chunk at a time."""
        yield from self._member("history.json", self._history())
        yield from self._member("chatlog.json", seed_json(self.store, newline="\n"))
        yield from self._markdown()
        for name in self.images.names():
            self.counts.images += 1
            yield from self._member(f"images/{name}", iter([self.images.read(name)]), stored=True)
        yield from self._member("manifest.json", iter([self._manifest()]), hashed=False)
        self._zip.close()
        yield self._sink.take()

    def _member(
        self, name: str, parts: Iterator[str | bytes], *, stored: bool = False, hashed: bool = True
    ) -> Iterator[bytes]:
        info = ZipInfo(name, time.localtime()[:6])
        info.compress_type = ZIP_STORED if stored else ZIP_DEFLATED
        digest, size = hashlib.sha256(), 0
        with self._zip.open(info, "w", force_zip64=True) as out:
            for part in parts:
                data = part.encode("utf-8", "replace") if isinstance(part, str) else part
                digest.update(data)
                size += len(data)
                out.write(data)
                if self._sink.size >= CHUNK:
                    yield self._sink.take()
        if hashed:
            self.counts.files[name] = {"size": size, "sha256": digest.hexdigest()}
        yield self._sink.take()

    def _history(self) -> Iterator[str]:
        yield HISTORY_HEAD
        first = True
        next_index: dict[str, int] = {}
        for date, rows, after in self.store.copy_days():
            self.counts.days += 1
            next_index[date] = after
            for raw in rows:
                entry = Entry.from_dict(raw)
                self.counts.entries += 1
                self.counts.deleted += entry.deleted
                yield ("" if first else ",\n") + compact_json(entry.exported())
                first = False
        yield ("" if first else "\n") + "],\n" + '"next_index":' + compact_json(next_index) + "}\n"

    def _markdown(self) -> Iterator[bytes]:
        """One file per conversation: its first turn, then the later ones in order."""
        for first, turns in conversations(self.store):
            if turns is None:
                continue  # written in its conversation's file
            self.counts.conversations += 1
            name = f"markdown/{first.date}-{first.index}-{slug(first.prompt)}.md"
            yield from self._member(name, self._conversation(first, turns))

    def _conversation(self, first: Entry, turns: Iterator[Entry]) -> Iterator[str]:
        yield f"# {first.date} #{first.index}\n\n"
        yield self.turn(first, "##", "../images/") + "\n"
        for follow in turns:
            yield self.turn(follow, "### ↳", "../images/") + "\n"

    def _manifest(self) -> bytes:
        counts = self.counts
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": self.app_version,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "history": self.store.backend,
            "counts": {
                "entries": counts.entries,
                "deleted": counts.deleted,
                "days": counts.days,
                "conversations": counts.conversations,
                "images": counts.images,
            },
            "files": counts.files,
        }
        return (json.dumps(manifest, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def slug(text: str, limit: int = 50) -> str:
    """A short ASCII file-name part from a prompt (`a-red-fox-in-the-snow`)."""
    # One slug rule for every file name made from a prompt.
    return download_name(text[:200], "x").removesuffix(".x")[:limit].rstrip("-") or "entry"
