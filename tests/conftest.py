"""Shared fixtures: a local OpenAI-compatible upstream, apps on temp DATA_DIRs, a live server."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from app import create_app

from .support import services
from .support.upstream import FakeUpstream

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
def history_backend() -> str:
    """The history store the apps of a test use. A module that overrides this fixture with
    `params=BACKENDS` runs its tests against TinyDB files and a real PostgreSQL alike."""
    return "tinydb"


BACKENDS = ("tinydb", "postgresql")
SERVICE_FIXTURES = {"pg_server", "pg_url", "redis_server", "s3_server", "s3_bucket"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a real PostgreSQL, Redis or S3 `services`, so that
    `make test-fast` can leave them out: those using their fixtures, and those run on the
    PostgreSQL backend (which asks for its database at run time)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or "postgresql" in params.values():
            item.add_marker(pytest.mark.services)


@pytest.fixture
def make_app(
    data_dir: Path, history_backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """Build an app on the test's DATA_DIR; keyword arguments override settings."""
    history_url = request.getfixturevalue("pg_url") if history_backend == "postgresql" else None
    apps: list[Any] = []

    def factory(**overrides: Any):
        # Retries off unless a test is about them: one scripted fault is then one failure.
        config: dict[str, Any] = {
            "history_url": history_url,
            "data_dir": data_dir,
            "upstream_timeout": 5.0,
            "upstream_retries": 0,
            "rate_limit": "10000 per minute",  # tests of the limit itself set their own
            "log_level": "DEBUG",
        }
        config.update(overrides)
        app = create_app(config)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:  # close database connections before the test's database is dropped
        close = getattr(app.extensions["chatlog"], "close", None)
        if close:
            close()


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


# Real backing services on 127.0.0.1 (tests/support/services.py), started once per session. A missing
# server is a failure, never a skip: `make services` installs them (and `make test` runs it).


def _start_service(start: Callable[[], Any]) -> Any:
    try:
        return start()
    except services.ServiceNotInstalled as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.PgServer]:
    """A PostgreSQL cluster; `pg_server.url` logs in as the role `app` (CREATEDB, no superuser)."""
    server = _start_service(lambda: services.start_postgres(tmp_path_factory.mktemp("postgres")))
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: services.PgServer) -> Iterator[str]:
    """URL of a fresh, empty database owned by `app`, dropped (sessions and all) after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture
def pg_at_revision(pg_url: str) -> Callable[..., str]:
    """Bring the test's database to an older Alembic revision, as an older version of the app left
    it, and write rows there as that version did: `pg_at_revision("0004", (sql, params), ...)`.
    Returns the database's URL; an app opened on it upgrades it to the newest revision."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from app.history.sql import MIGRATIONS, sqlalchemy_url

    def migrate(revision: str, *rows: tuple[str, dict[str, Any]]) -> str:
        engine = sa.create_engine(sqlalchemy_url(pg_url))
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        try:
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, revision)
                for statement, params in rows:
                    conn.execute(sa.text(statement), params)
        finally:
            engine.dispose()
        return pg_url

    return migrate


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.RedisServer]:
    """A redis-server without persistence; `redis_server.url` is redis://127.0.0.1:PORT/0."""
    server = _start_service(lambda: services.start_redis(tmp_path_factory.mktemp("redis")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[services.S3Server]:
    """moto's S3 over HTTP; `s3_server.endpoint_url` is http://127.0.0.1:PORT, any credentials."""
    server = _start_service(services.start_s3)
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: services.S3Server) -> Iterator[tuple[str, str]]:
    """(endpoint_url, bucket_name) of a fresh, empty bucket, deleted with its objects after the test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    services.make_bucket(s3_server.endpoint_url, name)
    yield s3_server.endpoint_url, name
    services.delete_bucket(s3_server.endpoint_url, name)


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


def sse_events(response: requests.Response, limit: int = 1000) -> Iterator[tuple[str, str]]:
    """Events of a streamed response, each as soon as its blank line has arrived (bounded)."""
    buffer = ""
    count = 0
    for piece in response.iter_content(chunk_size=None):
        buffer += piece.decode("utf-8")
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event in parse_sse(block + "\n\n"):
                yield event
                count += 1
                if count >= limit:
                    return


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
