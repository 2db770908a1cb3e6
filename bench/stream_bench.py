"""Streaming and the production server: figures measured against `make serve`'s configuration.

The app runs under gunicorn with the committed gunicorn.conf.py, on the local streaming upstream.
Time to first token (TTFT) through the app — the htmx POST that stores the prompt, then the
event stream up to its first token — is compared with the `openai` client streaming from the same
server directly; the non-streaming JSON path likewise. Then 64 users each stream an answer at
once: every user sends a prompt, then all open their streams together (the upstream sends 20
chunks, 100 ms apart, so every stream is open at the same time). Last, a bounded load test: 64
users each make 10 requests, alternating a JSON generation and the main page.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai
import requests

from tests.upstream import FakeUpstream, Reply

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-not-a-real-key-000000000000"
HX = {"HX-Request": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """`make serve`'s server (gunicorn.conf.py) on a free loopback port, stopped on exit."""

    def __init__(self, upstream_url: str, data_dir: str) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATA_DIR": data_dir,
            "OPENAI_API_KEY": KEY,
            "OPENAI_BASE_URL": upstream_url,
            "LOG_LEVEL": "WARNING",
            "RATE_LIMIT": "100000 per minute",  # the load comes from one address: 127.0.0.1
        }
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.proc = subprocess.Popen(
            [str(gunicorn), "--config", "gunicorn.conf.py", "--access-logfile", "/dev/null"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Gunicorn:
        for _ in range(150):  # up to 15 s to start
            try:
                if requests.get(self.url + "/healthz", timeout=5).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("gunicorn did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def app_ttft(http: requests.Session, base: str) -> float:
    """Milliseconds from the htmx POST to the first token event of its stream."""
    start = time.perf_counter()
    post = http.post(base + "/generate_code", data={"prompt": "bench"}, headers=HX)
    post.raise_for_status()
    url = re.search(r'sse-connect="([^"]+)"', post.text).group(1)
    with http.get(base + url, stream=True, timeout=30) as stream:
        for line in stream.iter_lines():
            if line == b"event: token":
                ttft = (time.perf_counter() - start) * 1000
                break
        else:
            raise RuntimeError("no token")
        for _ in stream.iter_lines():  # read to the end so the entry is finished
            pass
    return ttft


def direct_ttft(client: openai.OpenAI) -> float:
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "bench"}], stream=True
    )
    ttft = None
    for chunk in stream:
        if ttft is None and chunk.choices and chunk.choices[0].delta.content:
            ttft = (time.perf_counter() - start) * 1000
    return ttft or float("nan")


def one_stream(base: str, n: int, results: list, lock: threading.Lock, ready: threading.Barrier) -> None:
    """One user: send the prompt, wait until every user has, then read the whole stream."""
    http = requests.Session()
    ok = False
    try:
        post = http.post(base + "/generate_code", data={"prompt": f"user {n}"}, headers=HX, timeout=30)
        url = re.search(r'sse-connect="([^"]+)"', post.text).group(1)
        ready.wait(timeout=60)
        with http.get(base + url, stream=True, timeout=60) as stream:
            body = b"".join(stream.iter_content(None))
        ok = b"event: final" in body and b"status-done" in body
    except (requests.RequestException, AttributeError, threading.BrokenBarrierError):
        ok = False
    with lock:
        results.append(ok)


def load_user(base: str, n: int, count: int, latencies: list, errors: list, lock: threading.Lock) -> None:
    """One user of the load test: `count` requests, alternating a JSON generation and the page."""
    http = requests.Session()
    for i in range(count):
        start = time.perf_counter()
        try:
            if i % 2:
                response = http.get(base + "/", timeout=60)
            else:
                response = http.post(base + "/generate_code", data={"prompt": f"load {n} {i}"}, timeout=60)
            ok = response.status_code == 200
        except requests.RequestException:
            ok = False
        elapsed = (time.perf_counter() - start) * 1000
        with lock:
            latencies.append(elapsed)
            if not ok:
                errors.append(i)


def load_test(base: str, users: int, per_user: int) -> tuple:
    """`users` concurrent users, each making `per_user` requests: errors, throughput, p95."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=load_user, args=(base, n, per_user, latencies, errors, lock))
        for n in range(users)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.perf_counter() - start
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 20 else max(latencies, default=0)
    total = users * per_user
    return (
        f"load: {users} concurrent users × {per_user} requests (JSON generation and page, alternating)",
        f"{len(errors)} errors of {total}; {total / elapsed:.0f} requests/s; p95 {p95:.0f} ms",
        "0 errors",
        "met" if not errors and len(latencies) == total else "missed",
    )


def run(samples: int = 30, users: int = 64) -> list[tuple]:
    upstream = FakeUpstream().start()
    rows: list[tuple] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, Gunicorn(upstream.url, tmp) as server:
            http = requests.Session()
            client = openai.OpenAI(api_key=KEY, base_url=upstream.url, max_retries=0)
            app_ttft(http, server.url)
            direct_ttft(client)
            a, d = [], []
            for _ in range(samples):
                d.append(direct_ttft(client))
                a.append(app_ttft(http, server.url))
            overhead = statistics.median(a) - statistics.median(d)
            rows.append(
                (
                    "time to first token, app vs openai client",
                    f"{statistics.median(a):.1f} ms vs {statistics.median(d):.1f} ms: +{overhead:.1f} ms",
                    "overhead ≤ 20 ms",
                    "met" if overhead <= 20 else "missed",
                )
            )

            def direct_json():
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "bench"}])

            def app_json():
                http.post(server.url + "/generate_code", data={"prompt": "bench"}).raise_for_status()

            a, d = [], []
            for _ in range(samples):
                start = time.perf_counter()
                direct_json()
                d.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                app_json()
                a.append((time.perf_counter() - start) * 1000)
            overhead = statistics.median(a) - statistics.median(d)
            rows.append(
                (
                    "POST /generate_code (JSON, non-streaming) p50, app vs openai client",
                    f"{statistics.median(a):.1f} ms vs {statistics.median(d):.1f} ms: +{overhead:.1f} ms",
                    "overhead ≤ 3 ms",
                    "met" if overhead <= 3 else "missed",
                )
            )

            slow = [Reply(chunks=[f"piece {i} " for i in range(20)], chunk_delay=0.1) for _ in range(users)]
            upstream.script("/v1/chat/completions", *slow)
            upstream.streams_peak = 0
            results: list[bool] = []
            lock = threading.Lock()
            ready = threading.Barrier(users)
            threads = [
                threading.Thread(target=one_stream, args=(server.url, n, results, lock, ready))
                for n in range(users)
            ]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            elapsed = time.perf_counter() - start
            errors = users - sum(results)
            load_row = load_test(server.url, users, 10)
            rows.append(
                (
                    f"{users} concurrent streams on the production config (2 workers × 40 threads)",
                    f"{sum(results)} complete, {errors} errors, {upstream.streams_peak} open at once, "
                    f"all done in {elapsed:.1f} s",
                    f"{users} with no errors",
                    "met" if errors == 0 and upstream.streams_peak >= users else "missed",
                )
            )
            rows.append(load_row)
    finally:
        upstream.stop()
    return rows
