"""Shared backends: the history in PostgreSQL at 1,000,000 entries against TinyDB at 100,000.

A throwaway PostgreSQL on 127.0.0.1 with its durable defaults (fsync and synchronous commit on,
as TinyDB's writes are fsynced) holds 1,000,000 generated entries over the 365 days before today,
shaped like the TinyDB history beside it (make_history's words, entry format and rare term),
loaded with COPY, then indexed from the migration's own index definitions, analyzed and
checkpointed. Figures: the append p50 (begin + finish through the store API, to today's empty
day; PostgreSQL and TinyDB in alternating rounds, so the disk's drift hits both alike); the
searches of the history table (a rare word, a word in every entry, two words, a phrase, a word
with filters), each on a fresh store (a new connection pool, as a restarted server has, on a
server whose caches are warm from the load): the first search and the warm median; and the
throughput of two gunicorn app servers sharing one database against one (each `-w 1 -k gthread
--threads 8`, offline demo provider; 16 client threads POST prompts round-robin over the
servers, one and two servers alternating). The client, the servers and
PostgreSQL share the machine's cores, so on a small machine a second server can only add what
is left of the CPU. Afterwards each database must hold exactly the entries sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psycopg
import requests

from app.history import ChatLog, HistoryStore
from app.history.seed import seed_entry
from app.history.sql import SQLChatLog, search_columns
from app.history.sql.database import entries, entry_row
from bench.history_bench import DAYS, RARE, SEARCHES, WORDS, make_history, ms
from bench.servers import spawn
from tests.support.ports import free_port
from tests.support.services import start_postgres

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = tuple(c.name for c in entries.columns)
LOAD_SECONDS = 120  # the load test of one configuration must end within this
START_SECONDS = 30  # an app server must answer /healthz within this
STOP_SECONDS = 10  # an app server must stop within this after SIGTERM, else it is killed


def say(message: str) -> None:
    print(f"[shared] {message}", file=sys.stderr, flush=True)


# -- the PostgreSQL history ------------------------------------------------------------------


def generated(n: int, days: int = 365, seed: int = 7) -> Iterator[tuple[str, int, str, str]]:
    """(day, index, prompt, response) of `n` entries over the `days` days before today.

    The entries look like make_history's (same words, prompt and answer format, the rare term in
    every 20,000th prompt, days filled in order), but an answer's lines are drawn from a pool of
    generated lines: make_history's per-word draws would take half a minute at 1,000,000.
    """
    rng = random.Random(seed)
    today = date.today()
    dates = [(today - timedelta(days=d)).isoformat() for d in range(days, 0, -1)]
    lines = [" ".join(rng.choices(WORDS, k=10)) for _ in range(4096)]
    day, idx = None, 0
    for i in range(n):
        words = rng.choices(WORDS, k=12)
        if i % 20_000 == 3:
            words.append(RARE)
        this_day = dates[i * days // n]
        idx = idx + 1 if this_day == day else 0
        day = this_day
        body = "\n".join(rng.choices(lines, k=8))
        yield day, idx, f"{i}: " + " ".join(words), f"Here is the answer to {i}.\n\n```python\n{body}\n```\n"


def rare_count(n: int) -> int:
    """How many of the first `n` generated entries contain RARE (as in make_history)."""
    return sum(1 for i in range(3, n, 20_000))


def _template() -> tuple[list, dict[str, int]]:
    """The table row of an imported seed entry (as SQLChatLog.import_seed writes it), as a list in
    COPY's column order with JSON columns as text, and each column's position."""
    sample = seed_entry("2000-01-01", 0, {"prompt": "p", "response": "r"}, lambda r: None)
    row = entry_row(sample.to_dict())
    values = [json.dumps(row[c]) if isinstance(row[c], dict | list) else row[c] for c in COLUMNS]
    return values, {c: i for i, c in enumerate(COLUMNS)}


def _copy_rows(n: int) -> Iterator[tuple[list, dict[str, int]]]:
    template, at = _template()
    for day, idx, prompt, response in generated(n):
        values = template.copy()
        values[at["day"]], values[at["idx"]] = day, idx
        values[at["id"]] = f"{random.getrandbits(128):032x}"  # like uuid4().hex: random, 32 hex
        values[at["created_at"]] = f"{day}T00:00:00"
        values[at["prompt"]], values[at["response"]] = prompt, response
        for column, value in search_columns("code", prompt, response).items():
            values[at[column]] = value
        yield values, at


def check_rows_match_the_store() -> None:
    """The fast row builder writes what SQLChatLog.import_seed would (the id aside)."""
    values, at = next(_copy_rows(1))
    day, idx, prompt, response = next(generated(1))
    entry = seed_entry(day, idx, {"prompt": prompt, "response": response}, lambda r: None)
    expected = entry_row(entry.to_dict())
    for column in COLUMNS:
        want = expected[column]
        if isinstance(want, dict | list):
            want = json.dumps(want)
        if column != "id":
            assert values[at[column]] == want, (column, values[at[column]], want)


def _indexes(conn: psycopg.Connection) -> list[tuple[str, str, str | None, str | None]]:
    """(index, its definition, the constraint it backs, that constraint's definition)."""
    return conn.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid), con.conname, pg_get_constraintdef(con.oid) "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid "
        "WHERE i.indrelid = 'entries'::regclass ORDER BY 1"
    ).fetchall()


def load_pg(url: str, n: int, checkpoint: Callable[[], object]) -> dict[str, float]:
    """Migrate, then load `n` generated entries; seconds taken by each phase and in all.

    `checkpoint` runs CHECKPOINT (as a superuser) at the end, so the load's dirty pages are on
    disk before anything is measured, not written out during the measurements.
    """
    store = SQLChatLog(url)
    try:
        store.migrate()
    finally:
        store.close()
    check_rows_match_the_store()
    start = time.perf_counter()
    phases: dict[str, float] = {}
    per_day: dict[str, int] = {}
    with psycopg.connect(url, autocommit=False) as conn:
        before = _indexes(conn)
        conn.execute("SET maintenance_work_mem = '512MB'")
        # Emptied in this transaction, so COPY can write the rows frozen (no later rewrite by
        # VACUUM to set hint bits). Indexes are dropped and built afterwards from their
        # definitions: a bulk build is much faster than a million index inserts.
        conn.execute("TRUNCATE entries")
        for name, _, constraint, _ in before:
            if constraint:
                conn.execute(f'ALTER TABLE entries DROP CONSTRAINT "{constraint}"')
            else:
                conn.execute(f'DROP INDEX "{name}"')
        statement = f"COPY entries ({', '.join(COLUMNS)}) FROM STDIN (FREEZE)"
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for i, (values, at) in enumerate(_copy_rows(n), 1):
                copy.write_row(values)
                day = values[at["day"]]
                per_day[day] = per_day.get(day, 0) + 1
                if i % 200_000 == 0:
                    say(f"  copied {i:,} rows ({time.perf_counter() - start:.0f} s)")
        phases["copy"] = time.perf_counter() - start
        say(f"  COPY done ({phases['copy']:.0f} s); building indexes")
        phases["btree"] = phases["trigram"] = 0.0
        for name, definition, constraint, constraint_def in before:
            t = time.perf_counter()
            if constraint:
                conn.execute(f'ALTER TABLE entries ADD CONSTRAINT "{constraint}" {constraint_def}')
            else:
                conn.execute(definition)
            took = time.perf_counter() - t
            phases["trigram" if name.startswith("entries_search") else "btree"] += took
            say(f"  index {name}: {took:.1f} s")
        with conn.cursor() as cur, cur.copy("COPY days (day, next_idx) FROM STDIN") as copy:
            for day, count in sorted(per_day.items()):
                copy.write_row((day, count))  # indexes run from 0: the next one is the count
        conn.commit()
        after = _indexes(conn)
        conn.commit()
        assert after == before, ("indexes differ after the load", before, after)
        conn.autocommit = True
        t = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) entries")
        conn.execute("ANALYZE days")
        phases["analyze"] = time.perf_counter() - t
        loaded = conn.execute("SELECT count(*) FROM entries").fetchone()[0]
        assert loaded == n, (loaded, n)
    t = time.perf_counter()
    checkpoint()
    phases["checkpoint"] = time.perf_counter() - t
    phases["total"] = time.perf_counter() - start
    return phases


def pg_search_rows(url: str, n: int, searches: int) -> list[tuple]:
    """Each of SEARCHES on a fresh store (a new connection pool, as a restarted server has):
    its first search, then the warm median; the rare word must find exactly its entries."""
    rows: list[tuple] = []
    for label, query in SEARCHES:
        store = SQLChatLog(url)
        try:
            store.ensure_schema()
            start = time.perf_counter()
            hits = store.search(query)
            first = (time.perf_counter() - start) * 1000
            warm = statistics.median(ms(lambda s=store, q=query: s.search(q), searches))
        finally:
            store.close()
        if query == RARE:
            assert len(hits) == min(rare_count(n), 100) and all(RARE in e.prompt for e in hits), len(hits)
        rows.append(
            (
                f"search at {n:,} entries (PostgreSQL), {label} (`{query}`)",
                f"{first:.0f} ms first search of a fresh store; {warm:.1f} ms warm ({len(hits)} hits)",
                "first ≤ 50 ms, warm ≤ 20 ms",
                "met" if first <= 50 and warm <= 20 else "missed",
            )
        )
    return rows


# -- app servers -----------------------------------------------------------------------------


class AppServer:
    """gunicorn (-w 1 -k gthread --threads 8) on a free loopback port with the history in `db_url`,
    the offline demo provider, and its own DATA_DIR; its own process group, stopped by stop()."""

    def __init__(self, db_url: str, base_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="app-", dir=base_dir))
        self.log = self.dir / "gunicorn.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GUNICORN", "PG"))}
        for name in ("HISTORY_URL", "DATA_DIR", "APP_PASSWORD", "IMAGE_STORE_URL", "RATELIMIT_STORAGE_URI"):
            env.pop(name, None)
        env.update(
            HISTORY_URL=db_url,
            DATA_DIR=str(self.dir / "data"),
            SECRET_KEY="bench-shared-secret-key-0000000000000000",
            RATE_LIMIT="100000 per minute",  # all the load comes from one address
            LOG_LEVEL="WARNING",
            PYTHONPATH=str(ROOT),
        )
        gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
        if not gunicorn.exists():
            gunicorn = Path(sys.executable).with_name("gunicorn")
        command = [str(gunicorn), "-w", "1", "-k", "gthread", "--threads", "8"]
        command += ["-b", f"127.0.0.1:{self.port}", "app:create_app()"]
        with self.log.open("wb") as log:
            # cwd is the server's own directory: no gunicorn.conf.py or .env is picked up there.
            self.proc = spawn(
                command,
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(self.url + "/healthz", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"gunicorn on port {self.port} did not answer /healthz\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_SECONDS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a worker left behind, if any


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (None elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


@dataclass
class Load:
    rate: float  # requests/s
    errors: int
    made: set[str]  # permalinks of the entries made
    busy: float | None  # the machine's CPU busy fraction during the load
    client_cores: float  # cores used by this process (the client threads)


def load(servers: list[AppServer], clients: int, per_client: int, tag: str) -> Load:
    """`clients` threads each POST /generate_code `per_client` times, round-robin over `servers`."""
    errors: list[str] = []
    made: set[str] = set()
    lock = threading.Lock()

    def client(n: int) -> None:
        http = requests.Session()
        for i in range(per_client):
            server = servers[(n + i) % len(servers)]
            try:
                r = http.post(
                    server.url + "/generate_code", data={"prompt": f"shared {tag} {n} {i}"}, timeout=30
                )
                body = r.json() if r.status_code == 200 else {}
                ok = bool(body.get("code")) and bool(body.get("entry"))
            except (requests.RequestException, ValueError) as e:
                ok, body = False, {"error": type(e).__name__}
            with lock:
                if ok:
                    made.add(body["entry"])
                else:
                    errors.append(str(body)[:200])
        http.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    ticks, own = cpu_ticks(), time.process_time()
    start = time.perf_counter()
    for t in threads:
        t.start()
    deadline = start + LOAD_SECONDS
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - start
    client_cores = (time.process_time() - own) / elapsed
    stuck = sum(t.is_alive() for t in threads)
    if stuck:
        raise RuntimeError(f"{stuck} client threads still running after {LOAD_SECONDS} s")
    now = cpu_ticks()
    busy = (now[0] - ticks[0]) / max(1, now[1] - ticks[1]) if now and ticks else None
    return Load(clients * per_client / elapsed, len(errors), made, busy, client_cores)


def db_entries(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM entries GROUP BY status").fetchall())


# -- the benchmark ---------------------------------------------------------------------------


def _append(store: HistoryStore) -> None:
    entry = store.begin("code", "benchmark prompt", "bench")
    store.finish(entry, "benchmark answer")


def run(
    pg_entries: int = 1_000_000,
    tinydb_entries: int = 100_000,
    *,
    rounds: int = 20,
    per_round: int = 10,
    searches: int = 30,
    clients: int = 16,
    requests_total: int = 800,
    days: int = DAYS,
) -> list[tuple]:
    """Measure both backends; returns table rows (figure, measured, goal, verdict)."""
    rows: list[tuple] = []
    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="bench-shared-"))
    pg = None
    stores: list[HistoryStore] = []
    servers: list[AppServer] = []
    try:
        say("starting a durable PostgreSQL")
        pg = start_postgres(base, durable=True)
        big_url = pg.create_database("history_big")
        say(f"loading {pg_entries:,} entries into PostgreSQL")
        phases = load_pg(big_url, pg_entries, lambda: pg.sql("CHECKPOINT"))
        say(f"loaded in {phases['total']:.1f} s")

        say(f"importing {tinydb_entries:,} entries into TinyDB")
        tiny_dir = base / "tinydb"
        ChatLog(tiny_dir).import_seed(make_history(tinydb_entries, days))
        os.sync()  # nothing of the loads left to write out while appends are measured
        tiny = ChatLog(tiny_dir)  # a fresh process's view: empty cache
        sql = SQLChatLog(big_url)
        sql.ensure_schema()  # as the app does when it starts (Alembic finds nothing to do)
        stores += [tiny, sql]

        say("searching")
        sql.close()
        rows += pg_search_rows(big_url, pg_entries, searches)
        sql = SQLChatLog(big_url)
        sql.ensure_schema()
        stores[-1] = sql

        say("appending")
        a_tiny: list[float] = []
        a_sql: list[float] = []
        for store in (tiny, sql):  # today's first entry creates the day (its file, its counter row)
            _append(store)
        for _ in range(rounds):  # alternate so drift hits both alike
            a_tiny += ms(lambda: _append(tiny), per_round)
            a_sql += ms(lambda: _append(sql), per_round)
        at, asq = statistics.median(a_tiny), statistics.median(a_sql)
        ratio = asq / at
        rows.insert(
            0,
            (
                f"append (begin + finish) p50, PostgreSQL at {pg_entries:,} vs TinyDB at {tinydb_entries:,}",
                f"{asq:.2f} ms vs {at:.2f} ms = {ratio:.2f}× "
                f"(p90 {statistics.quantiles(a_sql, n=10)[-1]:.2f} vs "
                f"{statistics.quantiles(a_tiny, n=10)[-1]:.2f} ms)",
                f"≤ 1.5× TinyDB at {tinydb_entries:,}",
                "met" if ratio <= 1.5 else "missed",
            ),
        )
        sql.close()
        stores.remove(sql)

        say("throughput: one app server vs two sharing the database")
        one_url = pg.create_database("shared_one")
        two_url = pg.create_database("shared_two")
        one = [AppServer(one_url, base)]
        servers += one
        two = [AppServer(two_url, base), AppServer(two_url, base)]
        servers += two
        for server in servers:
            server.wait_ready()
        per_client = max(1, requests_total // clients // 2)  # two rounds per configuration
        sent = {"one": 0, "two": 0}
        made: dict[str, set[str]] = {"one": set(), "two": set()}
        errors = {"one": 0, "two": 0}
        runs: dict[str, list[Load]] = {"one": [], "two": []}
        for name, group in (("one", one), ("two", two)):  # warm up every server and connection
            warm = load(group, clients, 2, f"warm-{name}")
            sent[name] += clients * 2
            errors[name] += warm.errors
            made[name] |= warm.made
        for r in range(2):  # alternate so drift hits both alike
            for name, group in (("one", one), ("two", two)):
                result = load(group, clients, per_client, f"{name}-{r}")
                busy = f"{result.busy:.0%}" if result.busy is not None else "?"
                say(
                    f"  {name}: {result.rate:.0f} requests/s, {result.errors} errors, CPU busy {busy}, "
                    f"client {result.client_cores:.2f} cores"
                )
                runs[name].append(result)
                sent[name] += clients * per_client
                errors[name] += result.errors
                made[name] |= result.made
        for server in servers:
            server.stop()
        counts = {"one": db_entries(one_url), "two": db_entries(two_url)}
        exact = all(
            counts[k] == {"done": sent[k]} and len(made[k]) == sent[k] and not errors[k] for k in sent
        )
        r1 = statistics.mean(x.rate for x in runs["one"])
        r2 = statistics.mean(x.rate for x in runs["two"])
        all_runs = runs["one"] + runs["two"]
        busy_all = [x.busy for x in all_runs if x.busy is not None]
        cpu = f"machine CPU {min(busy_all):.0%}–{max(busy_all):.0%} busy, " if busy_all else ""
        client = statistics.mean(x.client_cores for x in all_runs)
        rows.append(
            (
                f"throughput of POST /generate_code (JSON), two app servers vs one on one PostgreSQL "
                f"({clients} client threads, {2 * clients * per_client} timed requests per configuration)",
                f"{r2:.0f} vs {r1:.0f} requests/s = {r2 / r1:.2f}× on {os.cpu_count()} cores shared by "
                f"the client, the servers and PostgreSQL ({cpu}the client alone {client:.2f} cores)",
                "measured: more servers add throughput only where cores are left",
                "measured",
            )
        )

        def tally(name: str) -> str:
            done = counts[name].get("done", 0)
            other = sum(counts[name].values()) - done
            return f"{done} done + {other} other of {sent[name]} sent"

        rows.append(
            (
                "entries in each database after the load, one server and two servers",
                f"{tally('one')}; {tally('two')}; {errors['one'] + errors['two']} failed requests",
                "exactly the entries sent, all done",
                "met" if exact else "missed",
            )
        )
        rows.append(
            (
                f"load of {pg_entries:,} generated entries into PostgreSQL",
                f"{phases['total']:.0f} s: COPY {phases['copy']:.0f} s, trigram index "
                f"{phases['trigram']:.0f} s, other indexes {phases['btree']:.0f} s, VACUUM ANALYZE "
                f"{phases['analyze']:.0f} s, CHECKPOINT {phases['checkpoint']:.0f} s "
                f"(this whole section: {time.perf_counter() - started:.0f} s)",
                "time",
                "measured",
            )
        )
        return rows
    finally:
        for server in servers:
            server.stop()
        for store in stores:
            if isinstance(store, SQLChatLog):
                store.close()
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)
