"""Starting a server (`make run`, `make dev`): settings checked before it binds, and its banner.

A bad setting ends the start with one clear line, `Configuration error: …`, and exit status 2,
before any server (or gunicorn worker) starts, so a typo never turns into a traceback loop.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, NoReturn

from .config import ConfigError, Settings, check_startup, load_settings


def exit_with(error: ConfigError) -> NoReturn:
    """Print the configuration error as one line on stderr and end the process with status 2."""
    print(f"Configuration error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def startup_settings() -> Settings:
    """The settings from the environment and `.env`, checked and DATA_DIR created; on a bad value
    the process ends via :func:`exit_with`."""
    try:
        settings = load_settings()
        check_startup(settings)
    except ConfigError as e:
        exit_with(e)
    return settings


def bind_address(settings: Settings) -> str:
    """HOST:PORT as a server binds it (an IPv6 address in brackets)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{host}:{settings.port}"


def banner(settings: Settings) -> str:
    """The one line a server prints once it listens: where, which upstream, which data."""
    mode = (
        "demo mode (no OPENAI_API_KEY)"
        if settings.demo
        else f"upstream {settings.openai_base_url or 'api.openai.com'}"
    )
    return f"Serving on http://{bind_address(settings)} — {mode}, data in {settings.data_dir}"


WARM_QUERY = "warm-up probe"  # a search that reads every day's index and matches nothing


def warm_up(app: Any) -> None:
    """Before a gunicorn worker takes its first request: compile the page templates, load both
    languages' catalogues, compress the page shell's assets and read the history's search
    indexes, by asking the app itself for its main page, its assets and a search in each
    language. The first visitor (and the first search of a freshly started server) then pays for
    none of it. Never stops the worker from starting."""
    from .assets import SHELL_ASSETS

    try:
        client = app.test_client()
        for asset in SHELL_ASSETS:
            client.get(f"/static/{asset}", headers={"Accept-Encoding": "br"})
        for language in ("en", "de"):
            client.get("/", headers={"Accept-Language": language})
            client.get("/chatlog", query_string={"q": WARM_QUERY}, headers={"Accept-Language": language})
            client.get("/chatlog", query_string={"q": WARM_QUERY}, headers={"HX-Request": "true"})
    except Exception:  # a warm-up failure only costs the first request its speed
        logging.getLogger("app.serving").warning("Warming up the worker failed", exc_info=True)
