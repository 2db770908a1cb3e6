"""Durability with real processes: many writers on one DATA_DIR, and kill -9 of a serving app.

Each scenario runs once per module (it is the slow part) and the tests below it each check one
property of its outcome.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from ..support.disk import stored_entries
from ..support.ports import free_port
from ..support.writers import write_entries

ROOT = Path(__file__).parents[2]

# The scenarios run in module fixtures: allow for them in the first test that uses each one.
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # slow: real processes, not in make test-fast


def unparsable_json_files(data_dir: Path) -> list[str]:
    """Every file under `data_dir` whose name ends in .json and that is not complete JSON."""
    bad = []
    for path in sorted(data_dir.rglob("*.json")):
        try:
            json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            bad.append(f"{path.relative_to(data_dir)}: {e}")
    return bad


def quarantined_files(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "history").iterdir() if ".corrupt-" in p.name)


# -- many processes writing one DATA_DIR -----------------------------------------------------------

WORKERS = 8
PER_WORKER = 200
WORK = {"finish": True}  # each prompt with its answer


@dataclass
class ConcurrentRun:
    data_dir: Path
    exitcodes: list[int | None]


@pytest.fixture(scope="module")
def concurrent_run(tmp_path_factory) -> ConcurrentRun:
    data_dir = tmp_path_factory.mktemp("concurrent") / "data"
    data_dir.mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    workers = [
        ctx.Process(target=write_entries, args=(str(data_dir), w, PER_WORKER, barrier), kwargs=WORK)
        for w in range(WORKERS)
    ]
    try:
        for p in workers:
            p.start()
        deadline = time.monotonic() + 240
        for p in workers:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
    return ConcurrentRun(data_dir, [p.exitcode for p in workers])


def test_concurrent_writer_processes_all_finish_without_error(concurrent_run):
    assert concurrent_run.exitcodes == [0] * WORKERS


def test_concurrent_writer_processes_store_exactly_every_entry(concurrent_run):
    prompts = Counter(e["prompt"] for e in stored_entries(concurrent_run.data_dir))

    assert sum(prompts.values()) == WORKERS * PER_WORKER
    assert set(prompts) == {f"worker {w} prompt {n}" for w in range(WORKERS) for n in range(PER_WORKER)}


def test_concurrent_writer_processes_give_unique_ids(concurrent_run):
    ids = [e["id"] for e in stored_entries(concurrent_run.data_dir)]

    assert len(ids) == WORKERS * PER_WORKER
    assert len(set(ids)) == len(ids)


def test_concurrent_writer_processes_give_unique_permalinks(concurrent_run):
    permalinks = [(e["date"], e["index"]) for e in stored_entries(concurrent_run.data_dir)]

    assert len(permalinks) == WORKERS * PER_WORKER
    assert len(set(permalinks)) == len(permalinks)


def test_concurrent_writer_processes_keep_every_answer(concurrent_run):
    wrong = [
        e["prompt"]
        for e in stored_entries(concurrent_run.data_dir)
        if e["status"] != "done" or e["response"] != e["prompt"].replace("prompt", "answer")
    ]

    assert wrong == []


def test_concurrent_writer_processes_leave_only_parsable_json_files(concurrent_run):
    assert list(concurrent_run.data_dir.rglob("*.json"))
    assert unparsable_json_files(concurrent_run.data_dir) == []


def test_concurrent_writer_processes_damage_no_file(concurrent_run):
    assert quarantined_files(concurrent_run.data_dir) == []


# -- kill -9 of the serving app ------------------------------------------------------------------

CYCLES = 3
CLIENTS = 4
ACKS_PER_CYCLE = 50
CYCLE_SECONDS = 10.0


class AppProcess:
    """`python -m app` in demo mode on DATA_DIR, on a free port of 127.0.0.1."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "APP_", "FLASK_", "CHAT_", "IMAGE_", "SECRET_"))
        }
        env.update(
            DATA_DIR=str(data_dir),
            PORT=str(port),
            HOST="127.0.0.1",
            OPENAI_API_KEY="",  # blank, so a stray .env cannot supply a key either: demo mode
            LOG_LEVEL="WARNING",
            RATE_LIMIT="100000 per minute",  # every client here is 127.0.0.1
            PYTHONUNBUFFERED="1",
        )
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the app did not answer /healthz within {timeout} s: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code of the app runs."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@dataclass
class CrashRun:
    data_dir: Path
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (prompt, permalink)
    acknowledged_per_cycle: list[int] = field(default_factory=list)
    attempted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # answers other than 200 from a live server
    bad_json_after_kill: list[str] = field(default_factory=list)
    final_entries: list[dict[str, Any]] = field(default_factory=list)


def _client(url: str, name: str, stop: threading.Event, run: CrashRun, lock: threading.Lock) -> None:
    """POST unique prompts until stopped; record what was attempted and what was acknowledged."""
    session = requests.Session()
    n = 0
    while not stop.is_set():
        prompt = f"crash test {name} request {n} {uuid.uuid4().hex[:8]}"
        n += 1
        with lock:
            run.attempted.append(prompt)
        try:
            response = session.post(url + "/generate_code", data={"prompt": prompt}, timeout=10)
        except requests.RequestException:
            time.sleep(0.01)  # the server is gone (killed): wait to be stopped
            continue
        with lock:
            if response.status_code == 200:
                run.acknowledged.append((prompt, response.json()["entry"]))
            else:
                run.failures.append(f"{response.status_code}: {response.text[:200]}")


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory) -> CrashRun:
    base = tmp_path_factory.mktemp("crash")
    data_dir = base / "data"
    data_dir.mkdir()
    log_path = base / "server.log"
    run = CrashRun(data_dir)
    lock = threading.Lock()
    for cycle in range(CYCLES):
        server = AppProcess(data_dir, log_path)
        stop = threading.Event()
        clients = [
            threading.Thread(target=_client, args=(server.url, f"c{cycle}w{w}", stop, run, lock), daemon=True)
            for w in range(CLIENTS)
        ]
        try:
            server.wait_ready()
            before = len(run.acknowledged)
            for t in clients:
                t.start()
            deadline = time.monotonic() + CYCLE_SECONDS
            while time.monotonic() < deadline and len(run.acknowledged) - before < ACKS_PER_CYCLE:
                time.sleep(0.01)
            server.kill()  # mid-run: the clients are still posting
            run.acknowledged_per_cycle.append(len(run.acknowledged) - before)
        finally:
            stop.set()
            server.kill()
            for t in clients:
                if t.is_alive():
                    t.join(timeout=15)
        run.bad_json_after_kill += [
            f"after kill {cycle + 1}: {bad}" for bad in unparsable_json_files(data_dir)
        ]
    server = AppProcess(data_dir, log_path)
    try:
        server.wait_ready()
        response = requests.get(server.url + "/chatlog.full.json", timeout=30)
        response.raise_for_status()
        run.final_entries = response.json()
    finally:
        server.kill()
    return run


def test_app_restarts_and_acknowledges_requests_after_every_kill(crash_run):
    assert len(crash_run.acknowledged_per_cycle) == CYCLES
    assert all(count > 0 for count in crash_run.acknowledged_per_cycle), crash_run.acknowledged_per_cycle


def test_app_answers_every_request_with_200_while_it_runs(crash_run):
    assert crash_run.failures == []


def test_every_acknowledged_prompt_survives_kills_at_its_permalink(crash_run):
    stored: dict[str, list[str]] = {}
    for e in crash_run.final_entries:
        stored.setdefault(e["prompt"], []).append(f"/chatlog/{e['date']}/{e['index']}")

    wrong = {
        prompt: stored.get(prompt, [])
        for prompt, permalink in crash_run.acknowledged
        if stored.get(prompt) != [permalink]
    }
    assert crash_run.acknowledged
    assert wrong == {}


def test_every_acknowledged_entry_keeps_its_answer_after_kills(crash_run):
    acknowledged = {prompt for prompt, _ in crash_run.acknowledged}

    unfinished = [
        e["prompt"]
        for e in crash_run.final_entries
        if e["prompt"] in acknowledged and (e["status"] != "done" or not e["response"])
    ]
    assert unfinished == []


def test_no_prompt_is_stored_twice_after_kills(crash_run):
    counts = Counter(e["prompt"] for e in crash_run.final_entries)

    assert [prompt for prompt in crash_run.attempted if counts[prompt] > 1] == []
    assert set(counts) <= set(crash_run.attempted)


def test_every_json_file_parses_after_every_kill(crash_run):
    assert list(crash_run.data_dir.rglob("*.json"))
    assert crash_run.bad_json_after_kill == []


def test_kills_leave_no_damaged_history_file(crash_run):
    assert quarantined_files(crash_run.data_dir) == []
    assert unparsable_json_files(crash_run.data_dir) == []
