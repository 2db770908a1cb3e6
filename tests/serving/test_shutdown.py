"""Graceful shutdown of `make serve`'s server: SIGTERM must not lose an answer being streamed.

Real processes: gunicorn with the committed gunicorn.conf.py (one gthread worker) on a free
loopback port, talking to the in-process FakeUpstream over HTTP. Every wait is bounded, and the
server's whole process group is killed when a test ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import os
import re
import runpy
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from app.history import ChatLog, Entry, parse_cursor

from ..support.apps import TEST_KEY
from ..support.htmx import HX, sse_events
from ..support.ports import free_port
from ..support.upstream import FakeUpstream, Reply

pytestmark = pytest.mark.slow  # real processes: make test runs it, make test-fast does not

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "gunicorn.conf.py"
GRACEFUL_TIMEOUT = float(runpy.run_path(str(CONFIG))["graceful_timeout"])
EXIT_MARGIN = 5.0  # seconds past graceful_timeout allowed for the master to exit
CHAT = "/v1/chat/completions"
CHUNKS = [f"part {i:02d} " for i in range(15)]  # ~3 s of answer at 0.2 s a chunk
TEXT = "".join(CHUNKS)


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    data_dir: Path
    log: Path

    def terminate(self) -> None:
        """SIGTERM to the gunicorn master, as systemd, Docker or Kubernetes send it."""
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self) -> int:
        """The master's exit code; fails if it does not exit within graceful_timeout + margin."""
        try:
            return self.proc.wait(timeout=GRACEFUL_TIMEOUT + EXIT_MARGIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn did not exit after SIGTERM\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "gunicorn log:\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
        except OSError:
            return "(no gunicorn log)"

    def stored(self, permalink: str) -> Entry:
        """The entry as the server left it in DATA_DIR."""
        target = parse_cursor(permalink.removeprefix("/chatlog/"))
        assert target is not None, permalink
        entry = ChatLog(self.data_dir).get(*target)
        assert entry is not None, f"{permalink} is not in DATA_DIR"
        return entry


@pytest.fixture
def server(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Server]:
    """gunicorn with the committed config, one worker, on a free loopback port."""
    data_dir = tmp_path / "data"
    log = tmp_path / "gunicorn.log"
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_WORKERS": "1",
        "WEB_THREADS": "8",
        "DATA_DIR": str(data_dir),
        "OPENAI_API_KEY": TEST_KEY,
        "OPENAI_BASE_URL": upstream.url,
        "RATE_LIMIT": "100000 per minute",
        "LOG_LEVEL": "INFO",
        # Nothing from the developer's environment may change what is tested.
        "APP_PASSWORD": "",
        "DAILY_REQUEST_CAP": "",
        "PROXY_FIX": "",
        "UPSTREAM_RETRIES": "0",
    }
    env.pop("GUNICORN_CMD_ARGS", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "--config", str(CONFIG)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the master and its workers
        )
    running = Server(proc, f"http://127.0.0.1:{port}", data_dir, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {proc.returncode} at start\n{running.log_tail()}")
            try:
                if requests.get(running.url + "/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start\n{running.log_tail()}")
            time.sleep(0.1)
        yield running
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone, workers included
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def start_answer(http: requests.Session, server: Server) -> str:
    """POST an htmx code request; returns the permalink of its (pending) entry."""
    post = http.post(server.url + "/generate_code", data={"prompt": "shutdown"}, headers=HX, timeout=10)
    assert post.status_code == 200, post.text
    match = re.search(r'sse-connect="(/chatlog/[^"]+)/stream"', post.text)
    assert match, post.text
    return match.group(1)


def open_stream(http: requests.Session, server: Server, permalink: str) -> requests.Response:
    stream = http.get(
        server.url + permalink + "/stream",
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=(5, 15),  # no single read waits longer than the whole answer takes
    )
    assert stream.status_code == 200
    return stream


def read_to_end(first: tuple[str, str], events: Iterator[tuple[str, str]]) -> tuple[str, str]:
    """Read the rest of a stream; returns (all token text, the final event's HTML)."""
    seen = [first, *events]
    kinds = [name for name, _ in seen]
    assert kinds[-2:] == ["final", "done"], kinds
    text = html.unescape("".join(data for name, data in seen if name == "token"))
    return text, seen[-2][1]


def test_health_checks_answer_while_serving(server: Server):
    health = requests.get(server.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = requests.get(server.url + "/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["ready"] is True


def test_sigterm_lets_the_answer_being_streamed_finish(server: Server, upstream: FakeUpstream):
    upstream.script(CHAT, Reply(chunks=CHUNKS, chunk_delay=0.2))
    with requests.Session() as http:
        permalink = start_answer(http, server)
        with open_stream(http, server, permalink) as stream:
            events = sse_events(stream)
            first = next(events)
            assert first[0] == "token"
            server.terminate()
            # The browser keeps listening: it gets every token, then the finished entry.
            text, final = read_to_end(first, events)
    assert text == TEXT
    assert "status-done" in final, final
    assert server.wait_exit() == 0, server.log_tail()
    entry = server.stored(permalink)
    assert (entry.status, entry.response) == ("done", TEXT)
    assert upstream.streams_finished == 1


def test_sigterm_finishes_answers_whose_browser_left(server: Server, upstream: FakeUpstream):
    upstream.script(CHAT, Reply(chunks=CHUNKS, chunk_delay=0.2))
    with requests.Session() as http:
        permalink = start_answer(http, server)
        with open_stream(http, server, permalink) as stream:
            assert next(sse_events(stream))[0] == "token"
        # The tab is closed; the answer streams on into the history, in a worker thread.
    server.terminate()
    assert server.wait_exit() == 0, server.log_tail()
    # The worker drained the background stream before exiting: nothing is left pending.
    entry = server.stored(permalink)
    assert entry.status == "done", f"{entry.status}: {entry.error}\n{server.log_tail()}"
    assert entry.response == TEXT
    assert upstream.streams_finished == 1


def test_after_sigterm_new_requests_are_not_served_but_the_answer_finishes(
    server: Server, upstream: FakeUpstream
):
    upstream.script(CHAT, Reply(chunks=CHUNKS, chunk_delay=0.2))
    late: dict[str, object] = {}

    def late_request() -> None:
        # A fresh connection (not the session's): the master has closed its listener and the
        # worker no longer accepts, so it is refused, or reset when the worker closes its socket.
        try:
            late["response"] = requests.get(server.url + "/healthz", timeout=(5, 15))
        except requests.RequestException as error:
            late["error"] = error

    with requests.Session() as http:
        permalink = start_answer(http, server)
        with open_stream(http, server, permalink) as stream:
            events = sse_events(stream)
            first = next(events)
            assert first[0] == "token"
            server.terminate()
            # Let the master and the worker handle the signal (both do so within milliseconds;
            # the worker's poller is woken by its SIGTERM handler), while the answer goes on.
            seen = [first]
            for _ in range(3):
                seen.append(next(events))
            assert [name for name, _ in seen] == ["token"] * 4
            thread = threading.Thread(target=late_request, daemon=True)
            thread.start()
            text, final = read_to_end(seen[0], itertools.chain(seen[1:], events))
    thread.join(timeout=20)
    assert not thread.is_alive(), "the late request neither failed nor got an answer"
    assert "response" not in late, f"a request after SIGTERM was served: {late.get('response')}"
    assert isinstance(late["error"], requests.ConnectionError), repr(late["error"])
    assert text == TEXT
    assert "status-done" in final, final
    assert server.wait_exit() == 0, server.log_tail()
    entry = server.stored(permalink)
    assert (entry.status, entry.response) == ("done", TEXT)
