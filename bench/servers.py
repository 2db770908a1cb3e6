"""The processes the benchmarks start: `make run`'s server, and what dies with the benchmark.

A benchmark that is stopped (Ctrl+C, a timeout that kills it) must not leave servers behind on
the machine: each process started here gets SIGTERM from the kernel when the benchmark dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-not-a-real-key-000000000000"
START_SECONDS = 60
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the benchmark process ends, however it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen for a server the benchmark owns: it cannot outlive the benchmark."""
    return subprocess.Popen(command, preexec_fn=_die_with_parent, **kwargs)


class Server:
    """`make run`'s server: gunicorn with gunicorn.conf.py on a free port, stopped on exit.

    With `upstream_url` the app uses it through the openai client; without, it runs in demo mode.
    """

    def __init__(self, data_dir: Path, upstream_url: str | None) -> None:
        self.port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "HISTORY_", "IMAGE_STORE"))
        }
        env.update(
            HOST="127.0.0.1",
            PORT=str(self.port),
            DATA_DIR=str(data_dir),
            LOG_LEVEL="WARNING",
            RATE_LIMIT="1000000 per minute",  # every client here is 127.0.0.1
        )
        if upstream_url:
            env.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=upstream_url)
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.proc = spawn(
            [str(gunicorn), "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=5).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the app server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
