"""The request plumbing every view shares: the app's services, reading fields, the htmx/JSON
choice, error responses and handlers, and Server-Sent Events framing.

Content negotiation: `HX-Request: true` gets HTML fragments; every other client gets the seed's
JSON from the POST routes and full pages (or JSON when it asks for it) from the GET routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    stream_with_context,
)
from flask_htmx import HTMX
from werkzeug.exceptions import HTTPException

from ..config import Settings
from ..generation import HISTORY_DOWN, DailyCapReached, Generator, PromptError
from ..history import Entry, HistoryStore, HistoryUnavailable, Page
from ..i18n import N_
from ..images import ImageStore, ImageStoreUnavailable, inputs
from ..security import limit_retry_after

htmx = HTMX()


# -- the app's services ----------------------------------------------------------------------


def history() -> HistoryStore:
    return current_app.extensions["chatlog"]


def images() -> ImageStore:
    return current_app.extensions["images"]


def generator() -> Generator:
    return current_app.extensions["generator"]


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def sidebar_page() -> Page:
    """The newest entries, for History beside a page or a generated answer."""
    return history().page(settings().history_sidebar_limit)


def live_entry(date: str, index: int) -> Entry:
    """The entry at a permalink; 404 when there is none, or it was deleted."""
    entry = history().get(date, index)
    if entry is None or entry.deleted:
        abort(404, description=N_("There is no history entry %(index)s on %(date)s.", index=index, date=date))
    return entry


# -- reading requests ------------------------------------------------------------------------


def wants_json() -> bool:
    """For GET routes: True when a non-htmx client prefers JSON over HTML."""
    if htmx:
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def read_field(name: str) -> object:
    """A field from the form or a JSON body (the seed's jQuery client sends a form)."""
    if request.is_json:
        body = request.get_json(silent=True)
        return body.get(name) if isinstance(body, dict) else None
    return request.form.get(name)


def uploaded_image() -> object | None:
    """The file of the multipart field `image`, if one was chosen (browsers send an empty part
    for a file input left empty)."""
    upload = request.files.get("image")
    return upload.stream if upload is not None and upload.filename else None


def allow_picture() -> None:
    """Let the body hold an attached picture (20 MB, as base64 in a JSON body) beside the
    prompt; a body without one keeps the app's cap (MAX_CONTENT_LENGTH), or it is a 413."""
    request.max_content_length = inputs.MAX_REQUEST_BYTES
    size = request.content_length
    if size is None:  # a chunked body: read it (within the larger cap) to know its size
        size = len(request.get_data(cache=True))
    if (
        size > current_app.config["MAX_CONTENT_LENGTH"]
        and uploaded_image() is None
        and read_field("image") in (None, "")
    ):
        abort(413)


# -- answering -------------------------------------------------------------------------------


def htmx_or_json(
    fragment: Callable[[], str], payload: Callable[[], Any], *, trigger: str | None = None
) -> Response:
    """The one htmx/JSON choice: for htmx the HTML `fragment()` renders (with
    `HX-Trigger: trigger`), for every other client `payload()` as JSON. Only the one asked for
    is made."""
    if htmx:
        headers = {"HX-Trigger": trigger} if trigger else {}
        return make_response(fragment(), 200, headers)
    return jsonify(payload())


def error_response(status: int, message: str, title: str) -> Response:
    """An error as JSON for API clients, a fragment for htmx, or a full page for browsers.

    htmx gets its error fragment with status 200 (the status in `X-Error-Status`): the alert
    is shown in place and the browser logs no failed request.
    """
    if (request.method != "GET" and not htmx) or wants_json():
        return make_response(jsonify(error=message), status)
    if htmx:
        body = render_template("partials/_error.html", message=message)
        return make_response(body, 200, {"X-Error-Status": str(status)})
    return make_response(render_template("error.html", status=status, title=title, message=message), status)


def unavailable(message: str) -> Response:
    """503 for a store that cannot be reached; each write is one transaction, so nothing is
    half-written, and the form keeps the prompt."""
    response = error_response(503, message, N_("Service Unavailable"))
    response.headers["Retry-After"] = "5"
    return response


def refused(error: PromptError | DailyCapReached) -> Response:
    """A generate request that was not answered (nothing stored): its status and message; for
    htmx a visible alert, the prompt and picture staying in the form."""
    return error_response(error.status, error.message, N_("Not generated"))


def http_error(error: HTTPException) -> Response:
    """Every HTTP error (404, 405, 410, 413, 429 …) in the shape the client reads."""
    status = error.code or 500
    message = error.description or error.name
    if status == 413:
        message = N_("The request is too large.")
    elif status == 429:
        wait = limit_retry_after()
        message = (
            N_(
                "Too many requests (the limit is %(limit)s). Please try again in %(seconds)s seconds.",
                limit=error.description,
                seconds=wait,
            )
            if wait
            else N_(
                "Too many requests (the limit is %(limit)s). Please try again in a moment.",
                limit=error.description,
            )
        )
        response = error_response(status, message, error.name)
        if wait:
            response.headers["Retry-After"] = str(wait)
        return response
    elif status == 405:
        message = N_("%(method)s is not allowed here.", method=request.method)
    return error_response(status, message, error.name)


def vary_on_htmx(response: Response) -> Response:
    """Every response may differ by HX-Request (fragment vs page/JSON); caches must know."""
    if request.endpoint == "static":
        return response
    response.vary.add("HX-Request")
    if request.path != "/" and not request.path.startswith("/static/"):
        response.vary.add("Accept")
    # Pages and answers change with every generation and hold the user's history: never let a
    # browser's back button show a stale copy, nor keep one on disk. The one exception: a full
    # page the service worker asks for (X-Offline-Copy) to keep for offline reading is
    # `private, no-cache`; it never keeps anything `no-store` (fragments, JSON, exports, errors).
    if "Cache-Control" not in response.headers and not request.path.startswith("/static/"):
        keep = (
            request.headers.get("X-Offline-Copy") == "1"
            and response.status_code == 200
            and response.mimetype == "text/html"
            and not htmx
        )
        response.headers["Cache-Control"] = "private, no-cache" if keep else "no-store"
        response.vary.add("X-Offline-Copy")
    return response


# -- Server-Sent Events ----------------------------------------------------------------------


def sse_event(event: str, html: str) -> str:
    """One Server-Sent Event whose data lines carry an HTML fragment."""
    # Browsers end an SSE line at \r\n, \r or \n: split on all three, so no text can start
    # a line of its own (and so forge an event) inside a data field.
    lines = re.split(r"\r\n|\r|\n", html)
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def event_stream(events: Iterator[str]) -> Response:
    """A response streaming `events` as they come: never stored, compressed or buffered."""
    response = Response(stream_with_context(events), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def init_app(app: Flask) -> None:
    """The plumbing's app-wide parts: htmx, the error handlers and the Vary/Cache-Control hook."""
    htmx.init_app(app)
    app.after_request(vary_on_htmx)
    app.register_error_handler(HistoryUnavailable, lambda error: unavailable(HISTORY_DOWN))
    app.register_error_handler(
        ImageStoreUnavailable,
        lambda error: unavailable(
            N_("The image store cannot be reached right now. Please try again in a moment.")
        ),
    )
    app.register_error_handler(PromptError, refused)
    app.register_error_handler(DailyCapReached, refused)
    app.register_error_handler(HTTPException, http_error)
