"""Real servers for tests: `LiveServer`, a threaded WSGI server in the test's process, and server
processes (`make run`, `make dev`, gunicorn), each in its own process group.

Every wait is bounded; stopping sends SIGTERM to the whole group (make, gunicorn's master and its
workers, or the reloader and its server) and SIGKILL only if it outlives its bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import requests
from werkzeug.serving import make_server

# Settings that would change what a test of the defaults sees, and make's own variables (a
# `make test` run passes its jobserver to children through them).
SETTINGS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "DATA_DIR",
    "HISTORY_URL",
    "IMAGE_STORE_URL",
    "APP_PASSWORD",
    "SECRET_KEY",
    "HOST",
    "PORT",
    "LOG_LEVEL",
    "CHAT_MODEL",
    "IMAGE_MODEL",
    "IMAGE_SIZE",
    "RATE_LIMIT",
    "DAILY_REQUEST_CAP",
    "PROXY_FIX",
    "ALLOW_UNAUTHENTICATED",
    "RATELIMIT_STORAGE_URI",
    "WEB_WORKERS",
    "WEB_THREADS",
    "GUNICORN_CMD_ARGS",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
)


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any app setting or make variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith(("AWS_", "FLASK_"))}
    env.update(settings)
    return env


class ServerProcess:
    """A server command started in its own process group, its output in a file."""

    def __init__(
        self, command: Sequence[str], cwd: Path, env: dict[str, str], log: Path, port: int | None = None
    ) -> None:
        """Start `command`; it serves on `port` (default: PORT in `env`) of 127.0.0.1."""
        self.log = log
        self.url = f"http://127.0.0.1:{port or env['PORT']}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def wait_healthy(self, timeout: float) -> requests.Response:
        """The first 200 from /healthz, within `timeout` seconds; fails with the output if none."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the server exited with {self.proc.returncode}:\n{self.output()[-4000:]}"
                )
            with contextlib.suppress(requests.RequestException):
                response = requests.get(self.url + "/healthz", timeout=2)
                if response.status_code == 200:
                    return response
            time.sleep(0.2)
        raise AssertionError(f"no 200 from /healthz within {timeout:g} s:\n{self.output()[-4000:]}")

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 45.0) -> bool:
        """SIGTERM to the group; True when every process of it ended within `timeout` seconds."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()
            if not self.group_alive():
                return True
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return False


class LiveServer:
    """A real threaded WSGI server on 127.0.0.1 running an app."""

    def __init__(self, app) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
