"""The app's own cost on the request path, and streaming on `make run`'s server.

The app runs under gunicorn with the committed gunicorn.conf.py (as `make run` starts it), on
the local upstream. The JSON path (`POST /generate_code`) and the time to first token (TTFT)
through the htmx path — the POST that stores the prompt, then the event stream up to its first
token — are compared with the `openai` client talking to the same upstream directly, and with
the LiteLLM proxy (bench/litellm, its own venv) in front of it: a sample of each of the three,
back to back, 30 times; the overhead is the median's difference. Then 64 users each stream an
answer at once: every user sends a prompt, then all open their streams together (the upstream
sends 20 chunks, 100 ms apart, so every stream is open at the same time).
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import openai
import requests

from bench.servers import KEY, ROOT, Server, spawn
from tests.support.ports import free_port
from tests.support.upstream import FakeUpstream, Reply

HX = {"HX-Request": "true"}


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


class LiteLLM:
    """LiteLLM's proxy (bench/litellm/.venv, installed by `make bench`) in front of the same
    upstream, on a free port: the reference for what a proxy's hop costs."""

    BIN = ROOT / "bench" / "litellm" / ".venv" / "bin" / "litellm"

    def __init__(self, upstream_url: str, work: Path) -> None:
        self.port = free_port()
        config = work / "litellm.yaml"
        config.write_text(
            "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/m\n"
            f"      api_base: {upstream_url}\n      api_key: {KEY}\n",
            encoding="utf-8",
        )
        # Offline: the model price list is the packaged one, and nothing is reported home.
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
        command = [str(self.BIN), "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = spawn(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiteLLM:
        for _ in range(600):  # up to 60 s: the proxy imports a great deal
            try:
                if requests.get(self.url + "/health/liveliness", timeout=2).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("LiteLLM did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def json_ms(call) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def overheads(http: requests.Session, base: str, direct: openai.OpenAI, proxy: openai.OpenAI | None, n: int):
    """Medians (ms) of the JSON path and of the time to first token: direct, app, LiteLLM, each
    sample of the three taken back to back so the machine's drift hits all alike."""
    messages = [{"role": "user", "content": "bench"}]
    json = {"direct": [], "app": [], "litellm": []}
    ttft = {"direct": [], "app": [], "litellm": []}
    for _ in range(n):
        json["direct"].append(json_ms(lambda: direct.chat.completions.create(model="m", messages=messages)))
        json["app"].append(json_ms(lambda: http.post(base + "/generate_code", data={"prompt": "bench"})))
        ttft["direct"].append(direct_ttft(direct))
        ttft["app"].append(app_ttft(http, base))
        if proxy is not None:
            json["litellm"].append(
                json_ms(lambda: proxy.chat.completions.create(model="m", messages=messages))
            )
            ttft["litellm"].append(direct_ttft(proxy))
    median = {k: statistics.median(v) if v else float("nan") for k, v in json.items()}
    first = {k: statistics.median(v) if v else float("nan") for k, v in ttft.items()}
    return median, first


def overhead_rows(upstream: FakeUpstream, server_url: str, samples: int, proxy_too: bool) -> list[tuple]:
    http = requests.Session()
    direct = openai.OpenAI(api_key=KEY, base_url=upstream.url, max_retries=0)
    with tempfile.TemporaryDirectory() as work, contextlib.ExitStack() as stack:
        proxy = None
        if proxy_too and LiteLLM.BIN.exists():
            litellm = stack.enter_context(LiteLLM(upstream.url, Path(work)))
            proxy = openai.OpenAI(api_key=KEY, base_url=litellm.url, max_retries=0)
        overheads(http, server_url, direct, proxy, 5)  # warm up every path
        json, first = overheads(http, server_url, direct, proxy, samples)
    app_json, app_ttft_ = json["app"] - json["direct"], first["app"] - first["direct"]
    proxy_json, proxy_ttft = json["litellm"] - json["direct"], first["litellm"] - first["direct"]
    measured = proxy is not None
    no_proxy = "not measured: run `make bench` (it installs bench/litellm/.venv)"
    return [
        (
            "POST /generate_code (JSON) overhead vs the openai client direct, p50",
            f"{json['app']:.1f} ms vs {json['direct']:.1f} ms: {app_json:+.1f} ms",
            "≤ 3 ms",
            "met" if app_json <= 3 else "missed",
        ),
        (
            "same, as a ratio of the LiteLLM proxy's overhead measured beside it",
            f"{app_json:+.1f} ms / {proxy_json:+.1f} ms (LiteLLM {json['litellm']:.1f} ms) = "
            f"{app_json / proxy_json:.2f}×"
            if measured
            else no_proxy,
            "≤ 0.3×",
            ("met" if app_json / proxy_json <= 0.3 else "missed") if measured else "not measured",
        ),
        (
            "time to first token through the htmx + SSE path, overhead vs the openai client",
            f"{first['app']:.1f} ms vs {first['direct']:.1f} ms: {app_ttft_:+.1f} ms"
            + (f"; LiteLLM {first['litellm']:.1f} ms: {proxy_ttft:+.1f} ms" if measured else ""),
            "≤ 5 ms, below LiteLLM's",
            "met" if app_ttft_ <= 5 and (not measured or app_ttft_ < proxy_ttft) else "missed",
        ),
    ]


def run(samples: int = 30, users: int = 64, proxy: bool = True) -> list[tuple]:
    upstream = FakeUpstream().start()
    rows: list[tuple] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, Server(Path(tmp), upstream.url) as server:
            rows += overhead_rows(upstream, server.url, samples, proxy)
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
            rows.append(
                (
                    f"{users} concurrent streams on the production config (2 workers × 40 threads)",
                    f"{sum(results)} complete, {errors} errors, {upstream.streams_peak} open at once, "
                    f"all done in {elapsed:.1f} s",
                    f"{users} with no errors",
                    "met" if errors == 0 and upstream.streams_peak >= users else "missed",
                )
            )
    finally:
        upstream.stop()
    return rows
