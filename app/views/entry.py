"""One entry: `GET /chatlog/<date>/<index>` (its page, its fragment, or its JSON),
`DELETE /chatlog/<date>/<index>` and `GET /chatlog/<date>/<index>/code/<n>` (a code block as a
file)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from ..history import Entry
from ..history.query import QueryError, parse_query
from ..i18n import N_
from ..rendering import code_blocks
from ..services import deletion
from ..snippets import Marker
from .entry_json import entry_json
from .plumbing import history, htmx, htmx_or_json, images, live_entry, sidebar_page, wants_json

bp = Blueprint("entry", __name__)


@bp.get("/chatlog/<date>/<int:index>")
def view_entry(date: str, index: int) -> ResponseReturnValue:
    """The entry's page (the branch of its conversation it is on, with `?hl=` matches marked),
    its fragment for htmx, or its JSON; 404 if unknown, 410 once deleted."""
    entry = history().get(date, index)
    if entry is None:
        abort(404, description=N_("There is no history entry %(index)s on %(date)s.", index=index, date=date))
    if entry.deleted:
        abort(410, description=N_("This history entry was deleted."))
    if wants_json():
        return jsonify(entry_json(entry))
    if htmx:
        return render_template("partials/_entry.html", entry=entry)
    turns = history().branch(entry)
    return render_template(
        "entry.html", entry=entry, turns=turns, page=sidebar_page(), marker=_marker(), marked_id=entry.id
    )


@bp.delete("/chatlog/<date>/<int:index>")
def delete_entry(date: str, index: int) -> ResponseReturnValue:
    """Delete one entry and its images; its permalink then answers 410, no other one changes."""
    try:
        deleted = deletion.delete_entry(history(), images(), date, index)
    except deletion.NothingToDelete:
        abort(404, description=N_("There is no history entry %(index)s on %(date)s.", index=index, date=date))
    except deletion.AlreadyDeleted:
        abort(410, description=N_("This history entry was already deleted."))
    return deleted_response([deleted], N_("Entry deleted."))


@bp.get("/chatlog/<date>/<int:index>/code/<int:n>")
def download_code(date: str, index: int, n: int) -> Response:
    """The n-th (1-based) code block of an answer as a file named for its language."""
    entry = live_entry(date, index)
    blocks = code_blocks(entry.response) if entry.kind == "code" else []
    if not 1 <= n <= len(blocks):
        abort(404, description=N_("This answer has no such code block."))
    block = blocks[n - 1]
    response = Response(block.code, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{block.filename}"'
    return response


def deleted_response(entries: list[Entry], message: str) -> Response:
    """Answer a delete: a notice for htmx (History reloads), the deleted permalinks otherwise."""
    return htmx_or_json(
        lambda: render_template("partials/_notice.html", message=message),
        lambda: {"deleted": [e.permalink for e in entries]},
        trigger="history-changed",
    )


def _marker() -> Marker | None:
    """Marks for the matches of `?hl=<query>` (a search hit's link), if any."""
    try:
        query = parse_query(request.args.get("hl", "")[:200])
    except QueryError:
        return None
    return Marker(query) if query.terms else None
