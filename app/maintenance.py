"""Upkeep that no request should wait for: folding the history's journals, building its search
indexes, marking answers that a dead server left pending as interrupted, and the daily backup
in BACKUP_DIR.

It runs in a short-lived background thread when the app serves its first request (a server, not
a CLI command), and then at most once every INTERVAL seconds, started by an incoming request: an
idle server keeps no thread for it, and every gunicorn worker (or server) may run it, since each
step is safe to run twice.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Flask

from .generation import Generator

log = logging.getLogger("app.maintenance")

INTERVAL = 60.0  # seconds between runs while requests come in


class Maintenance:
    """Runs the upkeep of one app in the background (see the module docstring)."""

    def __init__(self, generator: Generator, app: Flask | None = None, interval: float = INTERVAL) -> None:
        self.generator = generator
        self.app = app
        self.interval = interval
        self._lock = threading.Lock()
        self._running = False
        self._next = 0.0
        self._startup = True

    def init_app(self, app: Flask) -> None:
        app.extensions["maintenance"] = self
        app.before_request(self.tick)

    def tick(self) -> None:
        """Start a run in the background when one is due and none is running."""
        with self._lock:
            if self._running or time.monotonic() < self._next:
                return
            self._running = True
            self._next = time.monotonic() + self.interval
        threading.Thread(target=self.run, name="maintenance", daemon=True).start()

    def run(self) -> None:
        """One run: the history's upkeep, then the reaper. Failures are logged and retried
        at the next run."""
        startup, self._startup = self._startup, False
        try:
            self.generator.chatlog.maintain(startup=startup)
            self.generator.reap_interrupted()
            if self.app is not None:
                from .backup.daily import daily_backup

                daily_backup(self.app)
        except Exception:
            log.exception("History upkeep failed; it is tried again in %.0f s.", self.interval)
        finally:
            with self._lock:
                self._running = False
