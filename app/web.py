"""Routes: parse the request, call one service, render one template or return the seed's JSON.

Content negotiation: `HX-Request: true` gets HTML fragments; every other client gets the seed's
JSON from the POST routes and full pages (or JSON when it asks for it) from the GET routes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    get_template_attribute,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
)
from flask_htmx import HTMX
from markupsafe import escape
from werkzeug.exceptions import HTTPException

from . import asks, image_options, input_images
from .generation import DailyCapReached, GenerationFailed, Generator, PromptError
from .history import Entry, HistoryStore, HistoryUnavailable, Page, Permalink, is_date
from .history.query import QueryError, parse_query
from .i18n import N_
from .images import ImageStoreUnavailable
from .importing import import_chatlog as import_chatlog_text
from .messages import message_of
from .rendering import code_blocks
from .security import limit_retry_after
from .snippets import Marker, hits

HISTORY_DOWN = N_("The history database cannot be reached right now. Please try again in a moment.")
PAGE_LIMIT = 200  # entries per page of the full history page
GALLERY_PAGE = 48
IMPORT_MAX_BYTES = 256 * 1024 * 1024  # a chatlog.json of many years
SEARCH_LIMIT = 100

bp = Blueprint("web", __name__)
htmx = HTMX()
log = logging.getLogger("app.web")


def _generator() -> Generator:
    return current_app.extensions["generator"]


def _chatlog() -> HistoryStore:
    return current_app.extensions["chatlog"]


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


def _sidebar_page() -> Page:
    return _chatlog().page(current_app.config["SETTINGS"].history_sidebar_limit)


def _upload() -> object | None:
    """The file of the multipart field `image`, if one was chosen (browsers send an empty part
    for a file input left empty)."""
    upload = request.files.get("image")
    return upload.stream if upload is not None and upload.filename else None


def _picture_room() -> None:
    """Let the body hold an attached picture (20 MB, as base64 in a JSON body) beside the
    prompt; a body without one keeps the app's cap (MAX_CONTENT_LENGTH), or it is a 413."""
    request.max_content_length = input_images.MAX_REQUEST_BYTES
    size = request.content_length
    if size is None:  # a chunked body: read it (within the larger cap) to know its size
        size = len(request.get_data(cache=True))
    if (
        size > current_app.config["MAX_CONTENT_LENGTH"]
        and _upload() is None
        and read_field("image") in (None, "")
    ):
        abort(413)


def _refused(error: PromptError | DailyCapReached) -> Response:
    """A request that was not answered (nothing stored): JSON with its status, or for htmx a
    visible alert (status in `X-Error-Status`; the prompt and picture stay in the form)."""
    status = 429 if isinstance(error, DailyCapReached) else error.status
    if htmx:
        body = render_template("partials/_error.html", message=error.message)
        return make_response(body, 200, {"X-Error-Status": str(status)})
    return make_response(jsonify(error=error.message), status)


def _failed(failed: GenerationFailed) -> Response:
    """The upstream failed; the entry is stored, marked failed."""
    headers = {}
    if failed.error.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(failed.error.retry_after))
    if htmx:
        body = render_template("partials/_generate_response.html", entry=failed.entry, page=_sidebar_page())
        headers["X-Error-Status"] = str(failed.error.status)
        return make_response(body, 200, headers)
    payload = {
        "error": failed.error.message,
        "entry": failed.entry.permalink,
        "demo": _generator().provider.demo,
    }
    return make_response(jsonify(payload), failed.error.status, headers)


def _next_form(ask: asks.Ask, entry: Entry) -> dict[str, Any] | None:
    """What the prompt form continues with after `entry` (None: it stays as it is): the next
    turn of its conversation, or for an edited picture, editing the new one."""
    if not ask.continues:
        return None
    if entry.kind == "image" and entry.input_image and entry.image_file:
        return {"source": entry}
    return {"parent": entry}


def _answer_json(entry: Entry) -> Response:
    """The seed's JSON answer (`code` or `image_url`) with the app's fields."""
    field = "code" if entry.kind == "code" else "image_url"
    payload: dict[str, Any] = {
        field: entry.response,
        "entry": entry.permalink,
        "model": entry.model,
        "demo": _generator().provider.demo,
    }
    if entry.kind == "code" and Generator.answer_cut_at(entry) is not None:
        payload["truncated"] = True  # cut at MAX_ANSWER_CHARS; only then, so the seed shape stays
    payload.update(_turn_fields(entry))
    return jsonify(payload)


def _generated(kind: str) -> Response:
    """Shared body of the two generate routes; `kind` is "code" or "image".

    htmx gets every outcome as a 200 fragment (an error is a visible alert in Results, status in
    `X-Error-Status`), so the browser logs no failed request; a stored image answer carries
    `HX-Trigger: generated`, which clears the prompt box. A code answer for htmx is streamed: the
    fragment connects to the entry's event stream. Every other client gets the seed's JSON.
    """
    _picture_room()
    generator = _generator()
    try:
        ask = asks.read_ask(kind, read_field, _upload(), generator)
        generator.check_daily_cap()
        if kind == "code" and htmx:
            entry = asks.run(ask, generator, stream=True)
            form = _next_form(ask, entry)
            body = render_template(
                "partials/_stream_start.html", entry=entry, page=_sidebar_page(), form=form
            )
            return make_response(body)
        entry = asks.run(ask, generator)
    except (PromptError, DailyCapReached) as e:
        return _refused(e)
    except GenerationFailed as failed:
        return _failed(failed)
    if entry.deleted:
        abort(410, description=N_("This entry was deleted while it was being generated."))
    if htmx:
        form = _next_form(ask, entry)
        body = render_template(
            "partials/_generate_response.html", entry=entry, page=_sidebar_page(), form=form
        )
        return make_response(body, 200, {"HX-Trigger": "generated"})
    return _answer_json(entry)


@bp.post("/chatlog/<date>/<int:index>/regenerate")
def regenerate_entry(date: str, index: int):
    """Another version of a turn, asked again unchanged (its prompt, picture and image options).

    htmx (Results on the generator page) gets the new entry as a fragment, streamed for code;
    a plain form post (the entry page) is sent on to the new entry's page, where a code answer
    streams in. The prompt form is left as it is.
    """
    entry = _existing_entry(date, index)
    generator = _generator()
    fields: dict[str, object] = {"prompt": entry.prompt, "replaces": entry.permalink}
    if entry.kind == "image":
        fields.update(entry.options)
    try:
        ask = asks.read_ask(entry.kind, fields.get, None, generator)
        generator.check_daily_cap()
        made = asks.run(ask, generator, stream=entry.kind == "code")
    except (PromptError, DailyCapReached) as e:
        if htmx:
            return _refused(e)
        return error_response(
            429 if isinstance(e, DailyCapReached) else e.status, e.message, N_("Not regenerated")
        )
    except GenerationFailed as failed:
        made = failed.entry
    if not htmx:
        return redirect(made.permalink, 303)
    template = (
        "partials/_stream_start.html" if made.status == "pending" else "partials/_generate_response.html"
    )
    return render_template(template, entry=made, page=_sidebar_page())


def form_mode(args: Any) -> dict[str, Any]:
    """What the prompt form continues from, by the query: `parent` (a follow-up, or a variation
    of an image), `replaces` (editing a turn: its prompt refills the box) or `source` (editing a
    picture). PromptError when the permalink cannot be used."""
    generator = _generator()
    if args.get("replaces"):
        editing = asks.find_turn(
            generator,
            args.get("replaces"),
            asks.REPLACES_MISSING,
            asks.REPLACES_DELETED,
            asks.REPLACES_PENDING,
        )
        return {"editing": editing, "refill": editing.prompt if editing else ""}
    if args.get("source"):
        return {"source": asks.find_source(generator, args.get("source"))}
    parent = generator.find_parent(args.get("parent"))
    variation = parent is not None and parent.kind == "image"
    return {"parent": parent, "refill": parent.prompt if variation and parent else ""}


@bp.get("/followup")
def followup():
    """The chip of the prompt form: which entry the next prompt continues, which turn it
    replaces, or which picture it edits (none without a query).

    For a variation of an image, or a turn being edited, the prompt box is refilled with its
    prompt to change.
    """
    try:
        mode = form_mode(request.args)
    except PromptError as e:
        return render_template("partials/_error.html", message=e.message)
    return render_template("partials/_followup.html", form=mode, refill_box=True)


def sse_event(event: str, html: str) -> str:
    """One Server-Sent Event whose data lines carry an HTML fragment."""
    # Browsers end an SSE line at \r\n, \r or \n: split on all three, so no text can start
    # a line of its own (and so forge an event) inside a data field.
    lines = re.split(r"\r\n|\r|\n", html)
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def _existing_entry(date: str, index: int) -> Entry:
    entry = _chatlog().get(date, index)
    if entry is None or entry.deleted:
        abort(404, description=N_("There is no history entry %(index)s on %(date)s.", index=index, date=date))
    return entry


@bp.get("/chatlog/<date>/<int:index>/stream")
def stream_entry(date: str, index: int):
    """The answer of a pending entry as Server-Sent Events: `token` fragments (escaped text),
    then `final` (the finished entry, rendered once) and `done`. Reconnecting never asks the
    upstream twice: a finished or claimed entry just gets its final state."""
    entry = _existing_entry(date, index)
    if entry.kind != "code":
        abort(404, description=N_("Only code answers are streamed."))
    generator = _generator()

    def events() -> Iterator[str]:
        try:
            yield from answer()
        except HistoryUnavailable:
            # The stream has started (200 is sent): say what happened in place of the answer.
            final = replace(entry, status="failed", error=HISTORY_DOWN)
            yield sse_event("final", render_template("partials/_entry.html", entry=final, in_results=True))
            yield sse_event("done", "")

    def answer() -> Iterator[str]:
        for event in generator.follow(entry):
            if event.kind == "token":
                yield sse_event("token", str(escape(event.text)))
            else:
                final = event.entry or entry
                yield sse_event(
                    "final", render_template("partials/_entry.html", entry=final, in_results=True)
                )
        yield sse_event("done", "")

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


@bp.post("/chatlog/<date>/<int:index>/stop")
def stop_entry(date: str, index: int):
    """Stop a streaming answer; the stream keeps the partial text and marks the entry stopped."""
    entry = _existing_entry(date, index)
    if entry.status == "pending":
        _generator().request_stop(entry)
    if htmx:
        return Response(status=204)
    return jsonify(stopping=entry.status == "pending", entry=entry.permalink)


@bp.get("/models")
def models():
    """The chat models to choose from (the upstream's list, cached; the default first)."""
    names = _generator().models.names()
    if htmx:
        return render_template("partials/_model_options.html", names=names)
    return jsonify(models=names, default=_generator().provider.chat_model)


@bp.get("/")
def index() -> str:
    try:
        mode = form_mode(request.args)
    except PromptError:
        mode = {}
    return render_template(
        "index.html",
        form=mode,
        page=_sidebar_page(),
        prefill=(request.args.get("prompt") or mode.get("refill") or "")[
            : current_app.config["SETTINGS"].max_prompt_chars
        ],
        default_model=_generator().provider.chat_model,
        image_caps=image_options.capabilities(_generator().provider.image_model),
        edit_models=image_options.EDIT_MODELS,
        image_default_size=_generator().image_options().size,
    )


@bp.post("/generate_code")
def generate_code():
    return _generated("code")


@bp.post("/generate_image")
def generate_image():
    return _generated("image")


@bp.get("/chatlog")
def chatlog():
    """The history: all of it as JSON, a search, or a page of days (lazy loaded by htmx)."""
    query = request.args.get("q", "").strip()[:200]
    if query:
        return search_results(query)
    if wants_json():
        return seed_export()
    limit = current_app.config["SETTINGS"].history_sidebar_limit
    before = request.args.get("before")
    if htmx and before:
        return render_template("partials/_history_page.html", page=_chatlog().page(limit, before))
    if htmx:
        return render_template("partials/_history_list.html", page=_chatlog().page(limit))
    return render_template("chatlog.html", page=_chatlog().page(PAGE_LIMIT, before), q="", found=None)


def search_results(text: str):
    """A search as a fragment (htmx), a page, or JSON (`Accept: application/json`): the best
    SEARCH_LIMIT hits with their snippets, and whether there are more."""
    error: str | None = None
    try:
        query = parse_query(text)
        entries = _chatlog().search(query, limit=SEARCH_LIMIT + 1)
    except QueryError as e:
        if wants_json():
            return jsonify(error=str(e)), 400
        found, error = [], message_of(e)
    else:
        found = hits(entries[:SEARCH_LIMIT], query, text)
    more = len(found) == SEARCH_LIMIT and len(entries) > SEARCH_LIMIT
    if wants_json():
        results = [
            {
                **entry_json(h.entry),
                "url": h.url,
                "match": h.field,
                "title_html": h.title,
                "snippet_html": h.snippet,
            }
            for h in found
        ]
        return jsonify(query=text, results=results, more=more)
    context = {"found": found, "q": text, "more": more, "search_error": error}
    if htmx:
        return render_template("partials/_search_results.html", **context)
    return render_template("chatlog.html", page=None, **context)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def seed_export() -> Response:
    """The whole history in the seed's format, streamed a batch of entries at a time, so an
    export of millions of entries never sits in the server's memory at once."""
    chatlog = _chatlog()

    def body() -> Iterator[str]:
        current = None
        for date, row in chatlog.iter_seed():
            if date != current:
                yield ("{" if current is None else "],") + _json(date) + ":[" + _json(row)
                current = date
            else:
                yield "," + _json(row)
        yield ("{" if current is None else "]") + "}\n"

    # The body needs only the store captured above, not the request context: a plain generator
    # can be dropped unread (a client that hangs up) without touching a context that is gone.
    return Response(body(), mimetype="application/json")


@bp.get("/chatlog.json")
def chatlog_json():
    return seed_export()


@bp.get("/chatlog.full.json")
def chatlog_full_json():
    """Every live entry with all its fields, oldest first, streamed like the seed export."""
    chatlog = _chatlog()

    def body() -> Iterator[str]:
        first = True
        for entry in chatlog.iter_full():
            yield ("[" if first else ",") + _json(entry)
            first = False
        yield ("[" if first else "") + "]\n"

    response = Response(body(), mimetype="application/json")
    response.headers["Content-Disposition"] = "attachment; filename=chatlog.full.json"
    return response


def _is_live(chatlog: HistoryStore, permalink: str) -> bool:
    target = Permalink.parse(permalink)
    entry = chatlog.get(*target) if target else None
    return entry is not None and not entry.deleted


@bp.get("/chatlog.md")
def chatlog_markdown():
    """The whole history as one Markdown document, oldest first, streamed a conversation at a
    time: each follow-up is shown under its conversation's first turn."""
    chatlog = _chatlog()
    turn = get_template_attribute("chatlog.md", "turn")
    day = get_template_attribute("chatlog.md", "day")

    def body() -> Iterator[str]:
        # First pass: only where each conversation's later turns are (their permalinks).
        later: dict[str, list[Permalink]] = {}
        for raw in chatlog.iter_entries(newest_first=False):
            if raw.get("root"):
                later.setdefault(raw["root"], []).append(Permalink(raw["date"], raw["index"]))
        threads = {root for root in later if _is_live(chatlog, root)}
        yield "# Chat history\n"
        current = None
        for raw in chatlog.iter_entries(newest_first=False):
            entry = Entry.from_dict(raw)
            if entry.date != current:
                current = entry.date
                yield day(current)
            if entry.root in threads:
                continue  # shown under its first turn
            yield turn(entry, "###") + "\n"
            for permalink in later.get(entry.permalink, []):
                if (follow := chatlog.get(*permalink)) is not None and not follow.deleted:
                    yield turn(follow, "#### ↳") + "\n"

    # The macros need no request: a plain generator can be dropped unread (see seed_export).
    return Response(body(), mimetype="text/markdown")


@bp.post("/chatlog/import")
def import_chatlog():
    """Import an uploaded chatlog.json (the seed's format); entries already present are skipped."""
    request.max_content_length = IMPORT_MAX_BYTES
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise ValueError(N_("Choose a chatlog.json file to import."))
        text = upload.read().decode("utf-8")
        added, skipped = import_chatlog_text(
            text, _chatlog(), current_app.extensions["images"], current_app.config["SETTINGS"]
        )
    except UnicodeDecodeError:
        return error_response(400, title=N_("Import failed"), message=N_("The file is not UTF-8 text."))
    except ValueError as e:  # ImportFileError included: each names what is wrong
        return error_response(400, title=N_("Import failed"), message=message_of(e))
    message = N_(
        "Imported %(added)s entries, skipped %(skipped)s already present.", added=added, skipped=skipped
    )
    if htmx:
        body = render_template("partials/_notice.html", message=message)
        return make_response(body, 200, {"HX-Trigger": "history-changed"})
    return jsonify(imported=added, skipped=skipped)


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
    elif Generator.answer_cut_at(entry) is not None:
        data["truncated"] = True  # cut at MAX_ANSWER_CHARS
    if entry.error:
        data["error"] = entry.error
    data.update(_turn_fields(entry))
    if entry.context_dropped:
        data["context_dropped"] = entry.context_dropped
    return data


def _turn_fields(entry: Entry) -> dict[str, Any]:
    """An entry's place in its conversation and its picture, for the JSON answers: `parent`,
    `conversation` and `turn` in a conversation, `siblings` (permalinks of the turn's versions,
    oldest first, itself included) when it has versions, `input_image_url` with a picture."""
    data: dict[str, Any] = {}
    if entry.parent or entry.root:
        data.update(parent=entry.parent, conversation=entry.thread, turn=entry.turn)
    versions = _chatlog().versions(entry)
    if len(versions) > 1:
        data["siblings"] = [v.permalink for v in versions]
    if entry.input_image_url:
        data["input_image_url"] = entry.input_image_url
    return data


@bp.get("/chatlog/<date>/<int:index>")
def view_entry(date: str, index: int):
    entry = _chatlog().get(date, index)
    if entry is None:
        abort(404, description=N_("There is no history entry %(index)s on %(date)s.", index=index, date=date))
    if entry.deleted:
        abort(410, description=N_("This history entry was deleted."))
    if wants_json():
        return jsonify(entry_json(entry))
    if htmx:
        return render_template("partials/_entry.html", entry=entry)
    turns = _chatlog().branch(entry)
    return render_template(
        "entry.html", entry=entry, turns=turns, page=_sidebar_page(), marker=_marker(), marked_id=entry.id
    )


def _marker() -> Marker | None:
    """Marks for the matches of `?hl=<query>` (a search hit's link), if any."""
    try:
        query = parse_query(request.args.get("hl", "")[:200])
    except QueryError:
        return None
    return Marker(query) if query.terms else None


@bp.get("/chatlog/<date>/<int:index>/code/<int:n>")
def download_code(date: str, index: int, n: int):
    """The n-th (1-based) code block of an answer as a file named for its language."""
    entry = _existing_entry(date, index)
    blocks = code_blocks(entry.response) if entry.kind == "code" else []
    if not 1 <= n <= len(blocks):
        abort(404, description=N_("This answer has no such code block."))
    block = blocks[n - 1]
    response = Response(block.code, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{block.filename}"'
    return response


def _remove_images(entries: Iterable[Entry], done: set[str] | None = None) -> set[str]:
    """Delete the entries' images and input pictures (except those in `done`); returns the
    names handled."""
    images = current_app.extensions["images"]
    done = set(done or ())
    for entry in entries:
        for name in (entry.image_file, entry.input_image):
            if name and name not in done:
                images.delete(name)
                done.add(name)
    return done


def _deleted(entries: list[Entry], message: str, removed: set[str]):
    """Answer a delete: a notice for htmx, JSON otherwise.

    The images go before the entries (an image must never outlive its entry: if the image
    store is down, the delete fails as a whole and can be repeated); an image finished in
    between, not among those `removed` already, goes now.
    """
    _remove_images(entries, removed)
    if htmx:
        body = render_template("partials/_notice.html", message=message)
        return make_response(body, 200, {"HX-Trigger": "history-changed"})
    return jsonify(deleted=[e.permalink for e in entries])


@bp.delete("/chatlog/<date>/<int:index>")
def delete_entry(date: str, index: int):
    existing = _chatlog().get(date, index)
    if existing is None:
        abort(404, description=N_("There is no history entry %(index)s on %(date)s.", index=index, date=date))
    if existing.deleted:
        abort(410, description=N_("This history entry was already deleted."))
    removed = _remove_images([existing])
    deleted = _chatlog().delete(date, index)
    if deleted is None:
        abort(410, description=N_("This history entry was already deleted."))
    return _deleted([deleted], N_("Entry deleted."), removed)


@bp.delete("/chatlog/<date>")
def delete_day(date: str):
    removed: set[str] = set()
    if is_date(date):
        live = (Entry.from_dict(raw) for raw in _chatlog().iter_entries(since=date, until=date))
        removed = _remove_images(live)
    deleted = _chatlog().delete_day(date) if is_date(date) else []
    if not deleted:
        abort(404, description=N_("There are no history entries on %(date)s.", date=date))
    return _deleted(deleted, N_("Deleted %(n)s entries of %(date)s.", n=len(deleted), date=date), removed)


@bp.get("/images/<name>")
def image_file(name: str):
    images = current_app.extensions["images"]
    # Names are unique per entry and never rewritten, so the image is cached for ever.
    with contextlib.suppress(FileNotFoundError, ValueError):
        return _private_behind_login(images.serve(name))
    if name.endswith(".thumb.webp"):
        # Images stored before thumbnails existed: the original stands in for its thumbnail.
        with contextlib.suppress(FileNotFoundError, ValueError):
            return _private_behind_login(images.serve(name.removesuffix(".thumb.webp") + ".png"))
    abort(404, description=N_("There is no such image."))


def _private_behind_login(response: Response) -> Response:
    """With APP_PASSWORD set, an image is for this browser only: no shared cache may keep it."""
    cache = response.headers.get("Cache-Control", "")
    if current_app.config["SETTINGS"].app_password and cache.startswith("public"):
        response.headers["Cache-Control"] = "private" + cache.removeprefix("public")
    return response


def download_name(prompt: str, extension: str) -> str:
    """A readable ASCII file name from the prompt: `a-red-fox-in-the-snow.png`."""
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()[:60].rstrip("-")
    return f"{slug or 'image'}.{extension}"


@bp.get("/chatlog/<date>/<int:index>/image")
def download_image(date: str, index: int):
    """An entry's image as a download named after its prompt."""
    entry = _existing_entry(date, index)
    if entry.kind != "image" or not entry.image_file:
        abort(404, description=N_("This entry has no image (any more)."))
    try:
        return current_app.extensions["images"].serve(
            entry.image_file, download_name=download_name(entry.prompt, "png")
        )
    except (FileNotFoundError, ValueError):
        abort(404, description=N_("This entry has no image (any more)."))


@bp.get("/images")
def gallery():
    """All generated images, newest first, as a grid of thumbnails loaded a page at a time."""
    page = _chatlog().images_page(GALLERY_PAGE, request.args.get("before"))
    if htmx:
        return render_template("partials/_gallery_page.html", page=page)
    return render_template("gallery.html", page=page)


@bp.app_context_processor
def history_warnings() -> dict[str, Any]:
    """Damaged history files that were moved aside: every page says so until they are dealt with."""
    return {"quarantined": _chatlog().quarantined()}


def turn_versions(entry: Entry) -> list[str]:
    """The permalinks of a turn's versions, oldest first (just its own without any); read once
    per entry and request."""
    known: dict[str, list[str]] = g.setdefault("turn_versions", {})
    if entry.id not in known:
        known[entry.id] = [v.permalink for v in _chatlog().versions(entry)]
    return known[entry.id]


@bp.app_context_processor
def entry_helpers() -> dict[str, Any]:
    """For the entry partial: its versions, and whether images get "Edit image" (the image
    model edits pictures) or "Variation" (a new picture from the edited text)."""
    edits = image_options.capabilities(_generator().provider.image_model).edits
    return {"turn_versions": turn_versions, "image_edits": edits}


@bp.get("/healthz")
def healthz():
    """Alive: the process serves requests."""
    return jsonify(status="ok", demo=_generator().provider.demo)


@bp.get("/readyz")
def readyz():
    """Ready: the history and image stores take writes and an upstream (or the demo) is set up.

    A load balancer stops sending requests to a server whose database or object store it
    cannot reach (503), and sends them again when they are back.
    """
    store_ok, store = _chatlog().ready()
    images_ok, images = current_app.extensions["images"].ready()
    provider = _generator().provider
    # An object store shared by every server that is down would take them all out of the load
    # balancer at once, though text answers still work: it makes this server degraded, not
    # unready. Files in DATA_DIR that cannot be written are this server's own problem.
    ready = store_ok and (images_ok or current_app.extensions["images"].backend == "s3")
    body = {
        "ready": ready,
        "degraded": ready and not images_ok,
        "store": store,
        "history": _chatlog().backend,
        "images": images,
        "image_store": current_app.extensions["images"].backend,
        "upstream": "demo" if provider.demo else "configured",
    }
    return jsonify(body), 200 if ready else 503


@bp.after_app_request
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


def error_response(status: int, message: str, title: str):
    """An error as JSON for API clients, a fragment for htmx, or a full page for browsers.

    htmx gets its error fragment with status 200 (the status in `X-Error-Status`): the alert
    is shown in place and the browser logs no failed request.
    """
    if (request.method != "GET" and not htmx) or wants_json():
        return jsonify(error=message), status
    if htmx:
        body = render_template("partials/_error.html", message=message)
        return make_response(body, 200, {"X-Error-Status": str(status)})
    return render_template("error.html", status=status, title=title, message=message), status


@bp.app_errorhandler(HistoryUnavailable)
def history_unavailable(error: HistoryUnavailable):
    # Each write is one transaction, so nothing is half-written; the form keeps the prompt.
    return _unavailable(HISTORY_DOWN)


@bp.app_errorhandler(ImageStoreUnavailable)
def image_store_unavailable(error: ImageStoreUnavailable):
    return _unavailable(N_("The image store cannot be reached right now. Please try again in a moment."))


def _unavailable(message: str):
    response = make_response(error_response(503, message, N_("Service Unavailable")))
    response.headers["Retry-After"] = "5"
    return response


@bp.app_errorhandler(HTTPException)
def http_error(error: HTTPException):
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
        response = make_response(error_response(status, message, error.name))
        if wait:
            response.headers["Retry-After"] = str(wait)
        return response
    elif status == 405:
        message = N_("%(method)s is not allowed here.", method=request.method)
    return error_response(status, message, error.name)
