"""`python -m bench`: measure the app's overhead on the JSON path and write bench/RESULTS.md.

Everything runs on 127.0.0.1: the local OpenAI-compatible server from tests/support/upstream.py plays
the upstream, the app runs in a real threaded WSGI server on a temporary DATA_DIR. Each figure
is a ratio against a baseline measured in the same run (machines are noisy); baseline and app
are measured in alternating rounds so drift hits both alike.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import openai
import requests
from werkzeug.serving import make_server

from app import create_app
from bench import engine_bench, history_bench, image_bench, shared_bench, stream_bench
from tests.support.upstream import FakeUpstream

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
KEY = "sk-bench-not-a-real-key-000000000000"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Run `fn` n times; return each duration in milliseconds."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def alternate(base: Callable[[], object], subject: Callable[[], object], rounds: int, per_round: int):
    """Interleave baseline and subject batches; return both sample lists."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a += timed(base, per_round)
        b += timed(subject, per_round)
    return a, b


def row(name: str, baseline: str, base: list[float], subject: list[float]) -> tuple[str, ...]:
    bm, sm = statistics.median(base), statistics.median(subject)
    return (name, baseline, f"{bm:.2f}", f"{sm:.2f}", f"{sm / bm:.2f}×", f"{sm - bm:+.2f}")


def markdown_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(str(c) for c in r) + " |" for r in rows),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=40)
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the table")
    parser.add_argument("--users", type=int, default=64, help="concurrent streaming users")
    parser.add_argument(
        "--history-sizes",
        type=int,
        nargs=2,
        default=(1_000, 100_000),
        metavar=("SMALL", "LARGE"),
        help="history sizes for the scale figures (default 1000 100000)",
    )
    parser.add_argument(
        "--pg-entries",
        type=int,
        default=None,
        help="entries in the PostgreSQL history of the shared-backend figures "
        "(default 10 × LARGE: 1000000 with the default history sizes)",
    )
    parser.add_argument(
        "--busy-day",
        type=int,
        default=engine_bench.BUSY_DAY,
        help="entries already in today for the busy-day figures",
    )
    parser.add_argument(
        "--history-days",
        type=int,
        default=history_bench.DAYS,
        help=f"days the generated TinyDB histories span (default {history_bench.DAYS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (the test suite's): few requests, one fresh server, no LiteLLM, each image "
        "format once; no real figures",
    )
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    upstream = FakeUpstream().start()
    upstream.image_mode = "b64"
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "data_dir": Path(tmp),
                "openai_api_key": KEY,
                "openai_base_url": upstream.url,
                "rate_limit": "100000 per minute",
                "log_level": "WARNING",
            }
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base_url = f"http://127.0.0.1:{server.server_port}"
        direct = openai.OpenAI(api_key=KEY, base_url=upstream.url, max_retries=0)
        http = requests.Session()

        def direct_chat():
            direct.chat.completions.create(model="m", messages=[{"role": "user", "content": "bench"}])

        def app_chat():
            r = http.post(base_url + "/generate_code", data={"prompt": "bench"})
            r.raise_for_status()

        def direct_image():
            direct.images.generate(model="m", prompt="bench", size="1024x1024", n=1)

        def app_image():
            r = http.post(base_url + "/generate_image", data={"prompt": "bench"})
            r.raise_for_status()

        def app_page():
            http.get(base_url + "/").raise_for_status()

        def healthz():
            http.get(base_url + "/healthz").raise_for_status()

        for fn in (direct_chat, app_chat, direct_image, app_image):  # warm up connections and caches
            fn()
        rows = [
            row(
                "POST /generate_code (JSON)",
                "openai client → same server",
                *alternate(direct_chat, app_chat, args.rounds, args.per_round),
            ),
            row(
                "POST /generate_image (JSON, b64 PNG)",
                "openai client → same server",
                *alternate(direct_image, app_image, args.rounds, args.per_round // 2),
            ),
            row(
                f"GET / ({app.extensions['chatlog'].count()} entries)",
                "GET /healthz",
                *alternate(healthz, app_page, args.rounds, args.per_round),
            ),
        ]
        server.shutdown()
        server.server_close()
    upstream.stop()

    table = markdown_table(
        ("figure", "baseline", "baseline ms (median)", "app ms (median)", "ratio", "overhead ms"), rows
    )
    print(table)
    columns = ("figure", "measured", "goal", "verdict")
    scale = markdown_table(
        ("figure", "measured", "goal", "verdict"),
        history_bench.run(tuple(args.history_sizes), days=args.history_days),
    )
    print(scale)
    shared = markdown_table(
        columns,
        shared_bench.run(
            pg_entries=args.pg_entries if args.pg_entries is not None else 10 * args.history_sizes[1],
            tinydb_entries=args.history_sizes[1],
            days=args.history_days,
            **({"rounds": 2, "searches": 3, "clients": 4, "requests_total": 32} if args.quick else {}),
        ),
    )
    print(shared)
    engine = markdown_table(
        columns,
        engine_bench.run(
            history_size=args.history_sizes[1],
            users=args.users,
            busy=args.busy_day,
            quick=args.quick,
            days=args.history_days,
        ),
    )
    print(engine)
    streaming = markdown_table(
        columns, stream_bench.run(samples=args.per_round, users=args.users, proxy=not args.quick)
    )
    print(streaming)
    images = markdown_table(columns, image_bench.run(samples=1 if args.quick else 9))
    print(images)
    args.output.write_text(
        "# Benchmark results\n\n"
        f"Written by `make bench` on {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
        f"Python {platform.python_version()}, {platform.machine()}, "
        f"{args.rounds} alternating rounds × {args.per_round} requests.\n\n"
        "Each figure is the median time of one request through the app, against a baseline measured "
        "in the same run on the same loopback upstream. The app's overhead includes the durable "
        "history writes (the prompt before the upstream call, the answer after it, each fsynced) "
        "and, for images, Pillow validation, metadata stripping and the thumbnail.\n\n" + table + "\n\n"
        "## History at scale\n\n" + (history_bench.__doc__ or "").split("\n\n", 1)[1] + "\n" + scale + "\n\n"
        "## The history engine on a bad day\n\n"
        + (engine_bench.__doc__ or "").split("\n\n", 1)[1]
        + "\n"
        + engine
        + "\n\n"
        "## Shared backends (PostgreSQL)\n\n"
        + (shared_bench.__doc__ or "").split("\n\n", 1)[1]
        + "\n"
        + shared
        + "\n\n"
        "## Streaming and the production server\n\n"
        + (stream_bench.__doc__ or "").split("\n\n", 1)[1]
        + "\n"
        + streaming
        + "\n\n## Images\n\n"
        + (image_bench.__doc__ or "").split("\n\n", 1)[1]
        + "\n"
        + images
        + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
