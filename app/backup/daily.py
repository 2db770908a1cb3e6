"""A dated backup a day in BACKUP_DIR, the newest BACKUP_KEEP kept: backups without cron.

The upkeep thread (app.maintenance) calls :func:`daily_backup` at most once a minute; it costs a
directory listing until the day's backup is due. The file is written under another name and
renamed when complete, so `backup-YYYY-MM-DD.zip` is always a whole backup; a lock file keeps the
workers and servers sharing BACKUP_DIR from writing the same one twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from pathlib import Path

from flask import Flask

from ..files import fsync_dir
from . import backup_chunks

log = logging.getLogger("app.backup")
NAME = re.compile(r"backup-\d{4}-\d{2}-\d{2}\.zip")


def write_backup(app: Flask, target: Path) -> None:
    """Write a whole backup of `app` to `target`, atomically (a partial one is never seen)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            for chunk in backup_chunks(app):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def prune(directory: Path, keep: int) -> list[str]:
    """Remove all but the newest `keep` dated backups; returns the names removed."""
    dated = sorted(name for name in os.listdir(directory) if NAME.fullmatch(name))
    gone = dated[: max(0, len(dated) - keep)]
    for name in gone:
        (directory / name).unlink(missing_ok=True)
    return gone


def daily_backup(app: Flask) -> Path | None:
    """Write today's backup if BACKUP_DIR is set and it is not there yet; returns its path."""
    settings = app.config["SETTINGS"]
    directory: Path | None = settings.backup_dir
    if directory is None:
        return None
    target = directory / f"backup-{app.extensions['chatlog'].today()}.zip"
    if target.exists():
        return None
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".backup.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another worker is writing it
        if target.exists():
            return None
        write_backup(app, target)
        removed = prune(directory, settings.backup_keep)
    log.info("Wrote the daily backup %s (removed %d older).", target.name, len(removed))
    return target
