"""Server-side revocation of login sessions, kept in `DATA_DIR/sessions`.

A session cookie is signed (SECRET_KEY) and carries a token derived from APP_PASSWORD, a random
session id and the *epoch* it was created in. It is valid only while

- its id is not in the revocation list (`revoked/<id>`, written by "Log out"), and
- its epoch is the current one (`epoch`, replaced by "Log out everywhere"), and
- APP_PASSWORD and SECRET_KEY are unchanged (the token no longer matches otherwise).

Files, not memory: every gunicorn worker and every process sharing the DATA_DIR sees a logout
at once. With several servers (HISTORY_URL), each has its own DATA_DIR unless `sessions/` is on a
shared volume: a logout then ends the session on the servers that share it, and changing
APP_PASSWORD (or SECRET_KEY) ends every session on every server.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from .files import atomic_write

_ID = re.compile(r"[0-9a-f]{32}")


class SessionRegistry:
    """The revocation list and the current epoch of one DATA_DIR."""

    def __init__(self, data_dir: Path, lifetime: float) -> None:
        self.root = Path(data_dir) / "sessions"
        self.revoked_dir = self.root / "revoked"
        self.revoked_dir.mkdir(parents=True, exist_ok=True)
        self.epoch_path = self.root / "epoch"
        # A revocation is kept as long as a cookie signed before it could still be accepted.
        self.lifetime = lifetime

    @staticmethod
    def new_id() -> str:
        """A fresh random session id."""
        return secrets.token_hex(16)

    def epoch(self) -> str:
        """The current epoch ("0" until the first "log out everywhere")."""
        try:
            return self.epoch_path.read_text(encoding="ascii").strip() or "0"
        except FileNotFoundError:
            return "0"

    def is_valid(self, session_id: object, epoch: object) -> bool:
        """True for a well-formed id that is not revoked, created in the current epoch."""
        if not isinstance(session_id, str) or not _ID.fullmatch(session_id):
            return False
        return epoch == self.epoch() and not (self.revoked_dir / session_id).exists()

    def revoke(self, session_id: object) -> None:
        """End one session on the server (its cookie no longer works, wherever it is replayed)."""
        if isinstance(session_id, str) and _ID.fullmatch(session_id):
            (self.revoked_dir / session_id).touch()
        self._forget_expired()

    def revoke_all(self) -> None:
        """End every session: a new epoch; the old revocations are then moot."""
        atomic_write(self.epoch_path, secrets.token_hex(8))
        for path in self.revoked_dir.iterdir():
            path.unlink(missing_ok=True)

    def _forget_expired(self) -> None:
        """Drop revocations older than a session's lifetime: such cookies have expired anyway."""
        cutoff = time.time() - self.lifetime
        for path in list(self.revoked_dir.iterdir())[:1000]:  # bounded; the rest next time
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass
