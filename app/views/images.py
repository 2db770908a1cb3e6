"""Images: `GET /images/<name>` (a stored image or thumbnail, cached for ever), `GET /images`
(the gallery) and `GET /chatlog/<date>/<index>/image` (an entry's image as a download).

Serving is this module's job, not the store's: the store says where an image is (a file, an
object's body, a presigned URL) and these routes answer with the caching headers, ETag
revalidation (304), Range requests for files, and `private` caching behind a login.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import cast

from flask import Blueprint, Response, abort, redirect, render_template, request, send_file

from ..i18n import N_
from ..images.names import IMMUTABLE, original_of
from ..images.store import ImageObject
from ..services.exports import download_name
from .plumbing import history, htmx, images, live_entry, settings

bp = Blueprint("images", __name__)
GALLERY_PAGE = 48


@bp.get("/images/<name>")
def image_file(name: str) -> Response:
    """A stored image or thumbnail; names are unique per entry and never rewritten."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        return _private_behind_login(serve_image(name))
    if (original := original_of(name)) is not None:
        # Images stored before thumbnails existed: the original stands in for its thumbnail.
        with contextlib.suppress(FileNotFoundError, ValueError):
            return _private_behind_login(serve_image(original))
    abort(404, description=N_("There is no such image."))


@bp.get("/images")
def gallery() -> str:
    """All generated images, newest first, as a grid of thumbnails loaded a page at a time."""
    page = history().images_page(GALLERY_PAGE, request.args.get("before"))
    if htmx:
        return render_template("partials/_gallery_page.html", page=page)
    return render_template("gallery.html", page=page)


@bp.get("/chatlog/<date>/<int:index>/image")
def download_image(date: str, index: int) -> Response:
    """An entry's image as a download named after its prompt."""
    entry = live_entry(date, index)
    if entry.kind != "image" or not entry.image_file:
        abort(404, description=N_("This entry has no image (any more)."))
    try:
        return serve_image(entry.image_file, download_name=download_name(entry.prompt, "png"))
    except (FileNotFoundError, ValueError):
        abort(404, description=N_("This entry has no image (any more)."))


def serve_image(name: str, *, download_name: str | None = None) -> Response:
    """A stored image (cached for ever, revalidated by ETag), or a download of it named
    `download_name`: a redirect to a presigned URL, a file (with Range), or an object's body.
    FileNotFoundError/ValueError when there is no such image."""
    presigned = images().presigned(name, download_name=download_name)
    if presigned is not None:
        # Flask's redirect() builds the app's own Response class; its stub says werkzeug's.
        response = cast(Response, redirect(presigned.url, 302))
        # The redirect may be reused only while the URL it points to is still valid.
        response.headers["Cache-Control"] = f"private, max-age={max(0, presigned.expires_in - 60)}"
        return response
    if request.if_none_match and not download_name:
        head = images().describe(name)
        if head.etag and request.if_none_match.contains_weak(head.etag):
            response = Response(status=304)
            response.set_etag(head.etag)
            response.headers["Cache-Control"] = IMMUTABLE
            return response
    # A HEAD request needs the headers only: no need to start reading the body.
    image = images().describe(name) if request.method == "HEAD" else images().open(name)
    if image.path is not None:
        return _file_response(image.path, image.content_type, download_name)
    return _body_response(image, download_name)


def _file_response(path: Path, content_type: str, download_name: str | None) -> Response:
    """A stored file; send_file answers conditional and Range requests itself."""
    if download_name:
        return send_file(
            path, mimetype=content_type, as_attachment=True, download_name=download_name, max_age=0
        )
    response = send_file(path, mimetype=content_type, max_age=31_536_000, conditional=True)
    response.headers["Cache-Control"] = IMMUTABLE
    return response


def _body_response(image: ImageObject, download_name: str | None) -> Response:
    """An object store's image, streamed through as it is read."""
    response = Response(image.chunks, mimetype=image.content_type, direct_passthrough=True)
    if image.length is not None:
        response.content_length = image.length
    if image.etag:
        response.set_etag(image.etag)
    if image.last_modified:
        response.last_modified = image.last_modified
    if download_name:
        response.headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
        response.headers["Cache-Control"] = "no-cache"
    else:
        response.headers["Cache-Control"] = IMMUTABLE
    response.call_on_close(image.close)
    return response


def _private_behind_login(response: Response) -> Response:
    """With APP_PASSWORD set, an image is for this browser only: no shared cache may keep it."""
    cache = response.headers.get("Cache-Control", "")
    if settings().app_password and cache.startswith("public"):
        response.headers["Cache-Control"] = "private" + cache.removeprefix("public")
    return response
