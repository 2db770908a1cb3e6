"""The generator page and its requests: `GET /`, `POST /generate_code`, `POST /generate_image`,
`POST /chatlog/<date>/<index>/regenerate`, the prompt form's chip (`GET /followup`) and the model
list (`GET /models`).

htmx gets every outcome as a 200 fragment (an error is a visible alert in Results, its status in
`X-Error-Status`), so the browser logs no failed request; a stored answer carries
`HX-Trigger: generated`, which clears the prompt box, and a code answer is streamed: its fragment
connects to the entry's event stream. Every other client gets the seed's JSON.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, abort, jsonify, make_response, redirect, render_template, request
from flask.typing import ResponseReturnValue

from .. import image_options
from ..generation import GenerationFailed, PromptError
from ..history import Entry
from ..i18n import N_
from ..services import asks
from .entry_json import answer_json
from .plumbing import (
    allow_picture,
    generator,
    htmx,
    htmx_or_json,
    live_entry,
    read_field,
    settings,
    sidebar_page,
    uploaded_image,
)
from .templating import url_for_entry

bp = Blueprint("generate", __name__)


@bp.get("/")
def index() -> str:
    """The page: the prompt form (continuing from an entry when the query names one), Results
    and History."""
    try:
        mode = asks.form_mode(generator(), request.args)
    except PromptError:
        mode = {}
    provider = generator().provider
    return render_template(
        "index.html",
        form=mode,
        page=sidebar_page(),
        prefill=(request.args.get("prompt") or mode.get("refill") or "")[: settings().max_prompt_chars],
        default_model=provider.chat_model,
        image_caps=image_options.capabilities(provider.image_model),
        edit_models=image_options.EDIT_MODELS,
        image_default_size=generator().image_options().size,
    )


@bp.post("/generate_code")
def generate_code() -> ResponseReturnValue:
    """A code/text answer: the seed's `{"code"}`, or for htmx the entry streaming in."""
    ask = _read_ask("code")
    return _answered(ask, asks.answer(ask, generator(), stream=bool(htmx)), streamed=bool(htmx))


@bp.post("/generate_image")
def generate_image() -> ResponseReturnValue:
    """An image, made or edited: the seed's `{"image_url"}`, or for htmx the entry."""
    ask = _read_ask("image")
    return _answered(ask, asks.answer(ask, generator()))


@bp.post("/chatlog/<date>/<int:index>/regenerate")
def regenerate_entry(date: str, index: int) -> ResponseReturnValue:
    """Another version of a turn, asked again unchanged (its prompt, picture and image options).

    htmx (Results on the generator page) gets the new entry as a fragment, streamed for code;
    a plain form post (the entry page) is sent on to the new entry's page, where a code answer
    streams in. The prompt form is left as it is.
    """
    made = asks.regenerate(live_entry(date, index), generator())
    if not htmx:
        return redirect(url_for_entry(made), 303)
    streamed = made.status == "pending"
    template = "partials/_stream_start.html" if streamed else "partials/_generate_response.html"
    return render_template(template, entry=made, page=sidebar_page())


@bp.get("/followup")
def followup() -> str:
    """The chip of the prompt form: which entry the next prompt continues, which turn it
    replaces, or which picture it edits (none without a query).

    For a variation of an image, or a turn being edited, the prompt box is refilled with its
    prompt to change.
    """
    try:
        mode = asks.form_mode(generator(), request.args)
    except PromptError as e:
        return render_template("partials/_error.html", message=e.message)
    return render_template("partials/_followup.html", form=mode, refill_box=True)


@bp.get("/models")
def models() -> Response:
    """The chat models to choose from (the upstream's list, cached; the default first)."""
    names = generator().models.names()
    return htmx_or_json(
        lambda: render_template("partials/_model_options.html", names=names),
        lambda: {"models": names, "default": generator().provider.chat_model},
    )


@bp.errorhandler(GenerationFailed)
def generation_failed(failed: GenerationFailed) -> Response:
    """The upstream failed; the entry is stored, marked failed, with a short human message."""
    headers = {}
    if failed.error.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(failed.error.retry_after))
    if htmx:
        body = render_template("partials/_generate_response.html", entry=failed.entry, page=sidebar_page())
        headers["X-Error-Status"] = str(failed.error.status)
        return make_response(body, 200, headers)
    payload = {
        "error": failed.error.message,
        "entry": failed.entry.permalink,
        "demo": generator().provider.demo,
    }
    return make_response(jsonify(payload), failed.error.status, headers)


def _read_ask(kind: str) -> asks.Ask:
    """The checked request (PromptError says what is wrong), its body allowed to hold a picture."""
    allow_picture()
    return asks.read_ask(kind, read_field, uploaded_image(), generator())


def _answered(ask: asks.Ask, entry: Entry, *, streamed: bool = False) -> Response:
    """The answer to a generate request: the streaming entry, the finished (or failed) one for
    htmx with what the prompt form continues with, or the seed's JSON."""
    if streamed:
        return make_response(render_template("partials/_stream_start.html", **_results(ask, entry)))
    if entry.deleted:
        abort(410, description=N_("This entry was deleted while it was being generated."))
    return htmx_or_json(
        lambda: render_template("partials/_generate_response.html", **_results(ask, entry)),
        lambda: answer_json(entry),
        trigger="generated",
    )


def _results(ask: asks.Ask, entry: Entry) -> dict[str, Any]:
    """What the answer's fragment shows: the entry, History beside it, and what the prompt form
    continues with."""
    return {"entry": entry, "page": sidebar_page(), "form": asks.next_form(ask, entry)}
