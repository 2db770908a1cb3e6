"""Restoring a backup: check all of it first, then add what is missing, on either engine.

A ZIP is refused, with a message that says why and with nothing changed, when it is not a
complete ZIP (truncated), when a member's name could escape a folder (`../../x`, absolute, a
backslash) or is not one a backup has, when it looks like a ZIP bomb (sizes beyond the caps, or a
compression ratio no real backup has), when the manifest is missing, foreign or from a newer
format, when a member does not match its size and sha256 in the manifest, or when an entry of
`history.json` is not an entry. Only then are images put (those not stored yet) and entries put
at their permalinks, a batch at a time: entries already there are kept, a different entry at a
permalink is a conflict that is reported and left alone, so restoring twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any
from zipfile import BadZipFile, ZipFile, ZipInfo

from ..history import HistoryStore, is_date
from ..history.model import KINDS, Entry
from ..i18n import N_
from ..images import ImageStore
from ..images.codec import PNG_SIGNATURE
from ..images.names import is_image_name, original_of
from ..messages import Message
from .archive import FORMAT, FORMAT_VERSION

BATCH = 500  # entries per store call
MAX_MEMBERS = 2_000_000
MAX_TOTAL_BYTES = 64 * 1024**3  # uncompressed, all members together
MAX_IMAGE_BYTES = 64 * 1024**2  # an image is read whole: above any image the app stores
MAX_LINE_BYTES = 64 * 1024**2  # one entry of history.json
MAX_RATIO = 200  # deflate can reach ~1000:1 on crafted data; real backups stay far below
READ = 1024 * 1024
MAX_INDEX = 2**31 - 1
_MEMBER = re.compile(r"(manifest|history|chatlog)\.json|markdown/[A-Za-z0-9._-]+\.md|images/[^/]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Progress = Callable[[int], None]


class BackupRefused(ValueError):
    """The file is not a backup this app can restore; the message says why. Nothing changed.

    `message` is a catalogue message with named placeholders, filled from `values`: English in
    the exception's text (the CLI, JSON), in the reader's language on a page (the `tr` filter)."""

    def __init__(self, message: str, **values: object) -> None:
        self.message = Message(message, **values)
        super().__init__(self.message)


@dataclass
class RestoreReport:
    """What a restore did."""

    added: int = 0
    present: int = 0
    conflicts: list[str] = field(default_factory=list)
    images_added: int = 0
    images_present: int = 0


def _members(archive: ZipFile) -> dict[str, ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BackupRefused(N_("The ZIP holds %(count)s files, more than any backup has."), count=len(infos))
    members: dict[str, ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith("/") or "\\" in name or ".." in name.split("/") or not _MEMBER.fullmatch(name):
            raise BackupRefused(N_("The ZIP holds %(name)s, which is not part of a backup."), name=name)
        if name.startswith("images/") and not is_image_name(name.removeprefix("images/")):
            raise BackupRefused(
                N_("The ZIP holds %(name)s, which is not an image name of this app."), name=name
            )
        if name in members or stat.S_ISLNK(info.external_attr >> 16) or info.flag_bits & 0x1:
            raise BackupRefused(N_("The ZIP's entry %(name)s is repeated, a link or encrypted."), name=name)
        total += info.file_size
        big = info.file_size > 1024 * 1024
        if total > MAX_TOTAL_BYTES or (big and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
            raise BackupRefused(
                N_("The ZIP's entry %(name)s unpacks to far more than it holds (a ZIP bomb?)."), name=name
            )
        members[name] = info
    return members


def _manifest(archive: ZipFile, members: dict[str, ZipInfo]) -> dict[str, Any]:
    if "manifest.json" not in members or members["manifest.json"].file_size > MAX_LINE_BYTES:
        raise BackupRefused(N_("The ZIP has no manifest.json: it is not a backup of this app."))
    try:
        manifest = json.loads(archive.read("manifest.json"))
    except ValueError:
        raise BackupRefused(N_("The backup's manifest.json is not valid JSON.")) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupRefused(N_("The ZIP's manifest.json is not a backup manifest of this app."))
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupRefused(
            N_("The backup is in format %(version)s, newer than this app reads (%(ours)s)."),
            version=version,
            ours=FORMAT_VERSION,
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BackupRefused(N_("The backup's manifest lists no files."))
    listed = set(files)
    if listed != set(members) - {"manifest.json"} or "history.json" not in listed:
        raise BackupRefused(
            N_("The ZIP's files are not the ones its manifest lists: it is incomplete or altered.")
        )
    for name, meta in files.items():
        if not isinstance(meta, dict) or not _HEX64.fullmatch(str(meta.get("sha256"))):
            raise BackupRefused(N_("The manifest has no checksum for %(name)s."), name=name)
    return manifest


def _chunks(archive: ZipFile, info: ZipInfo, digest: Any = None) -> Iterator[bytes]:
    """A member's bytes, checked against its declared size as they come (and hashed)."""
    read = 0
    with archive.open(info) as member:
        for _ in range(info.file_size // READ + 2):
            chunk = member.read(READ)
            if not chunk:
                break
            read += len(chunk)
            if read > info.file_size:
                break
            if digest is not None:
                digest.update(chunk)
            yield chunk
    if read != info.file_size:
        raise BackupRefused(
            N_("%(name)s in the ZIP is damaged (its size does not match)."), name=info.filename
        )


def _entry(line: bytes, number: int) -> dict[str, Any]:
    """One entry line of history.json, checked and completed with every field's default, in the
    stored form (its links written as permalink text there, read as values)."""
    try:
        entry = Entry.from_dict(json.loads(line.rstrip(b",\r")))
        datetime.strptime(entry.date, "%Y-%m-%d")
    except (ValueError, TypeError, AttributeError):
        raise BackupRefused(
            N_("Entry %(number)s of history.json is not a history entry."), number=number
        ) from None
    ok = (
        is_date(entry.date)
        and isinstance(entry.index, int)
        and 0 <= entry.index <= MAX_INDEX
        and isinstance(entry.id, str)
        and bool(entry.id)
        and entry.kind in KINDS
        and isinstance(entry.prompt, str)
        and isinstance(entry.response, str)
        and (entry.image_file is None or is_image_name(str(entry.image_file)))
    )
    if not ok:
        raise BackupRefused(
            N_("Entry %(number)s of history.json (%(date)s #%(index)s) is malformed."),
            number=number,
            date=entry.date,
            index=entry.index,
        )
    return entry.to_dict()


def _next_index(tail: bytes) -> dict[str, int]:
    try:
        days = json.loads(b"{" + tail)["next_index"]
        valid = isinstance(days, dict) and all(
            is_date(d) and isinstance(n, int) and 0 <= n <= MAX_INDEX for d, n in days.items()
        )
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise BackupRefused(N_("history.json ends without its days' next indexes."))
    return days


class HistoryReader:
    """The entries of history.json, one line at a time, then each day's next index."""

    def __init__(self, archive: ZipFile, info: ZipInfo, digest: Any = None) -> None:
        self.archive, self.info, self.digest = archive, info, digest
        self.next_index: dict[str, int] = {}

    def _lines(self) -> Iterator[bytes]:
        buffer = b""
        for chunk in _chunks(self.archive, self.info, self.digest):
            buffer += chunk
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            if len(buffer) > MAX_LINE_BYTES:
                raise BackupRefused(N_("history.json holds a line longer than any entry."))
            yield from lines
        if buffer:
            yield buffer

    def entries(self) -> Iterator[dict[str, Any]]:
        lines = self._lines()
        if not next(lines, b"").startswith(b'{"format":"flask-chat-history"'):
            raise BackupRefused(N_("history.json is not a history of this app."))
        for number, line in enumerate(lines, 1):
            if line.startswith(b"],"):
                self.next_index = _next_index(line[2:] + b"".join(lines))
                return
            yield _entry(line, number)
        raise BackupRefused(N_("history.json ends early: the backup is truncated."))


def _image_ok(name: str, data: bytes) -> bool:
    """Whether a stored image's bytes start as its name says: an original's as a PNG, a
    thumbnail's as a WebP."""
    if original_of(name) is None:
        return data.startswith(PNG_SIGNATURE)
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _verify(archive: ZipFile, members: dict[str, ZipInfo], manifest: dict[str, Any], step: Progress) -> None:
    """Read every member once: sizes, checksums, entries and image signatures."""
    for name, info in members.items():
        if name == "manifest.json":
            continue
        digest = hashlib.sha256()
        if name == "history.json":
            for _ in HistoryReader(archive, info, digest).entries():
                step(1)
        elif name.startswith("images/"):
            if info.file_size > MAX_IMAGE_BYTES:
                raise BackupRefused(N_("%(name)s is larger than any image this app stores."), name=name)
            data = b"".join(_chunks(archive, info, digest))
            if not _image_ok(name.removeprefix("images/"), data):
                raise BackupRefused(N_("%(name)s in the backup is not an image."), name=name)
            step(1)
        else:
            for _ in _chunks(archive, info, digest):
                pass
        if digest.hexdigest() != manifest["files"][name]["sha256"]:
            raise BackupRefused(
                N_("%(name)s does not match its checksum in the manifest: the backup is damaged."), name=name
            )


def _put_images(
    archive: ZipFile,
    members: dict[str, ZipInfo],
    images: ImageStore,
    report: RestoreReport,
    step: Progress,
) -> None:
    # Thumbnails before originals, as the image store saves them: an original is never there alone.
    names = sorted(
        (n for n in members if n.startswith("images/")),
        key=lambda n: original_of(n.removeprefix("images/")) is None,
    )
    for member in names:
        name = member.removeprefix("images/")
        if images.exists(name):
            report.images_present += 1
        else:
            images.put(name, archive.read(members[member]))
            report.images_added += 1
        step(1)


def _put_entries(
    archive: ZipFile, info: ZipInfo, store: HistoryStore, report: RestoreReport, step: Progress
) -> None:
    reader = HistoryReader(archive, info)
    batch: list[dict[str, Any]] = []

    def put(next_index: dict[str, int]) -> None:
        result = store.restore_entries(batch, next_index)
        report.added += result.added
        report.present += result.unchanged
        report.conflicts += result.conflicts
        step(len(batch))
        batch.clear()

    for raw in reader.entries():
        batch.append(raw)
        if len(batch) >= BATCH:
            put({})
    put(reader.next_index)


def planned_steps(source: str | IO[bytes]) -> int:
    """How many progress steps a restore of `source` takes (0 when it cannot tell)."""
    try:
        with ZipFile(source) as archive:
            counts = json.loads(archive.read("manifest.json")).get("counts", {})
            return 2 * (int(counts.get("entries", 0)) + int(counts.get("images", 0)))
    except (BadZipFile, KeyError, ValueError, TypeError, AttributeError, zlib.error, EOFError):
        return 0


def restore(
    source: str | IO[bytes], store: HistoryStore, images: ImageStore, step: Progress = lambda n: None
) -> RestoreReport:
    """Check the backup in `source` (a path or a seekable file) whole, then restore it (see the
    module docstring). Raises BackupRefused, with nothing changed, for a damaged or foreign one."""
    try:
        with ZipFile(source) as archive:
            members = _members(archive)
            manifest = _manifest(archive, members)
            _verify(archive, members, manifest, step)
            report = RestoreReport()
            _put_images(archive, members, images, report, step)
            _put_entries(archive, members["history.json"], store, report, step)
            return report
    except (BadZipFile, zlib.error, EOFError):
        raise BackupRefused(N_("The file is not a complete ZIP (truncated or damaged).")) from None
    except NotImplementedError:
        raise BackupRefused(N_("The ZIP uses a compression this app does not read.")) from None
