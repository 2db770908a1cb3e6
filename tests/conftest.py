"""The fixtures the suite shares: a local OpenAI-compatible upstream, apps on temp DATA_DIRs, a
live server, real PostgreSQL, Redis and S3 servers, and Debian's chromium through Playwright.
Those only the browser tests use are in tests/browser/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from app import create_app

from .support import services
from .support.apps import TEST_KEY
from .support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CHROMIUM_HEADLESS_SHELL,
    WatchedPage,
)
from .support.migrations import alembic
from .support.serving import LiveServer
from .support.upstream import FakeUpstream


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


SERVICE_FIXTURES = {"pg_server", "pg_url", "pg_empty_url", "redis_server", "s3_server", "s3_bucket"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a real PostgreSQL, Redis or S3 `services`, so that
    `make test-fast` can leave them out: those using their fixtures, and those run on the
    PostgreSQL backend or the S3 image store (which ask for them at run time); and every
    test that uses chromium (the `browser` or `playwright` fixture) as `browser`. Then put the
    long tests (`slow`, `firstrun`) first, so that pytest-xdist's workers start on them and no
    worker is left alone with one at the end of the run while the others wait."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        fixtures = set(getattr(item, "fixturenames", ()))
        values = [value for value in params.values() if isinstance(value, str)]
        on_a_service = "postgresql" in values or "s3" in values
        if SERVICE_FIXTURES & fixtures or on_a_service:
            item.add_marker(pytest.mark.services)
        if {"browser", "playwright"} & fixtures and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.browser)  # chromium, wherever the test lives
    items.sort(key=lambda item: not any(item.get_closest_marker(name) for name in ("slow", "firstrun")))


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
            # Generous: four workers share two cores, and an answer that the local upstream gives
            # at once may still wait seconds for a core. Tests of timeouts set their own.
            "upstream_timeout": 30.0,
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


@pytest.fixture(scope="session")
def pg_schema_template(pg_server: services.PgServer) -> str:
    """The name of a database the app's migrations brought to the newest revision, once per
    session: copying it is quicker than migrating every test's database from nothing."""
    from app.history.sql import SQLChatLog

    name = "schema_head"
    store = SQLChatLog(pg_server.create_database(name))
    try:
        store.migrate()
    finally:
        store.close()  # a template must have no sessions when it is copied
    return name


def _test_database(pg_server: services.PgServer, template: str | None) -> Iterator[str]:
    """URL of a fresh database owned by `app` (a copy of `template`, or empty), dropped (sessions
    and all) after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield pg_server.create_database(name, template=template)
    pg_server.drop_database(name)


@pytest.fixture
def pg_url(pg_server: services.PgServer, pg_schema_template: str) -> Iterator[str]:
    """URL of a fresh database with the newest schema and no rows. Tests of the migrations
    themselves use `pg_empty_url`."""
    yield from _test_database(pg_server, pg_schema_template)


@pytest.fixture
def pg_empty_url(pg_server: services.PgServer) -> Iterator[str]:
    """URL of a fresh, empty database (no schema)."""
    yield from _test_database(pg_server, None)


@pytest.fixture
def pg_at_revision(pg_empty_url: str) -> Callable[..., str]:
    """Bring the test's database to an older Alembic revision, as an older version of the app left
    it, and write rows there as that version did: `pg_at_revision("0004", (sql, params), ...)`.
    Returns the database's URL; an app opened on it upgrades it to the newest revision."""

    def migrate(revision: str, *rows: tuple[str, dict[str, Any]]) -> str:
        alembic(pg_empty_url, "upgrade", revision, *rows)
        return pg_empty_url

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


@pytest.fixture
def openai_app(make_app, upstream):
    """make_app through the real openai client against the local upstream, with extra settings."""

    def build(**settings):
        return make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, **settings)

    return build


# Debian's chromium through Playwright (tests/support/browser.py): one headless shell per test
# process (each xdist worker has its own), and one /usr/bin/chromium in a process that runs a test
# marked `full_chromium`; a fresh context (empty cache and storage) per page.


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


def _launched(pw: Playwright, executable: str) -> Iterator[Browser]:
    browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def headless_shell(playwright: Playwright) -> Iterator[Browser]:
    yield from _launched(playwright, CHROMIUM_HEADLESS_SHELL)


@pytest.fixture(scope="session")
def full_chromium(playwright: Playwright) -> Iterator[Browser]:
    yield from _launched(playwright, CHROMIUM)


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Browser:
    """The test's chromium: /usr/bin/chromium for a test marked `full_chromium`, else its
    headless shell."""
    whole = request.node.get_closest_marker("full_chromium") is not None
    return request.getfixturevalue("full_chromium" if whole else "headless_shell")


@pytest.fixture
def open_page(browser: Browser, live_server):
    contexts = []

    def open_app(app) -> WatchedPage:
        server = live_server(app)
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        watched = WatchedPage(page, server.url)
        page.goto(server.url + "/")
        # A marker that a full reload would wipe: results must arrive without one.
        page.evaluate("window.__noReload = true")
        return watched

    yield open_app
    for context in contexts:
        context.close()
