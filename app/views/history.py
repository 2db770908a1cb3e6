"""The history: `GET /chatlog` (a page of days, lazily loaded, a search, or all of it as JSON)
and `DELETE /chatlog/<date>` (every entry of a day)."""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from ..history.query import QueryError
from ..i18n import N_
from ..messages import message_of
from ..services import deletion
from ..services.search import Found, search
from .entry import deleted_response
from .entry_json import entry_json
from .plumbing import history, htmx, images, settings, wants_json
from .templating import url_for_entry
from .transfer import seed_json_response

bp = Blueprint("history", __name__)
PAGE_LIMIT = 200  # entries per page of the full history page


@bp.get("/chatlog")
def chatlog() -> ResponseReturnValue:
    """The history: all of it as JSON, a search, or a page of days (lazy loaded by htmx)."""
    query = request.args.get("q", "").strip()[:200]
    if query:
        return search_results(query)
    if wants_json():
        return seed_json_response()
    limit = settings().history_sidebar_limit
    before = request.args.get("before")
    if htmx and before:
        return render_template("partials/_history_page.html", page=history().page(limit, before))
    if htmx:
        return render_template("partials/_history_list.html", page=history().page(limit))
    return render_template("chatlog.html", page=history().page(PAGE_LIMIT, before), q="", found=None)


@bp.delete("/chatlog/<date>")
def delete_day(date: str) -> ResponseReturnValue:
    """Delete every entry of a day, and their images."""
    try:
        deleted = deletion.delete_day(history(), images(), date)
    except deletion.NothingToDelete:
        abort(404, description=N_("There are no history entries on %(date)s.", date=date))
    return deleted_response(deleted, N_("Deleted %(n)s entries of %(date)s.", n=len(deleted), date=date))


def search_results(text: str) -> ResponseReturnValue:
    """A search as a fragment (htmx), a page, or JSON (`Accept: application/json`): the best
    hits with their snippets, and whether there are more."""
    error: str | None = None
    try:
        found = search(history(), text, url_for_entry)
    except QueryError as e:
        if wants_json():
            return jsonify(error=str(e)), 400
        found, error = Found([], more=False), message_of(e)
    if wants_json():
        results = [
            {
                **entry_json(h.entry),
                "url": h.url,
                "match": h.field,
                "title_html": h.title,
                "snippet_html": h.snippet,
            }
            for h in found.hits
        ]
        return jsonify(query=text, results=results, more=found.more)
    context = {"found": found.hits, "q": text, "more": found.more, "search_error": error}
    if htmx:
        return render_template("partials/_search_results.html", **context)
    return render_template("chatlog.html", page=None, **context)
