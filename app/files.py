"""Atomic file replacement, shared by the history store and the image store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file, never half.

    The temporary file lives in the same directory (rename is atomic only within a file system)
    and has a `.tmp` suffix, so no half-written `*.json` ever exists. `durable` adds the fsyncs
    (file, then directory) that make the new content survive a power cut, not only a crash.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
