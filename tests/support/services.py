"""Real backing services on 127.0.0.1 for tests and benchmarks: PostgreSQL, Redis and S3 (moto).

Each server gets a free loopback port and its own temp directory, and is stopped by `stop()`
(killed if it does not stop within a few seconds). Every wait has a deadline; a server that does
not come up raises :class:`ServiceError` with the tail of its log. A missing binary raises
:class:`ServiceNotInstalled` ("run `make services`").

PostgreSQL refuses to run as root: as root, initdb and postgres run as the `postgres` system
user (created by Debian's postgresql package) on a data directory it owns, in a temp directory
it can reach.

No pytest here: tests/conftest.py wraps these in fixtures, and bench/ imports them too.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import glob
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from .ports import HOST, free_port

START_TIMEOUT = 30.0  # seconds for a server to accept connections
STOP_TIMEOUT = 5.0  # seconds for a clean stop before the server is killed
COMMAND_TIMEOUT = 60.0  # seconds for initdb / an SQL statement
PORT_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it

PG_USER = "app"
PG_PASSWORD = "secret"
PG_SUPERUSER = "postgres"
PG_OS_USER = "postgres"  # the system user that runs PostgreSQL when we are root

AWS_CREDENTIALS = {
    "aws_access_key_id": "test",
    "aws_secret_access_key": "test",
    "region_name": "us-east-1",
}

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ServiceError(RuntimeError):
    """A server did not start or did not answer in time."""


class ServiceNotInstalled(ServiceError):
    """A server binary is missing."""


# --- helpers ---------------------------------------------------------------------------------


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- last lines of {path} ---\n{tail}" if tail else f"(log {path} is empty)"


def _wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None) -> None:
    """Poll `check` until it is true; ServiceError with the log tail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"{what}: not ready after {timeout:.0f} s\n{_log_tail(log) if log else ''}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _child_env() -> dict[str, str]:
    """The environment for server processes: English messages, no PG* settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _stop_process(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig`, wait STOP_TIMEOUT, then SIGKILL the process group (servers run in their own, so
    PostgreSQL's backends go too; the leader is not reaped yet, so the group id is still ours)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def _port_taken(log: Path, since: int) -> bool:
    """The log, from byte `since` on, says the port was taken."""
    try:
        with log.open("rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return False
    return "Address already in use" in text or "could not bind" in text


def _on_a_free_port(server: Any, start: Callable[[], None]) -> None:
    """Set `server.port` to a free port and `start()` it there; again on another port (up to
    PORT_ATTEMPTS) when the server's log says someone took the port first."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        server.port = free_port()
        log_start = _log_size(server.log)
        try:
            start()
            return
        except ServiceError:
            if attempt == PORT_ATTEMPTS or not _port_taken(server.log, log_start):
                raise


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb, else the directory of initdb on PATH."""

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.parent.name)
        except ValueError:
            return 0.0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    raise ServiceNotInstalled(
        "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH): "
        "run `make services` (as root it installs Debian's postgresql)"
    )


def _pg_tool(bindir: Path, name: str) -> str:
    path = bindir / name
    if path.exists():
        return str(path)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise ServiceNotInstalled(
        f"PostgreSQL's {name} is missing (not in {bindir} or on PATH): run `make services`"
    )


def _reachable_by_others(path: Path) -> bool:
    """Every directory from / down to `path` can be traversed by any user (o+x)."""
    path = path.resolve()
    for part in [path, *path.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _pg_parent_dir(base_dir: Path, as_root: bool) -> Path:
    """Where the cluster's directory goes: `base_dir` if postgres can reach it and the socket path
    stays short (Unix socket paths are limited to ~107 bytes), else the system temp dir."""
    base_dir.mkdir(parents=True, exist_ok=True)
    candidates = [base_dir, Path(tempfile.gettempdir()), Path("/tmp")]
    for parent in candidates:
        if len(str(parent.resolve())) > 60:
            continue
        if as_root and not _reachable_by_others(parent):
            continue
        return parent
    raise ServiceError(f"no directory for PostgreSQL that user {PG_OS_USER!r} can reach among {candidates}")


class PgServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1.

    `url` connects as the password-authenticated role `app` (CREATEDB, not superuser) to the
    `postgres` database; `create_database` gives a fresh database owned by `app` (so `app` can
    `CREATE EXTENSION pg_trgm`, a trusted extension).
    """

    host = HOST
    user = PG_USER
    password = PG_PASSWORD

    def __init__(self, base_dir: Path, *, durable: bool = False, settings: Mapping[str, Any] | None = None):
        self.bindir = _pg_bindir()
        self.initdb = _pg_tool(self.bindir, "initdb")
        self.postgres = _pg_tool(self.bindir, "postgres")
        self.as_root = os.geteuid() == 0
        self._run_as: dict[str, Any] = {}
        if self.as_root:
            try:
                import pwd

                entry = pwd.getpwnam(PG_OS_USER)
            except KeyError:
                raise ServiceNotInstalled(
                    f"running as root, PostgreSQL needs the {PG_OS_USER!r} system user: run `make services`"
                ) from None
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
            self._run_as = {"user": self._uid, "group": self._gid, "extra_groups": []}

        base_dir = Path(base_dir)
        parent = _pg_parent_dir(base_dir, self.as_root)
        self._owns_dir = parent != base_dir  # outside base_dir: remove it all on stop
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir=parent))
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self.log = self.dir / "postgres.log"
        self.initdb_log = self.dir / "initdb.log"
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(mode=0o700)
        if self.as_root:
            for path in (self.dir, self.data_dir, self.socket_dir):
                os.chown(path, self._uid, self._gid)

        self.settings: dict[str, Any] = {
            "listen_addresses": HOST,
            "max_connections": 200,
            "password_encryption": "scram-sha-256",
        }
        if not durable:
            self.settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        self.settings.update(settings or {})
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._stopped = False

    # URLs

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    # life cycle

    def start(self) -> PgServer:
        atexit.register(self.stop)
        try:
            self._initdb()
            _on_a_free_port(self, self._start_postgres)
            self.sql(f"CREATE ROLE {PG_USER} LOGIN CREATEDB PASSWORD '{PG_PASSWORD}'")
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, command: list[str], what: str, log: Path, **output: Any) -> subprocess.CompletedProcess:
        """Run one of the cluster's tools as its user, bounded by COMMAND_TIMEOUT (`log`'s tail
        goes into the error if it hangs)."""
        try:
            return subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
                env=_child_env(),
                timeout=COMMAND_TIMEOUT,
                **output,
                **self._run_as,
            )
        except subprocess.TimeoutExpired:
            raise ServiceError(f"{what} took over {COMMAND_TIMEOUT:.0f} s\n{_log_tail(log)}") from None

    def _initdb(self) -> None:
        command = [
            self.initdb,
            "--pgdata",
            str(self.data_dir),
            "--username",
            PG_SUPERUSER,
            "--auth-local=trust",  # the socket directory is private (0700)
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]
        with self.initdb_log.open("ab") as log:
            result = self._run(command, "initdb", self.initdb_log, stdout=log, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed (exit {result.returncode})\n{_log_tail(self.initdb_log)}")

    def _start_postgres(self) -> None:
        command = [self.postgres, "-D", str(self.data_dir), "-p", str(self.port), "-k", str(self.socket_dir)]
        for name, value in self.settings.items():
            command += ["-c", f"{name}={value}"]
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env=_child_env(),
                start_new_session=True,  # its own process group: Ctrl-C goes to pytest, kill takes all
                **self._run_as,
            )
        pid_file = self.data_dir / "postmaster.pid"

        def ready() -> bool:
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"postgres exited with {self._proc.returncode} on port {self.port}\n{_log_tail(self.log)}"
                )
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                return False
            # Line 8 of postmaster.pid is the server's status (PostgreSQL >= 10).
            return len(lines) >= 8 and lines[7].strip() == "ready"

        try:
            _wait_until(ready, START_TIMEOUT, f"postgres on port {self.port}", self.log)
        except ServiceError:
            _stop_process(self._proc, signal.SIGINT)
            raise

    def sql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket, on a connection of its own (so a restarted
        server needs nothing reset); its rows a line each, `|` between values, as `psql -A -t`
        prints numbers, text, booleans and NULL (other types as Python writes them). A third of
        what running psql costs, which every test database pays twice."""
        options = f"-c statement_timeout={int(COMMAND_TIMEOUT * 1000)}"
        connect = {"host": str(self.socket_dir), "port": self.port, "user": PG_SUPERUSER, "dbname": dbname}
        try:
            with psycopg.connect(**connect, autocommit=True, connect_timeout=10, options=options) as conn:
                cursor = conn.execute(sql)
                rows = cursor.fetchall() if cursor.description else []
        except psycopg.Error as e:
            raise ServiceError(f"SQL failed: {sql}\n{e}\n{_log_tail(self.log, 10)}") from None
        return "".join("|".join(_psql_text(value) for value in row) + "\n" for row in rows)

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database owned by `app`, empty or a copy of `template` (a database nobody is
        connected to); its URL."""
        copy = f' TEMPLATE "{_check_db_name(template)}"' if template else ""
        self.sql(f'CREATE DATABASE "{_check_db_name(name)}"{copy} OWNER {PG_USER}')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop the database, ending any sessions still connected to it."""
        self.sql(f'DROP DATABASE IF EXISTS "{_check_db_name(name)}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown (SIGINT: ends sessions, no waiting for clients), killed after STOP_TIMEOUT."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGINT)
        shutil.rmtree(self.dir if self._owns_dir else self.data_dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _psql_text(value: Any) -> str:
    """A value as psql prints it: NULL empty, booleans t and f."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _check_db_name(name: str) -> str:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"database name must be letters, digits and _ (at most 63): {name!r}")
    return name


def start_postgres(
    base_dir: Path, *, durable: bool = False, settings: Mapping[str, Any] | None = None
) -> PgServer:
    """Start a PostgreSQL cluster on a free loopback port, data under `base_dir` (or in the system
    temp dir when `base_dir` is out of the postgres user's reach).

    By default it trades durability for speed (fsync, synchronous_commit, full_page_writes off);
    `durable=True` keeps PostgreSQL's defaults. `settings` adds or overrides server settings.
    """
    return PgServer(base_dir, durable=durable, settings=settings).start()


# --- Redis -----------------------------------------------------------------------------------


def _redis_binary() -> str:
    for path in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/sbin/redis-server"):
        if path and os.access(path, os.X_OK):
            return path
    raise ServiceNotInstalled(
        "redis-server is not installed: run `make services` (as root it installs Debian's redis-server)"
    )


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A throwaway redis-server on 127.0.0.1: no persistence, data dir in a temp dir."""

    host = HOST

    def __init__(self, base_dir: Path) -> None:
        self.binary = _redis_binary()
        Path(base_dir).mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=base_dir))
        self.log = self.dir / "redis.log"
        self.port = 0
        self._proc: subprocess.Popen | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        atexit.register(self.stop)
        try:
            _on_a_free_port(self, self._start)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", HOST, "--protected-mode", "yes"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        command += ["--daemonize", "no", "--logfile", ""]  # log to stdout, i.e. to self.log
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
            )

        def ready() -> bool:
            if self._proc.poll() is not None:
                raise ServiceError(
                    f"redis-server exited with {self._proc.returncode} on port {self.port}\n"
                    f"{_log_tail(self.log)}"
                )
            return _redis_ping(self.port)

        try:
            _wait_until(ready, START_TIMEOUT, f"redis-server on port {self.port}", self.log)
        except ServiceError:
            _stop_process(self._proc, signal.SIGTERM)
            raise

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._proc is not None:
            _stop_process(self._proc, signal.SIGTERM)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(base_dir: Path) -> RedisServer:
    """Start redis-server on a free loopback port (works as root too)."""
    return RedisServer(base_dir).start()


# --- S3 (moto) -------------------------------------------------------------------------------


def _quiet_moto_handler() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietMotoHandler(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass  # errors are still logged (log_error)

    return QuietMotoHandler


class S3Server:
    """moto's S3 in server mode: a thread in this process, reached over real HTTP on 127.0.0.1,
    so other processes (a gunicorn app, a benchmark's workers) can use it too. Any credentials
    are accepted; :data:`AWS_CREDENTIALS` are the dummy ones used here. Note that moto keeps its
    state per process, so two S3Servers in one process share their buckets."""

    host = HOST

    def __init__(self) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise ServiceNotInstalled(
                f"moto's server mode is not installed ({exc}): pip install -r requirements-dev.txt"
            ) from None
        # Port 0: the OS picks a free port when the server binds it, so no race for the port.
        self._server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
        self.port = 0
        self._stopped = False

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Server:
        # ThreadedMotoServer.start() waits without a deadline (forever if binding fails).
        starter = threading.Thread(target=self._server.start, daemon=True)
        starter.start()
        starter.join(START_TIMEOUT)
        if starter.is_alive() or self._server._server is None:
            raise ServiceError(f"moto server did not start within {START_TIMEOUT:.0f} s")
        self.port = self._server.get_host_and_port()[1]
        self._server._server.RequestHandlerClass = _quiet_moto_handler()  # no line per request
        # No proxies: a proxy from the environment must not get requests to 127.0.0.1.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def ready() -> bool:
            try:
                with opener.open(f"{self.endpoint_url}/", timeout=2.0) as response:
                    return response.status == 200
            except OSError:
                return False

        try:
            _wait_until(ready, START_TIMEOUT, f"moto S3 on port {self.port}", None)
        except ServiceError:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        server = self._server._server
        if server is None:
            return
        stopper = threading.Thread(target=self._server.stop, daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT)
        server.server_close()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_s3() -> S3Server:
    """Start moto's S3 server on a free loopback port."""
    return S3Server().start()


@functools.cache
def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the server at `endpoint_url`, with dummy credentials: one per
    endpoint and process (a client is thread-safe, and takes a quarter second to make)."""
    import boto3
    from botocore.config import Config

    config = Config(proxies={}, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30)
    return boto3.client("s3", endpoint_url=endpoint_url, config=config, **AWS_CREDENTIALS)


def make_bucket(endpoint_url: str, name: str) -> str:
    """Create the bucket `name` (us-east-1); its name."""
    s3_client(endpoint_url).create_bucket(Bucket=name)
    return name


def delete_bucket(endpoint_url: str, name: str) -> None:
    """Delete every object (every version, if versioned) in the bucket, then the bucket."""
    client = s3_client(endpoint_url)
    for page in client.get_paginator("list_object_versions").paginate(Bucket=name):
        keys = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if keys:
            client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=name)
