"""Routes: parse the request, call one service, render one template or return the seed's JSON.

Content negotiation: `HX-Request: true` gets HTML fragments; every other client gets the seed's
JSON from the POST routes and full pages (or JSON when it asks for it) from the GET routes.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    make_response,
    render_template,
    request,
    send_file,
)
from flask_htmx import HTMX
from werkzeug.exceptions import HTTPException

from .generation import GenerationFailed, Generator, PromptError, clean_prompt
from .history import ChatLog, Entry, HistoryCorrupt

bp = Blueprint("web", __name__)
htmx = HTMX()
log = logging.getLogger("app.web")


def _generator() -> Generator:
    return current_app.extensions["generator"]


def _chatlog() -> ChatLog:
    return current_app.extensions["chatlog"]


def wants_json() -> bool:
    """For GET routes: True when a non-htmx client prefers JSON over HTML."""
    if htmx:
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def read_prompt() -> object:
    """The `prompt` from a form field or a JSON body (the seed's jQuery client sends a form)."""
    if request.is_json:
        body = request.get_json(silent=True)
        return body.get("prompt") if isinstance(body, dict) else None
    return request.form.get("prompt")


def _sidebar_days() -> list:
    return _chatlog().days(limit=current_app.config["SETTINGS"].history_sidebar_limit)


def _generated(kind: str) -> Response:
    """Shared body of the two generate routes; `kind` is "code" or "image".

    htmx gets every outcome as a 200 fragment (an error is a visible alert in Results), so the
    browser logs no failed request; only a stored answer carries `HX-Trigger: generated`, which
    is what clears the prompt box. Every other client gets the seed's JSON and status codes.
    """
    settings = current_app.config["SETTINGS"]
    generator = _generator()
    try:
        prompt = clean_prompt(read_prompt(), settings.max_prompt_chars)
    except PromptError as e:
        if htmx:
            return make_response(render_template("partials/_error.html", message=e.message))
        return make_response(jsonify(error=e.message), 400)
    run = generator.generate_code if kind == "code" else generator.generate_image
    try:
        entry = run(prompt)
    except GenerationFailed as failed:
        headers = {}
        if failed.error.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(failed.error.retry_after))
        if htmx:
            body = render_template(
                "partials/_generate_response.html", entry=failed.entry, days=_sidebar_days()
            )
            return make_response(body, 200, headers)
        payload = {
            "error": failed.error.message,
            "entry": failed.entry.permalink,
            "demo": generator.provider.demo,
        }
        return make_response(jsonify(payload), failed.error.status, headers)
    if htmx:
        body = render_template("partials/_generate_response.html", entry=entry, days=_sidebar_days())
        return make_response(body, 200, {"HX-Trigger": "generated"})
    field = "code" if kind == "code" else "image_url"
    return jsonify(
        {
            field: entry.response,
            "entry": entry.permalink,
            "model": entry.model,
            "demo": generator.provider.demo,
        }
    )


@bp.get("/")
def index() -> str:
    return render_template("index.html", days=_sidebar_days())


@bp.post("/generate_code")
def generate_code():
    return _generated("code")


@bp.post("/generate_image")
def generate_image():
    return _generated("image")


@bp.get("/chatlog")
def chatlog():
    if wants_json():
        return jsonify(_chatlog().export_seed())
    days = _chatlog().days()
    if htmx:
        return render_template("partials/_history_days.html", days=days)
    return render_template("chatlog.html", days=days)


@bp.get("/chatlog.json")
def chatlog_json():
    return jsonify(_chatlog().export_seed())


def entry_json(entry: Entry) -> dict[str, Any]:
    """An entry as JSON for API clients: the seed's fields plus the app's metadata."""
    data = {
        "id": entry.id,
        "date": entry.date,
        "index": entry.index,
        "entry": entry.permalink,
        "created_at": entry.created_at,
        "kind": entry.kind,
        "prompt": entry.prompt,
        "response": entry.response,
        "model": entry.model,
        "status": entry.status,
    }
    if entry.kind == "image":
        data["image_url"] = entry.image_url
    if entry.error:
        data["error"] = entry.error
    return data


@bp.get("/chatlog/<date>/<int:index>")
def view_entry(date: str, index: int):
    entry = _chatlog().get(date, index)
    if entry is None:
        abort(404, description=f"There is no history entry {index} on {date}.")
    if entry.deleted:
        abort(410, description="This history entry was deleted.")
    if wants_json():
        return jsonify(entry_json(entry))
    if htmx:
        return render_template("partials/_entry.html", entry=entry)
    return render_template("entry.html", entry=entry)


@bp.get("/images/<name>")
def image_file(name: str):
    path = current_app.extensions["images"].path(name)
    if path is None:
        abort(404, description="There is no such image.")
    # Names are unique per entry and never rewritten, so the file can be cached for ever.
    response = send_file(path, mimetype="image/png", max_age=31_536_000, conditional=True)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok", demo=_generator().provider.demo)


@bp.after_app_request
def vary_on_htmx(response: Response) -> Response:
    """Every response may differ by HX-Request (fragment vs page/JSON); caches must know."""
    response.vary.add("HX-Request")
    if request.path != "/" and not request.path.startswith("/static/"):
        response.vary.add("Accept")
    # Pages and answers change with every generation and hold the user's history: never let a
    # browser's back button show a stale copy, nor keep one on disk.
    if "Cache-Control" not in response.headers and not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def error_response(status: int, message: str, title: str):
    """An error as JSON for API clients, a fragment for htmx, or a full page for browsers."""
    if (request.method != "GET" and not htmx) or wants_json():
        return jsonify(error=message), status
    if htmx:
        return render_template("partials/_error.html", message=message), status
    return render_template("error.html", status=status, title=title, message=message), status


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
    status = error.code or 500
    message = error.description or error.name
    if status == 413:
        message = "The request is too large."
    elif status == 405:
        message = f"{request.method} is not allowed here."
    return error_response(status, message, error.name)


@bp.app_errorhandler(HistoryCorrupt)
def history_corrupt(error: HistoryCorrupt):
    log.error("%s", error)
    message = (
        "The history file is damaged and was left untouched; see app.log. "
        "New entries cannot be saved until it is repaired."
    )
    return error_response(500, message, "History unavailable")
