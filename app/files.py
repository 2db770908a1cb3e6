"""Atomic file replacement, shared by the history store and the image store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_temp(path: Path, data: bytes | str, *, durable: bool = True) -> Path:
    """Write `data` to a new temporary file beside `path` (fsynced with `durable`) and return it.

    It lives in the same directory (rename is atomic only within a file system) and has a `.tmp`
    suffix, so no half-written `*.json` ever exists. Rename it into place with os.replace.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def fsync_dir(path: Path) -> None:
    """Make a file's creation, rename or removal in directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file, never half.

    `durable` adds the fsyncs (file, then directory) that make the new content survive a power
    cut, not only a crash.
    """
    tmp = write_temp(path, data, durable=durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
