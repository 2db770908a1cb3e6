"""gunicorn settings for `make run` (and its alias `make serve`), suited to streamed answers.

Streams hold a connection for the whole answer, so workers are threaded (gthread): each of
WEB_WORKERS processes serves WEB_THREADS requests at once — 2 × 40 by default on a 2-core
machine: 64 concurrent streams with threads to spare for page loads and new prompts. All
workers share one DATA_DIR (locked, atomic history writes).
HOST, PORT and every other setting come from the environment or `.env`, checked here once in
the master: a bad value ends the start with one `Configuration error: …` line (exit status 2)
instead of workers failing to boot.
"""

import os
import sys
from pathlib import Path

from dotenv import dotenv_values

# gunicorn may be started from anywhere with --config; the app package sits next to this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.config import ConfigError
from app.serving import banner, bind_address, exit_with, startup_settings

settings = startup_settings()
_env = {**dotenv_values(".env"), **os.environ}


def _count(name: str, default: int) -> int:
    raw = (_env.get(name) or "").strip() or str(default)
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        exit_with(ConfigError(f"{name} must be a whole number from 1 to 1000, got {raw!r}"))
    return int(raw)


bind = bind_address(settings)
workers = _count("WEB_WORKERS", 2)
worker_class = "gthread"
threads = _count("WEB_THREADS", 40)
# A worker that stops answering its master for this long is restarted (gthread workers keep
# notifying while threads stream, so a long answer does not trip it).
timeout = 120
# On SIGTERM, finish in-flight requests (and their history writes) for up to this long.
graceful_timeout = 30
keepalive = 5
# Limits on request lines and headers; bodies are capped by the app (MAX_CONTENT_LENGTH).
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"
errorlog = "-"
loglevel = settings.log_level.lower()
# Behind a reverse proxy, set FORWARDED_ALLOW_IPS to the proxy's address (see README).
forwarded_allow_ips = _env.get("FORWARDED_ALLOW_IPS") or "127.0.0.1"
wsgi_app = "app:create_app()"
# gunicorn's control socket is one path per user (~/.gunicorn); the app does not use it, and
# several servers (tests, a second instance) must not contend for it.
control_socket_disable = True


def when_ready(server):
    """Once the master listens: the one-line banner (where, which upstream, which data)."""
    print(banner(settings), flush=True)


def on_starting(server):
    """Refuse to listen beyond this machine without APP_PASSWORD, whatever address `-b` gives
    (the app itself only sees HOST): the same rule and message as `make run`."""
    from dataclasses import replace

    from app.config import open_bind_error

    for address in server.cfg.bind:
        if address.startswith(("unix:", "fd://")):
            continue  # a local socket: only this machine can connect
        if address.startswith("["):
            host = address[1 : address.index("]")]
        else:
            host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
        if message := open_bind_error(replace(settings, host=host or "0.0.0.0")):
            # gunicorn prints a RuntimeError from a hook as "Error: …" and exits with status 1.
            raise RuntimeError(message.replace(f"HOST={host}", f"The bind address {address}", 1))


def post_worker_init(worker):
    """Before the worker serves: templates, catalogues and search indexes loaded (see warm_up)."""
    from app.serving import warm_up

    warm_up(worker.wsgi)


def worker_exit(server, worker):
    """On shutdown, let answers still streaming into the history finish before the worker ends."""
    app = getattr(worker, "wsgi", None)
    generator = getattr(app, "extensions", {}).get("generator") if app is not None else None
    if generator is not None:
        left = generator.drain(timeout=graceful_timeout)
        if left:
            server.log.warning("%d answers were still streaming at shutdown", left)
