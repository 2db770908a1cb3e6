"""Several app servers behind a load balancer, sharing PostgreSQL, S3, Redis and SECRET_KEY.

Real processes: each server is gunicorn with the committed gunicorn.conf.py (one gthread worker,
8 threads) on its own loopback port and its own DATA_DIR, while the history (HISTORY_URL), the
images (IMAGE_STORE_URL on moto's S3), the rate-limit counters (RATELIMIT_STORAGE_URI on Redis)
and the session key (SECRET_KEY) are shared. What one server writes, the other must read; a
limit, a login and a Stop must hold across servers; and a database outage must give clear 503s,
leak no password and heal by itself.

Every wait is bounded and every server process group is stopped (SIGTERM, then SIGKILL) when
its fixture ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
from PIL import Image

from app.history.sql import SQLChatLog

from ..support import services
from ..support.apps import TEST_KEY
from ..support.htmx import HX, sse_events
from ..support.upstream import FakeUpstream, Reply, chat_completion, png_bytes

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "gunicorn.conf.py"
GUNICORN = Path(sys.executable).with_name("gunicorn")
CHAT = "/v1/chat/completions"
GENERATIONS = "/v1/images/generations"

SECRET_KEY = "shared-secret-key-of-the-cluster-0123456789abcdef"
OTHER_SECRET_KEY = "another-secret-key-not-shared-fedcba9876543210"
PASSWORD = "shared-app-password-4711"
BEARER = {"Authorization": f"Bearer {PASSWORD}"}
JSON = {"Accept": "application/json"}
START_TIMEOUT = 30.0  # seconds for a server to answer /healthz
STOP_TIMEOUT = 8.0  # seconds after SIGTERM before the process group is killed
PREFIX = "shared-images"

# Settings a developer's environment (or .env) might hold: blank means "the default".
NEUTRAL = (
    "APP_PASSWORD",
    "ALLOW_UNAUTHENTICATED",
    "SECRET_KEY",
    "DAILY_REQUEST_CAP",
    "PROXY_FIX",
    "SYSTEM_PROMPT",
    "CHAT_MODEL",
    "IMAGE_MODEL",
    "IMAGE_SIZE",
    "CONTEXT_CHARS",
    "MAX_PROMPT_CHARS",
    "RATE_LIMIT",
    "LOGIN_RATE_LIMIT",
    "RATELIMIT_STORAGE_URI",
    "HISTORY_URL",
    "IMAGE_STORE_URL",
    "IMAGE_STORE_ENDPOINT_URL",
    "IMAGE_STORE_REGION",
    "IMAGE_STORE_PRESIGN",
)

pytestmark = [pytest.mark.timeout(120), pytest.mark.services]


# -- real server processes -----------------------------------------------------------------------


def http() -> requests.Session:
    """A client that ignores proxy settings from the environment (everything is on 127.0.0.1)."""
    session = requests.Session()
    session.trust_env = False
    return session


@dataclass
class AppServer:
    """One gunicorn process group serving the app on 127.0.0.1."""

    name: str
    proc: subprocess.Popen
    url: str
    data_dir: Path
    stdout: Path
    stderr: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything the server printed (stdout: access log; stderr: gunicorn and app log)."""
        return "\n".join(p.read_text(errors="replace") for p in (self.stdout, self.stderr) if p.exists())

    def app_log(self) -> str:
        path = self.data_dir / "app.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, lines: int = 30) -> str:
        text = "\n".join(self.stderr.read_text(errors="replace").splitlines()[-lines:])
        return f"--- {self.name} stderr ---\n{text}"

    def stop(self) -> None:
        stop_all(self)


def stop_all(*servers: AppServer) -> None:
    """SIGTERM to every server's process group at once; SIGKILL what is left after STOP_TIMEOUT."""
    for server in servers:
        if server.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for server in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for server in servers:
        # The worker may outlive its master: take the whole group down in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.proc.wait(timeout=STOP_TIMEOUT)


def launch(name: str, base_dir: Path, upstream_url: str, **settings: str) -> AppServer:
    """Start gunicorn (committed config, 1 worker × 8 threads) with `settings` as environment."""
    port = services.free_port()
    data_dir = base_dir / f"data-{name}"
    data_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GUNICORN_"))}
    env.update(dict.fromkeys(NEUTRAL, ""))
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_WORKERS="1",
        WEB_THREADS="8",
        DATA_DIR=str(data_dir),
        OPENAI_API_KEY=TEST_KEY,
        OPENAI_BASE_URL=upstream_url,
        UPSTREAM_RETRIES="0",
        UPSTREAM_TIMEOUT="20",
        LOG_LEVEL="INFO",
        RATE_LIMIT="100000 per minute",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(settings)
    stdout, stderr = base_dir / f"{name}.stdout", base_dir / f"{name}.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [str(GUNICORN), "--config", str(CONFIG)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group: the master and its worker
        )
    return AppServer(name, proc, f"http://127.0.0.1:{port}", data_dir, stdout, stderr, env)


def wait_healthy(*servers: AppServer) -> None:
    """Wait (bounded) until every server answers /healthz; stop them all and fail otherwise."""
    deadline = time.monotonic() + START_TIMEOUT
    with http() as client:
        for server in servers:
            while True:
                if not server.alive():
                    stop_all(*servers)
                    pytest.fail(f"{server.name} exited with {server.proc.returncode}\n{server.tail()}")
                with contextlib.suppress(requests.RequestException):
                    if client.get(server.url + "/healthz", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    stop_all(*servers)
                    pytest.fail(
                        f"{server.name} did not answer /healthz in {START_TIMEOUT:.0f} s\n{server.tail()}"
                    )
                time.sleep(0.1)


@contextlib.contextmanager
def running(*servers: AppServer) -> Iterator[tuple[AppServer, ...]]:
    """Wait for `servers` to be healthy; stop them all afterwards, whatever happened."""
    try:
        wait_healthy(*servers)
        yield servers
    finally:
        stop_all(*servers)


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """`check()`'s first truthy result within `timeout` seconds, else its last (falsy) one."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


# -- shared backends and the server pair --------------------------------------------------------------


@dataclass
class Shared:
    """What every server of the cluster is configured with."""

    history_url: str
    endpoint_url: str
    bucket: str
    redis_url: str
    upstream_url: str
    base_dir: Path

    def settings(self, **overrides: str) -> dict[str, str]:
        return {
            "HISTORY_URL": self.history_url,
            "IMAGE_STORE_URL": f"s3://{self.bucket}/{PREFIX}",
            "IMAGE_STORE_ENDPOINT_URL": self.endpoint_url,
            "IMAGE_STORE_REGION": "us-east-1",
            "RATELIMIT_STORAGE_URI": self.redis_url,
            "SECRET_KEY": SECRET_KEY,
            "APP_PASSWORD": PASSWORD,
            **overrides,
        }

    def launch(self, name: str, **overrides: str) -> AppServer:
        return launch(name, self.base_dir, self.upstream_url, **self.settings(**overrides))


@pytest.fixture(scope="module")
def shared(
    pg_server: services.PgServer,
    redis_server: services.RedisServer,
    s3_server: services.S3Server,
    shared_upstream: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Shared]:
    """One database, one bucket, one Redis for this module's servers (module-scoped, unlike
    the function-scoped pg_url and s3_bucket)."""
    db = f"shared_{uuid.uuid4().hex[:12]}"
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(db)
    services.make_bucket(s3_server.endpoint_url, bucket)
    try:
        yield Shared(
            url,
            s3_server.endpoint_url,
            bucket,
            redis_server.url,
            shared_upstream.url,
            tmp_path_factory.mktemp("cluster"),
        )
    finally:
        services.delete_bucket(s3_server.endpoint_url, bucket)
        pg_server.drop_database(db)


@pytest.fixture(scope="module")
def pair(shared: Shared) -> Iterator[tuple[AppServer, AppServer]]:
    """Servers A and B, started together (both migrate the fresh database at once)."""
    a = shared.launch("A")
    b = shared.launch("B")
    with running(a, b):
        yield a, b


@pytest.fixture
def client() -> Iterator[requests.Session]:
    """An API client with the bearer token every server of the pair wants."""
    with http() as session:
        session.headers.update(BEARER)
        yield session


def generate_code(client: requests.Session, server: AppServer, prompt: str) -> dict[str, Any]:
    response = client.post(server.url + "/generate_code", json={"prompt": prompt}, timeout=(5, 30))
    assert response.status_code == 200, f"{response.status_code} {response.text}\n{server.tail()}"
    return response.json()


def entry_on(client: requests.Session, server: AppServer, permalink: str) -> dict[str, Any]:
    response = client.get(server.url + permalink, headers=JSON, timeout=10)
    assert response.status_code == 200, (
        f"{permalink} on {server.name}: {response.status_code} {response.text}"
    )
    return response.json()


# -- 1. written through A, read through B ----------------------------------------------------------


def test_an_entry_written_through_a_is_read_searched_and_exported_through_b(pair, client, upstream):
    a, b = pair
    marker = uuid.uuid4().hex[:10]
    prompt = f"Shared history probe {marker}: reverse a string"

    written = generate_code(client, a, prompt)

    assert written["entry"].startswith("/chatlog/")
    entry = entry_on(client, b, written["entry"])
    assert (entry["prompt"], entry["status"], entry["response"]) == (prompt, "done", written["code"])
    page = client.get(b.url + written["entry"], headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200
    assert prompt in html.unescape(page.text)
    export = client.get(b.url + "/chatlog.json", timeout=10).json()
    rows = [row for rows in export.values() for row in rows if row["prompt"] == prompt]
    assert rows == [{"prompt": prompt, "response": written["code"]}]
    found = client.get(b.url + "/chatlog", params={"q": marker}, headers={"Accept": "text/html"}, timeout=10)
    assert found.status_code == 200
    # A hit links to its entry's page, at the match.
    assert f'href="{written["entry"]}?hl={marker}#match"' in found.text


# -- 2. concurrent appends through both servers ------------------------------------------------------------

SERVERS_X_THREADS = 4
PER_THREAD = 15


def test_concurrent_appends_through_both_servers_all_land_exactly_once(pair, shared, upstream):
    a, b = pair
    marker = uuid.uuid4().hex[:10]
    store = SQLChatLog(shared.history_url, pool_size=1, max_overflow=0)
    try:
        before = store.count()

        def worker(server: AppServer, thread: int) -> list[tuple[str, int, Any]]:
            results = []
            with http() as session:
                session.headers.update(BEARER)
                for n in range(PER_THREAD):
                    prompt = f"concurrent {marker} {server.name}{thread} #{n}"
                    try:
                        r = session.post(
                            server.url + "/generate_code", json={"prompt": prompt}, timeout=(5, 30)
                        )
                        results.append((prompt, r.status_code, r.json() if r.ok else r.text))
                    except requests.RequestException as error:
                        results.append((prompt, -1, repr(error)))
            return results

        with ThreadPoolExecutor(max_workers=2 * SERVERS_X_THREADS) as pool:
            futures = [pool.submit(worker, s, t) for s in (a, b) for t in range(SERVERS_X_THREADS)]
            done, pending = wait_futures(futures, timeout=90)
            assert not pending, "clients did not finish within 90 s"
        results = [r for f in done for r in f.result()]
        after = store.count()
    finally:
        store.close()

    total = 2 * SERVERS_X_THREADS * PER_THREAD
    failures = [(p, status, body) for p, status, body in results if status != 200]
    assert not failures, failures[:5]
    assert len(results) == total
    # Each answer is the one to its own prompt (the fake upstream echoes it).
    assert all(f"Answer to: {p}" in body["code"] for p, _, body in results)
    permalinks = [body["entry"] for _, _, body in results]
    assert len(set(permalinks)) == total
    assert after - before == total
    full = client_export(b)
    mine = [e for e in full if marker in e["prompt"]]
    assert Counter(e["prompt"] for e in mine) == Counter(p for p, _, _ in results)
    assert max(Counter(e["prompt"] for e in mine).values()) == 1
    assert {f"/chatlog/{e['date']}/{e['index']}" for e in mine} == set(permalinks)
    every = [(e["date"], e["index"]) for e in full]
    assert len(every) == len(set(every)), "two entries share a permalink"
    assert {e["status"] for e in mine} == {"done"}


def client_export(server: AppServer) -> list[dict[str, Any]]:
    with http() as session:
        response = session.get(server.url + "/chatlog.full.json", headers=BEARER, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


# -- 3. an image made through A is served by B, from S3 only ------------------------------------------


def test_an_image_generated_through_a_is_served_by_b_from_the_object_store(pair, shared, client, upstream):
    a, b = pair
    source = png_bytes((96, 64), (12, 140, 220))
    url = upstream.serve_file(f"/files/{uuid.uuid4().hex}.png", source)
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"url": url}]}))

    made = client.post(a.url + "/generate_image", json={"prompt": "a blue square"}, timeout=(5, 30))

    assert made.status_code == 200, f"{made.text}\n{a.tail()}"
    image_url = made.json()["image_url"]
    name = image_url.removeprefix("/images/")
    assert re.fullmatch(r"[0-9a-f]{32}\.png", name), image_url
    from_b = client.get(b.url + image_url, timeout=10)
    from_a = client.get(a.url + image_url, timeout=10)
    assert (from_b.status_code, from_a.status_code) == (200, 200)
    assert from_b.headers["Content-Type"] == "image/png"
    assert from_b.content == from_a.content
    s3 = services.s3_client(shared.endpoint_url)
    stored = s3.get_object(Bucket=shared.bucket, Key=f"{PREFIX}/{name}")["Body"].read()
    assert from_b.content == stored
    with Image.open(io.BytesIO(from_b.content)) as got, Image.open(io.BytesIO(source)) as want:
        assert got.size == want.size
        assert got.convert("RGB").tobytes() == want.convert("RGB").tobytes()
    thumb = name.replace(".png", ".thumb.webp")
    thumb_b = client.get(b.url + "/images/" + thumb, timeout=10)
    assert thumb_b.status_code == 200
    assert thumb_b.content == s3.get_object(Bucket=shared.bucket, Key=f"{PREFIX}/{thumb}")["Body"].read()
    assert entry_on(client, b, made.json()["entry"])["image_url"] == image_url
    for server in (a, b):
        images = server.data_dir / "images"
        local = sorted(p.name for p in images.rglob("*")) if images.exists() else []
        assert local == [], f"{server.name} wrote image files to its DATA_DIR: {local}"


# -- 4. a login on A is a login on B (same SECRET_KEY), not on C (another key) -----------------------


def test_a_session_from_a_is_valid_on_b_but_not_with_another_secret_key(pair, shared):
    a, b = pair
    c = shared.launch("C", SECRET_KEY=OTHER_SECRET_KEY)
    with running(c), http() as anonymous:
        refused = anonymous.get(a.url + "/", allow_redirects=False, timeout=10)
        assert refused.status_code == 302 and "/login" in refused.headers["Location"]

        login = anonymous.post(
            a.url + "/login", data={"password": PASSWORD, "next": "/"}, allow_redirects=False, timeout=10
        )
        assert login.status_code == 302, login.text
        cookie = login.cookies.get("session")
        assert cookie, login.headers
        headers = {"Cookie": f"session={cookie}"}

        def index(server: AppServer) -> requests.Response:
            with http() as fresh:  # only the cookie, sent explicitly
                return fresh.get(server.url + "/", headers=headers, allow_redirects=False, timeout=10)

        assert index(a).status_code == 200
        on_b = index(b)
        assert on_b.status_code == 200, (on_b.status_code, on_b.headers.get("Location"))
        assert "Prompt" in on_b.text
        on_c = index(c)
        assert on_c.status_code in (302, 401), on_c.status_code
        if on_c.status_code == 302:
            assert "/login" in on_c.headers["Location"]
        with http() as fresh:
            api = fresh.post(c.url + "/generate_code", json={"prompt": "x"}, headers=headers, timeout=10)
        assert api.status_code == 401


# -- 5. one rate limit across servers, counted in Redis ------------------------------------------------


def test_the_rate_limit_is_shared_by_both_servers_through_redis(shared, redis_server, upstream):
    db = 3  # a Redis database of its own: no other test's counters
    limits_url = re.sub(r"/\d+$", f"/{db}", redis_server.url)
    counters = redis.Redis.from_url(limits_url, socket_timeout=5)
    try:
        counters.flushdb()
        a = shared.launch("RA", RATE_LIMIT="4 per minute", RATELIMIT_STORAGE_URI=limits_url)
        b = shared.launch("RB", RATE_LIMIT="4 per minute", RATELIMIT_STORAGE_URI=limits_url)
        with running(a, b), http() as session:
            session.headers.update(BEARER)

            def post(server: AppServer, n: int) -> requests.Response:
                return session.post(
                    server.url + "/generate_code", json={"prompt": f"limited {n}"}, timeout=30
                )

            first_sent = time.time()
            allowed = [post(a, 1), post(a, 2), post(b, 3), post(b, 4)]
            assert [r.status_code for r in allowed] == [200] * 4, [r.text for r in allowed]
            fifth, sixth = post(b, 5), post(a, 6)
            for over in (fifth, sixth):
                assert over.status_code == 429, over.text
                assert "Too many requests" in over.json()["error"]
                # The window frees up 60 s after the first request. flask-limiter rounds its
                # reset time up by a second, so the header may say up to 2 s more, never less.
                frees_in = first_sent + 60 - time.time()
                assert frees_in - 1 <= int(over.headers["Retry-After"]) <= 62, over.headers
            keys = [k.decode() for k in counters.scan_iter(count=1000)]
            assert any("rate_limit" in k for k in keys), keys
    finally:
        counters.close()


# -- 6. Stop on B ends the stream on A ---------------------------------------------------------------------


def test_stop_sent_to_b_ends_the_stream_running_on_a_and_keeps_the_partial_answer(pair, client, upstream):
    a, b = pair
    chunks = [f"word{i} " for i in range(40)]  # 8 s in full at 0.2 s a chunk
    upstream.script(CHAT, Reply(chunks=chunks, chunk_delay=0.2))
    post = client.post(a.url + "/generate_code", data={"prompt": "stream slowly"}, headers=HX, timeout=10)
    assert post.status_code == 200, post.text
    match = re.search(r'sse-connect="(/chatlog/[^"]+)/stream"', post.text)
    assert match, post.text
    permalink = match.group(1)

    started = time.monotonic()
    seen: list[tuple[str, str]] = []
    stop: requests.Response | None = None
    with client.get(
        a.url + permalink + "/stream", headers={"Accept": "text/event-stream"}, stream=True, timeout=(5, 15)
    ) as stream:
        assert stream.status_code == 200
        for event in sse_events(stream):
            seen.append(event)
            if event[0] == "token" and stop is None and len(seen) >= 2:
                stop = client.post(b.url + permalink + "/stop", timeout=10)
            if event[0] == "done" or time.monotonic() - started > 20:
                break
    elapsed = time.monotonic() - started

    assert stop is not None and stop.status_code == 200, stop and stop.text
    assert stop.json() == {"stopping": True, "entry": permalink}
    names = [name for name, _ in seen]
    assert names[-2:] == ["final", "done"], names
    assert "status-stopped" in seen[-2][1]
    assert elapsed < 6, f"the stream ran on for {elapsed:.1f} s after Stop"
    tokens = html.unescape("".join(data for name, data in seen if name == "token"))
    entry = entry_on(client, b, permalink)
    assert entry["status"] == "stopped"
    assert entry["response"] == tokens
    assert entry["response"].startswith("word0 ")
    assert "word39" not in entry["response"]
    assert wait_until(lambda: upstream.streams_abandoned == 1, 5), "the upstream request was not cancelled"
    assert upstream.streams_finished == 0


# -- 7. the database goes down and comes back ---------------------------------------------------------

DB_PASSWORD = "pgpw-DO-NOT-LEAK-8c1f0e"


def pg_down(pg: services.PgServer) -> None:
    """Stop the cluster's postgres (fast shutdown), keeping its data directory and port.

    (PgServer.stop() also deletes the data directory, so it cannot be used for an outage.)
    """
    assert pg._proc is not None
    services._stop_process(pg._proc, signal.SIGINT)


def pg_up(pg: services.PgServer) -> None:
    """Start postgres again on the same data directory and port (bounded wait inside)."""
    pg._start_postgres()


def test_a_database_outage_gives_clear_503s_leaks_no_password_and_heals(tmp_path, upstream):
    pg = services.start_postgres(tmp_path / "pg", durable=True)
    try:
        pg.sql(f"CREATE ROLE outage LOGIN PASSWORD '{DB_PASSWORD}'")
        pg.sql("CREATE DATABASE outage OWNER outage")
        history_url = f"postgresql://outage:{DB_PASSWORD}@127.0.0.1:{pg.port}/outage"
        server = launch("D", tmp_path, upstream.url, HISTORY_URL=history_url)
        bodies: list[str] = []
        with running(server), http() as session:

            def call(method: str, path: str, **kwargs: Any) -> requests.Response:
                response = session.request(method, server.url + path, timeout=(5, 30), **kwargs)
                bodies.append(response.text)
                return response

            acknowledged = {}
            for n in range(3):
                r = call("POST", "/generate_code", json={"prompt": f"before the outage {n}"})
                assert r.status_code == 200, r.text
                acknowledged[r.json()["entry"]] = f"before the outage {n}"
            assert call("GET", "/readyz").status_code == 200

            pg_down(pg)

            ready = call("GET", "/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["ready"] is False
            failed = call("POST", "/generate_code", json={"prompt": "during the outage"})
            assert failed.status_code == 503, failed.text
            assert "history database" in failed.json()["error"]
            assert int(failed.headers["Retry-After"]) > 0
            read = call("GET", next(iter(acknowledged)), headers=JSON)
            assert read.status_code == 503, read.text
            page = call("GET", "/", headers={"Accept": "text/html"})
            assert page.status_code == 503, page.text[:500]
            assert "history database" in page.text
            fragment = call("POST", "/generate_code", data={"prompt": "htmx during the outage"}, headers=HX)
            assert (fragment.status_code, fragment.headers.get("X-Error-Status")) == (200, "503")
            assert "history database" in fragment.text
            assert server.alive(), server.tail()
            assert call("GET", "/healthz").status_code == 200

            pg_up(pg)

            healed = wait_until(lambda: call("GET", "/readyz").status_code == 200, 30, interval=0.5)
            assert healed, f"/readyz still not ready 30 s after the database came back\n{server.tail()}"
            after = call("POST", "/generate_code", json={"prompt": "after the outage"})
            assert after.status_code == 200, after.text
            for permalink, prompt in acknowledged.items():
                got = call("GET", permalink, headers=JSON)
                assert got.status_code == 200, got.text
                assert (got.json()["prompt"], got.json()["status"]) == (prompt, "done")
            with psycopg.connect(history_url, connect_timeout=5) as conn:
                prompts = [row[0] for row in conn.execute("SELECT prompt FROM entries ORDER BY day, idx")]
            assert prompts == [*acknowledged.values(), "after the outage"]
            assert server.alive()
        # The password shows up nowhere: no response, not app.log, not the server's output.
        leaks = [i for i, body in enumerate(bodies) if DB_PASSWORD in body]
        assert not leaks, f"responses {leaks} contain the database password"
        assert "history database" in server.app_log().lower() or "not reachable" in server.app_log()
        assert DB_PASSWORD not in server.app_log()
        assert DB_PASSWORD not in server.output()
    finally:
        pg.stop()


def test_an_answer_arriving_while_the_database_restarts_is_saved_when_it_is_back(tmp_path, upstream):
    """The prompt is stored, the database goes away while the upstream answers, and comes back
    within the server's patience: the answer is stored, not lost, and the request succeeds."""
    pg = services.start_postgres(tmp_path / "pg")
    try:
        history_url = pg.create_database("restart")
        server = launch("E", tmp_path, upstream.url, HISTORY_URL=history_url)
        with running(server), http() as session:
            assert session.get(server.url + "/readyz", timeout=10).status_code == 200
            upstream.script(CHAT, Reply(json=chat_completion("saved after all"), delay=2.0))
            result: dict[str, requests.Response] = {}
            request = threading.Thread(
                target=lambda: result.update(
                    r=session.post(
                        server.url + "/generate_code", json={"prompt": "survive a restart"}, timeout=60
                    )
                )
            )
            request.start()
            assert wait_until(lambda: len(upstream.calls(CHAT)) == 1, 10)
            pg_down(pg)  # the prompt is stored; the answer is on its way
            time.sleep(3)  # the answer arrives and finds no database
            pg_up(pg)
            request.join(60)
            assert not request.is_alive()
            response = result["r"]
            assert response.status_code == 200, response.text
            assert response.json()["code"] == "saved after all"
            stored = session.get(server.url + response.json()["entry"], headers=JSON, timeout=10).json()
            assert (stored["prompt"], stored["response"], stored["status"]) == (
                "survive a restart",
                "saved after all",
                "done",
            )
            assert "saving the answer again" in server.app_log()
    finally:
        pg.stop()


def test_with_redis_down_the_rate_limit_falls_back_to_this_process_instead_of_failing(make_app, upstream):
    app = make_app(
        openai_api_key=TEST_KEY,
        openai_base_url=upstream.url,
        rate_limit="2 per minute",
        ratelimit_storage_uri=f"redis://127.0.0.1:{services.free_port()}/0",
    )
    client = app.test_client()

    codes = [client.post("/generate_code", json={"prompt": f"no redis {n}"}).status_code for n in range(3)]

    assert codes == [200, 200, 429]
    assert client.get("/readyz").status_code == 200
