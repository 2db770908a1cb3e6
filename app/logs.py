"""Logging to DATA_DIR/app.log: rotated, ISO timestamps, a request id, and secrets redacted.

The seed's log events keep their original (German) wording so existing log greps keep working;
see the README's Logging section for each event's meaning.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from pathlib import Path

from concurrent_log_handler import ConcurrentRotatingFileHandler
from flask import Flask, g, has_request_context, request

LOGGER_NAME = "app"
log = logging.getLogger(LOGGER_NAME)

# Anything shaped like an OpenAI-style key, even one we were not configured with.
_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,})")


# The id of the request being served; a context variable so work the request hands to a
# background thread (a streamed answer) logs under the same id.
request_id: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record: the current request's id, or '-' outside requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else request_id.get()
        return True


class RedactingFilter(logging.Filter):
    """Replaces configured secrets and key-shaped strings in the final message with '[REDACTED]'."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        return _KEY_PATTERN.sub("[REDACTED]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


# Control characters other than tab: C0 (ESC starts the ANSI sequences that recolour, move or
# clear a terminal showing the log), DEL, C1, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """`text` with line breaks as \\n / \\r and other control characters as \\xNN / \\uNNNN."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


class IsoFormatter(logging.Formatter):
    """`2026-11-27T06:16:25.123+00:00 INFO [request-id] logger: message`, one line per record.

    Line breaks (in upstream error texts, tracebacks) and other control characters (ANSI escape
    sequences) are escaped, so every line of app.log starts with a timestamp and nothing an
    upstream sends can forge a log line or take over the terminal that shows it.
    """

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        from datetime import datetime

        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def configure_logging(app: Flask, data_dir: Path, level: str, secrets: tuple[str, ...]) -> None:
    """Attach the rotating file handler (and a console handler) to the app's loggers, once per app."""
    # The handler opens the file only at the first record; create it now, so app.log is where
    # the README says from the start, even before anything is logged.
    (data_dir / "app.log").touch(exist_ok=True)
    # Several gunicorn workers write this file: rotation takes a lock so none loses lines.
    handler = ConcurrentRotatingFileHandler(
        str(data_dir / "app.log"), maxBytes=2_000_000, backupCount=5, encoding="utf-8"
    )
    console = logging.StreamHandler()
    for h in (handler, console):
        h.setFormatter(IsoFormatter(FORMAT))
        h.addFilter(RequestIdFilter())
        h.addFilter(RedactingFilter(secrets))
    # Replace handlers from an earlier app instance in this process (tests build many apps).
    for name in (LOGGER_NAME, "openai", "httpx"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if getattr(old, "_app_handler", False):
                logger.removeHandler(old)
                old.close()
    handler._app_handler = True  # type: ignore[attr-defined]
    console._app_handler = True  # type: ignore[attr-defined]
    log.setLevel(level)
    log.addHandler(handler)
    log.addHandler(console)
    log.propagate = False
    # The openai client logs request details at DEBUG; keep it quiet and redacted.
    openai_logger = logging.getLogger("openai")
    openai_logger.setLevel(logging.WARNING)
    openai_logger.addHandler(handler)
    app.logger.handlers[:] = [handler, console]
    app.logger.setLevel(level)

    @app.before_request
    def assign_request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", incoming) else uuid.uuid4().hex[:12]
        request_id.set(g.request_id)

    @app.after_request
    def echo_request_id(response):
        if request.endpoint != "static":  # static files stay lean; their requests are not logged
            response.headers["X-Request-Id"] = g.get("request_id", "-")
        return response
