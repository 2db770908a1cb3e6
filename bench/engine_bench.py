"""The history engine on a bad day: a full day, a burst of users, a cold start.

Figures (each against a baseline measured in the same run, where one exists):
- the append p50 (begin + finish through the store) when today already holds 3,000 entries
  (about 4.3 MB) against an empty today, alternating rounds;
- 64 users sending 8 JSON generations each, all at once, on `make run`'s server (gunicorn with
  gunicorn.conf.py) while today already holds 3,000 entries: throughput, p50, p95, errors;
- 64 users making 10 requests each (a JSON generation and the main page, alternating) on the same
  server with an empty day; afterwards the export must hold every acknowledged entry exactly once;
- the first search of a freshly started server (a new gunicorn process) at 100,000 entries.
The upstream is the local OpenAI-compatible server of the tests (tests/support/upstream.py); the client
threads, the upstream and the app share the machine's cores.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path

import requests

from app.history import ChatLog
from bench.history_bench import DAYS, RARE, WORDS, make_history, ms
from bench.servers import Server
from tests.support.upstream import FakeUpstream

BUSY_DAY = 3_000


def say(message: str) -> None:
    print(f"[engine] {message}", file=sys.stderr, flush=True)


def busy_today(n: int, seed: int = 11) -> dict[str, list[dict[str, str]]]:
    """`n` entries of the benchmark's usual shape (about 1.4 KB each), all dated today."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = f"{i}: " + " ".join(rng.choices(WORDS, k=12))
        body = "\n".join(" ".join(rng.choices(WORDS, k=10)) for _ in range(16))
        rows.append({"prompt": prompt, "response": f"Here is the answer to {i}.\n\n```python\n{body}\n```\n"})
    return {date.today().isoformat(): rows}


def _append(store: ChatLog) -> None:
    store.finish(store.begin("code", "benchmark prompt", "bench"), "benchmark answer")


def busy_day_append(busy: int, rounds: int = 8, per_round: int = 15) -> tuple:
    with tempfile.TemporaryDirectory() as busy_dir, tempfile.TemporaryDirectory() as empty_dir:
        ChatLog(Path(busy_dir)).import_seed(busy_today(busy))
        doc = Path(busy_dir) / "history" / f"{date.today().isoformat()}.json"
        size_mb = doc.stat().st_size / 1e6
        full, empty = ChatLog(Path(busy_dir)), ChatLog(Path(empty_dir))
        _append(full)
        _append(empty)
        a: list[float] = []
        b: list[float] = []
        for _ in range(rounds):  # alternate so the disk's drift hits both alike
            a += ms(lambda: _append(empty), per_round)
            b += ms(lambda: _append(full), per_round)
    ratio = statistics.median(b) / statistics.median(a)
    return (
        f"append (begin + finish) p50, today holding {busy:,} entries ({size_mb:.1f} MB) vs an empty today",
        f"{statistics.median(b):.2f} ms vs {statistics.median(a):.2f} ms = {ratio:.2f}×",
        "≤ 1.5×",
        "met" if ratio <= 1.5 else "missed",
    )


def burst(
    base: str, users: int, per_user: int, pages: bool
) -> tuple[list[float], list[str], float, list[str]]:
    """`users` threads, each making `per_user` requests at once (JSON generations, alternating
    with the main page when `pages`): latencies (ms), errors, elapsed seconds, acknowledged entries."""
    latencies: list[float] = []
    errors: list[str] = []
    acknowledged: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(users)

    def user(n: int) -> None:
        http = requests.Session()
        try:
            ready.wait(timeout=60)
        except threading.BrokenBarrierError:
            return
        for i in range(per_user):
            start = time.perf_counter()
            try:
                if pages and i % 2:
                    response = http.get(base + "/", timeout=60)
                    entry = None
                else:
                    response = http.post(
                        base + "/generate_code", data={"prompt": f"burst {n} {i}"}, timeout=60
                    )
                    entry = response.json().get("entry") if response.status_code == 200 else None
                ok = response.status_code == 200
            except (requests.RequestException, ValueError) as e:
                ok, entry = False, None
                response = None
                detail = type(e).__name__
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(detail if response is None else str(response.status_code))
                if entry:
                    acknowledged.append(entry)

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return latencies, errors, time.perf_counter() - start, acknowledged


def _quantiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 20:
        return statistics.median(latencies or [0]), max(latencies, default=0)
    cuts = statistics.quantiles(latencies, n=20)
    return statistics.median(latencies), cuts[-1]


def busy_burst(upstream: FakeUpstream, busy: int, users: int = 64, per_user: int = 8) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        ChatLog(Path(tmp)).import_seed(busy_today(busy))
        with Server(Path(tmp), upstream.url) as server:
            burst(server.url, 8, 2, pages=False)  # warm up both workers
            latencies, errors, elapsed, _ = burst(server.url, users, per_user, pages=False)
    p50, p95 = _quantiles(latencies)
    total = users * per_user
    return (
        f"{users} users × {per_user} JSON generations at once, today holding {busy:,} entries, `make run`",
        f"{total / elapsed:.0f} requests/s, p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"{len(errors)} errors of {total}",
        "p95 ≤ 300 ms",
        "met" if p95 <= 300 and not errors else "missed",
    )


def mixed_burst(upstream: FakeUpstream, users: int = 64, per_user: int = 10) -> list[tuple]:
    with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp), upstream.url) as server:
        burst(server.url, 8, 2, pages=True)  # warm up both workers
        before = {(r["date"], r["index"]) for r in requests.get(server.url + "/chatlog.full.json").json()}
        latencies, errors, elapsed, acknowledged = burst(server.url, users, per_user, pages=True)
        exported = requests.get(server.url + "/chatlog.full.json", timeout=60).json()
    p50, p95 = _quantiles(latencies)
    total = users * per_user
    rate = total / elapsed
    prompts = Counter(r["prompt"] for r in exported if (r["date"], r["index"]) not in before)
    permalinks = Counter(f"/chatlog/{r['date']}/{r['index']}" for r in exported)
    sent = users * ((per_user + 1) // 2)
    once = (
        len(acknowledged) == sent
        and all(permalinks[p] == 1 for p in acknowledged)
        and all(n == 1 for n in prompts.values())
        and sum(prompts.values()) == sent
    )
    return [
        (
            f"{users} users × {per_user} requests (JSON generation and page, alternating), "
            "`make serve`, empty day",
            f"{rate:.0f} requests/s, p50 {p50:.0f} ms, p95 {p95:.0f} ms, {len(errors)} errors of {total}",
            "≥ 200 requests/s, p95 ≤ 300 ms, 0 errors",
            "met" if rate >= 200 and p95 <= 300 and not errors else "missed",
        ),
        (
            "entries in the export after that burst",
            f"{sum(prompts.values())} new entries for {len(acknowledged)} acknowledged of {sent} sent; "
            f"{'each exactly once' if once else 'NOT each exactly once'}",
            "every acknowledged entry exactly once",
            "met" if once else "missed",
        ),
    ]


def cold_search(n: int = 100_000, servers: int = 3, days: int = DAYS) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        ChatLog(Path(tmp)).import_seed(make_history(n, days))
        hx = {"HX-Request": "true"}
        firsts = []
        for _ in range(servers):  # fresh servers; the figure is their median
            with Server(Path(tmp), None) as server:
                http = requests.Session()
                http.get(server.url + "/healthz")

                def search(http: requests.Session = http, base: str = server.url) -> None:
                    r = http.get(base + "/chatlog", params={"q": RARE}, headers=hx, timeout=60)
                    r.raise_for_status()
                    assert RARE in r.text

                firsts.append(ms(search, 1)[0])
                warm = statistics.median(ms(search, 20))
    first = statistics.median(firsts)
    return (
        f"first search of a freshly started server at {n:,} entries (rare term)",
        f"{first:.0f} ms (of {servers} fresh servers: {', '.join(f'{f:.0f}' for f in firsts)}); "
        f"warm {warm:.1f} ms",
        "≤ 150 ms",
        "met" if first <= 150 else "missed",
    )


def run(
    history_size: int = 100_000, users: int = 64, busy: int = BUSY_DAY, quick: bool = False, days: int = DAYS
) -> list[tuple]:
    rows = []
    say("busy-day append")
    rows.append(busy_day_append(busy, rounds=2 if quick else 8))
    upstream = FakeUpstream().start()
    try:
        say("burst on a busy day")
        rows.append(busy_burst(upstream, busy, users))
        say("mixed burst")
        rows += mixed_burst(upstream, users)
    finally:
        upstream.stop()
    say("cold search")
    rows.append(cold_search(history_size, servers=1 if quick else 3, days=days))
    return rows
