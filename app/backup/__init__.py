"""Backups: everything in one ZIP (`GET /backup.zip`, `flask backup`), a restore that checks it
whole before it changes anything (`flask restore`, the form on the History page), and a dated
backup a day in BACKUP_DIR.

- `archive`: writing the ZIP, streamed.
- `restore`: checking and restoring one.
- `daily`: the daily backups the upkeep thread writes.

The routes are app.views.transfer.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Flask, get_template_attribute

from .archive import BackupWriter
from .restore import BackupRefused, RestoreReport, planned_steps, restore

__all__ = ["BackupRefused", "RestoreReport", "backup_chunks", "planned_steps", "restore"]


def backup_chunks(app: Flask) -> Iterator[bytes]:
    """The bytes of a backup of `app`'s history and images, a chunk at a time (no request needed)."""
    from .. import __version__

    with app.app_context():
        turn = get_template_attribute("chatlog.md", "turn")
    writer = BackupWriter(app.extensions["chatlog"], app.extensions["images"], turn, __version__)
    for chunk in writer.chunks():
        if chunk:
            yield chunk
