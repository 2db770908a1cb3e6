"""Shared fixtures: a local OpenAI-compatible upstream, apps on temp DATA_DIRs, a live server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from app import create_app

from .upstream import FakeUpstream

# A key-shaped secret: tests assert it never shows up in logs, pages or responses.
TEST_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"
HX = {"HX-Request": "true"}


@pytest.fixture(scope="session")
def shared_upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def upstream(shared_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The local OpenAI-compatible server, started once and reset around every test."""
    shared_upstream.reset()
    yield shared_upstream
    shared_upstream.reset()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def make_app(data_dir: Path) -> Callable[..., Any]:
    """Build an app on the test's DATA_DIR; keyword arguments override settings."""

    def factory(**overrides: Any):
        # Retries off unless a test is about them: one scripted fault is then one failure.
        config: dict[str, Any] = {
            "data_dir": data_dir,
            "upstream_timeout": 5.0,
            "upstream_retries": 0,
            "rate_limit": "10000 per minute",  # tests of the limit itself set their own
            "log_level": "DEBUG",
        }
        config.update(overrides)
        app = create_app(config)
        app.config["TESTING"] = True
        return app

    return factory


@pytest.fixture
def app(make_app, upstream: FakeUpstream):
    """The app wired to the local upstream through the real openai client."""
    return make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def demo_app(make_app):
    """The app in offline demo mode (no key)."""
    return make_app()


@pytest.fixture
def demo_client(demo_app):
    return demo_app.test_client()


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


@pytest.fixture
def live_server() -> Callable[[Any], LiveServer]:
    """Call with an app to get a started server; it stops at the end of the test."""
    started: list[LiveServer] = []

    def start(app) -> LiveServer:
        server = LiveServer(app).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.__exit__(None, None, None)


def parse_sse(text: str) -> list[tuple[str, str]]:
    """Server-Sent Events as (event, data) pairs; multi-line data joined with newlines."""
    events = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "data:":
                data.append("")
        if data or name != "message":
            events.append((name, "\n".join(data)))
    return events


class StreamedAnswer:
    """What a browser sees for an htmx code request: the POST fragment, then the event stream."""

    def __init__(self, post, stream_url: str | None, events: list[tuple[str, str]]) -> None:
        self.post = post
        self.stream_url = stream_url
        self.events = events

    @property
    def tokens(self) -> list[str]:
        return [data for name, data in self.events if name == "token"]

    @property
    def final(self) -> str:
        """The rendered entry of the `final` event ('' if the stream never got there)."""
        return next((data for name, data in self.events if name == "final"), "")

    @property
    def html(self) -> str:
        """POST fragment and final entry together: all the HTML the page ends up with."""
        return self.post.get_data(as_text=True) + "\n" + self.final


def htmx_generate_code(client, prompt: str, **fields: str) -> StreamedAnswer:
    """POST /generate_code as htmx, then follow its sse-connect URL to the end of the stream."""
    import re

    post = client.post("/generate_code", data={"prompt": prompt, **fields}, headers=HX)
    match = re.search(r'sse-connect="([^"]+)"', post.get_data(as_text=True))
    if not match:
        return StreamedAnswer(post, None, [])
    stream = client.get(match.group(1), headers={"Accept": "text/event-stream"})
    return StreamedAnswer(post, match.group(1), parse_sse(stream.get_data(as_text=True)))
