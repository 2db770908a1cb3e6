"""History at scale: histories of 1,000 and 100,000 entries over 365 days, built by the benchmark.

Figures: append p50 ratio 100k/1k, `GET /` median at 100k, search at 100k for a rare word, a
word in every entry, two words, a phrase and a word with filters (`GET /chatlog?q=` as htmx, each
on a freshly started app once `/healthz` answers: its first search, then the warm median),
import of 100k entries.
Appends go to today's file, which starts empty in both histories (the generated days end
yesterday): the figure shows how an append's cost depends on the size of the whole history, not
on the size of its day.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import requests
from werkzeug.serving import make_server

from app import create_app
from app.history import ChatLog

WORDS = tuple(
    "python function list sort file read write json parse http request server client test error "
    "value class method string number date time loop async image colour light tree river city "
    "table query index cache queue thread lock retry backoff token model answer prompt history".split()
)
RARE = "zebracorn"  # appears in a handful of entries, so a search scans the whole history
# What the search figures ask for (label, query), on both engines.
SEARCHES = (
    ("rare word", RARE),
    ("word in every entry", "python"),
    ("two words", "json retry"),
    ("phrase", '"sort file"'),
    ("word and filters", "cache kind:code after:2000-01-01 before:2999-01-01"),
)


DAYS = 365  # the days a generated history spans (`make bench --history-days`)


def make_history(n_entries: int, days: int = DAYS, seed: int = 7) -> dict[str, list[dict[str, str]]]:
    """A seed-format history of `n_entries` spread over the `days` days before today."""
    rng = random.Random(seed)
    today = date.today()
    dates = [(today - timedelta(days=d)).isoformat() for d in range(days, 0, -1)]
    data: dict[str, list[dict[str, str]]] = {d: [] for d in dates}
    for i in range(n_entries):
        words = rng.choices(WORDS, k=12)
        if i % 20_000 == 3:
            words.append(RARE)
        prompt = f"{i}: " + " ".join(words)
        body = "\n".join(" ".join(rng.choices(WORDS, k=10)) for _ in range(8))
        response = f"Here is the answer to {i}.\n\n```python\n{body}\n```\n"
        data[dates[i * days // n_entries]].append({"prompt": prompt, "response": response})
    return data


def search_rows(directory: Path, size: int, requests_n: int) -> list[tuple]:
    """Each of SEARCHES on a freshly started app: its first search, then the warm median."""
    rows: list[tuple] = []
    for label, query in SEARCHES:
        app = create_app({"data_dir": directory, "log_level": "WARNING"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/chatlog"
        http = requests.Session()

        def search(query: str = query, url: str = url, http: requests.Session = http) -> None:
            r = http.get(url, params={"q": query}, headers={"HX-Request": "true"})
            r.raise_for_status()
            assert "<mark>" in r.text, query

        try:
            http.get(url.replace("/chatlog", "/healthz")).raise_for_status()  # up: it serves
            first = ms(search, 1)[0]
            warm = statistics.median(ms(search, max(5, requests_n // 3)))
        finally:
            server.shutdown()
            server.server_close()
        rows.append(
            (
                f"search median at {size:,} entries, {label} (`{query}`)",
                f"{first:.0f} ms first search of a fresh server; {warm:.1f} ms warm",
                "first ≤ 150 ms, warm ≤ 50 ms",
                "met" if first <= 150 and warm <= 50 else "missed",
            )
        )
    return rows


def ms(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def run(
    sizes: tuple[int, int] = (1_000, 100_000), appends: int = 60, requests_n: int = 30, days: int = DAYS
) -> list[tuple]:
    """Measure both histories; returns table rows (figure, value, goal, verdict)."""
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as small_dir, tempfile.TemporaryDirectory() as big_dir:
        logs: dict[int, ChatLog] = {}
        import_seconds: dict[int, float] = {}
        for size, directory in zip(sizes, (small_dir, big_dir), strict=True):
            data = make_history(size, days)
            log = ChatLog(Path(directory))
            start = time.perf_counter()
            added, _ = log.import_seed(data)
            import_seconds[size] = time.perf_counter() - start
            assert added == size, (added, size)
            logs[size] = ChatLog(Path(directory))  # a fresh process's view: empty cache

        def append(log: ChatLog) -> None:
            entry = log.begin("code", "benchmark prompt", "bench")
            log.finish(entry, "benchmark answer")

        small, big = logs[sizes[0]], logs[sizes[1]]
        a: list[float] = []
        b: list[float] = []
        for _ in range(appends // 10):  # alternate so drift hits both alike
            a += ms(lambda: append(small), 10)
            b += ms(lambda: append(big), 10)
        ratio = statistics.median(b) / statistics.median(a)
        rows.append(
            (
                f"append (begin + finish) p50, {sizes[1]:,} vs {sizes[0]:,}",
                f"{statistics.median(b):.2f} ms vs {statistics.median(a):.2f} ms = {ratio:.2f}×",
                "≤ 1.5×",
                "met" if ratio <= 1.5 else "missed",
            )
        )

        app = create_app({"data_dir": Path(big_dir), "log_level": "WARNING"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        http = requests.Session()
        try:
            first_page = ms(lambda: http.get(base + "/").raise_for_status(), 1)[0]
            page = statistics.median(ms(lambda: http.get(base + "/").raise_for_status(), requests_n))
            rows.append(
                (
                    f"GET / median at {sizes[1]:,} entries",
                    f"{page:.1f} ms (first request of the process: {first_page:.1f} ms)",
                    "≤ 50 ms",
                    "met" if page <= 50 else "missed",
                )
            )

        finally:
            server.shutdown()
            server.server_close()
        rows += search_rows(Path(big_dir), sizes[1], requests_n)
        rows.append(
            (
                f"import of {sizes[1]:,} entries (seed format, {days} days)",
                f"{import_seconds[sizes[1]]:.1f} s "
                f"({import_seconds[sizes[0]] * 1000:.0f} ms for {sizes[0]:,})",
                "time",
                "measured",
            )
        )
    return rows
