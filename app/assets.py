"""Static assets: fingerprinted URLs, precompressed bodies, lean headers.

`asset('css/app.css')` gives `/static/css/app.css?v=<content hash>`. A fingerprinted URL changes
whenever the file does, so it is served with a year-long immutable cache; plain /static/ URLs
are revalidated. Text assets are read, fingerprinted and (when first served) compressed at the
best brotli (and gzip) level once per process, whatever number of apps it builds, and served from
memory, so the page's first load stays small and cheap to serve.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from functools import cache
from pathlib import Path

import brotli
import rcssmin
import rjsmin
from flask import Flask, Response, abort, request, url_for
from werkzeug.security import safe_join

# Files served together as one response (fewer requests, better compression); each part stays
# its own pinned file in static/.
BUNDLES = {
    "bundle/app.css": ("css/app.css", "css/pygments.css"),
    "bundle/app.js": (
        "vendor/htmx-2.0.11.min.js",
        "vendor/htmx-ext-sse-2.2.4.js",
        "js/app.js",
        "js/compose.js",
    ),
}
# Everything the page shell needs; also what the service worker precaches.
SHELL_ASSETS = ("bundle/app.css", "js/theme.js", "bundle/app.js", "icons/icon.svg")
COMPRESSIBLE = (".css", ".js", ".svg", ".webmanifest", ".json", ".txt")
# Headers that only matter for documents; a stylesheet or script does not need them.
DOCUMENT_ONLY = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "Permissions-Policy",
    "Cross-Origin-Opener-Policy",
)


# Files written for reading (and the unminified SSE extension): the bundle minifies them
# (rjsmin, rcssmin), since every byte of it is in every first load. htmx comes minified.
COMPACTED = ("js/app.js", "js/compose.js", "css/app.css", "vendor/htmx-ext-sse-2.2.4.js")


def compact(filename: str, data: bytes) -> bytes:
    """`data` minified for the bundle when it is one of COMPACTED (comments, white space and
    needless separators dropped; names, strings and meaning kept); other files as they are."""
    if filename not in COMPACTED:
        return data
    if filename.endswith(".css"):
        return rcssmin.cssmin(data) + b"\n"
    return rjsmin.jsmin(data) + b"\n"


def _read(static: Path, filename: str) -> bytes:
    path = safe_join(str(static), filename)
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(filename)
    return Path(path).read_bytes()


@cache
def _body(static: Path, filename: str) -> tuple[bytes, str]:
    """The file's (or bundle's) bytes and its fingerprint; once per process, for every app in it."""
    if filename in BUNDLES:
        # ";" ends a script that lacks one; in CSS a newline is enough and ";" is harmless.
        separator = b"\n;\n" if filename.endswith(".js") else b"\n"
        data = separator.join(compact(part, _read(static, part)) for part in BUNDLES[filename])
    else:
        data = _read(static, filename)
    return data, _digest(data)


@cache
def _compressed(static: Path, filename: str) -> tuple[bytes | None, bytes | None]:
    """The brotli and gzip forms of a text asset, made when it is first served (None otherwise)."""
    if not filename.endswith(COMPRESSIBLE):
        return None, None
    data = _body(static, filename)[0]
    return brotli.compress(data, quality=11), gzip.compress(data, 9, mtime=0)


def init_app(app: Flask) -> None:
    static = Path(app.static_folder or "static").resolve()

    def asset(filename: str) -> str:
        return url_for("static", filename=filename, v=_body(static, filename)[1])

    def shell_version() -> str:
        return hashlib.sha256("".join(_body(static, f)[1] for f in SHELL_ASSETS).encode()).hexdigest()[:12]

    def serve_static(filename: str) -> Response:
        try:
            data, digest = _body(static, filename)
            br, gz = _compressed(static, filename)
        except FileNotFoundError:
            abort(404)
        accepted = request.headers.get("Accept-Encoding", "")
        body, encoding = data, None
        if br is not None and "br" in accepted:
            body, encoding = br, "br"
        elif gz is not None and "gzip" in accepted:
            body, encoding = gz, "gzip"
        response = Response(body, mimetype=mimetypes.guess_type(filename)[0] or "application/octet-stream")
        if encoding:
            response.headers["Content-Encoding"] = encoding
        if br is not None:
            response.headers["Vary"] = "Accept-Encoding"
        if request.args.get("v") == digest:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
            response.set_etag(digest)
            response.make_conditional(request)
        return response

    app.view_functions["static"] = serve_static
    app.add_template_global(asset, "asset")
    app.add_template_global(shell_version, "shell_version")
    app.jinja_env.globals["shell_assets"] = SHELL_ASSETS


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]
