"""The installable app: web manifest, service worker (at the root, so it controls every page)
and the offline page it falls back to."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, send_from_directory

bp = Blueprint("pwa", __name__)


@bp.get("/manifest.webmanifest")
def manifest() -> Response:
    """The web manifest, so browsers offer to install the app."""
    response = send_from_directory(
        current_app.static_folder or "static", "manifest.webmanifest", max_age=3600
    )
    response.mimetype = "application/manifest+json"
    return response


@bp.get("/sw.js")
def service_worker() -> Response:
    """Rendered so its cache version and precache list follow the fingerprinted assets."""
    body = render_template("sw.js")
    response = Response(body, mimetype="text/javascript")
    # The browser must always see the newest worker, or an update would never arrive.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/offline")
def offline() -> str:
    """The page the service worker shows for a page it has no copy of while offline."""
    return render_template("offline.html")
