"""A code answer as it is written: `GET /chatlog/<date>/<index>/stream` (Server-Sent Events) and
`POST /chatlog/<date>/<index>/stop`. The generator owns the protocol (who answers, who follows,
stale and stopped answers); these routes frame its events for the browser."""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, abort, jsonify, render_template
from markupsafe import escape

from ..generation.runs import StreamEvent
from ..history import Entry
from ..i18n import N_
from .plumbing import event_stream, generator, htmx, live_entry, sse_event

bp = Blueprint("stream", __name__)


@bp.get("/chatlog/<date>/<int:index>/stream")
def stream_entry(date: str, index: int) -> Response:
    """The answer of a pending entry as Server-Sent Events: `token` fragments (escaped text),
    then `final` (the finished entry, rendered once) and `done`. Reconnecting never asks the
    upstream twice: a finished or claimed entry just gets its final state."""
    entry = live_entry(date, index)
    if entry.kind != "code":
        abort(404, description=N_("Only code answers are streamed."))
    return event_stream(_framed(generator().follow(entry), entry))


@bp.post("/chatlog/<date>/<int:index>/stop")
def stop_entry(date: str, index: int) -> Response:
    """Stop a streaming answer; the stream keeps the partial text and marks the entry stopped."""
    entry = live_entry(date, index)
    stopping = generator().request_stop(entry)
    if htmx:
        return Response(status=204)
    return jsonify(stopping=stopping, entry=entry.permalink)


def _framed(events: Iterator[StreamEvent], entry: Entry) -> Iterator[str]:
    """The generator's events as SSE: text escaped, the final entry rendered, then `done`."""
    for event in events:
        if event.kind == "token":
            yield sse_event("token", str(escape(event.text)))
        else:
            final = event.entry or entry
            yield sse_event("final", render_template("partials/_entry.html", entry=final, in_results=True))
    yield sse_event("done", "")
