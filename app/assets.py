"""Fingerprinted static assets: `asset('css/app.css')` → `/static/css/app.css?v=<content hash>`.

A fingerprinted URL changes whenever the file does, so it is served with a year-long immutable
cache; plain /static/ URLs are revalidated. The hashes are computed once per process.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from flask import Flask, Response, request, url_for

# Everything the page shell needs; also what the service worker precaches.
SHELL_ASSETS = (
    "css/app.css",
    "css/pygments.css",
    "js/theme.js",
    "js/app.js",
    "vendor/htmx-2.0.11.min.js",
    "vendor/htmx-ext-sse-2.2.4.js",
    "icons/icon.svg",
    "icons/icon-192.png",
)


def init_app(app: Flask) -> None:
    static = Path(app.static_folder or "static")

    @cache
    def fingerprint(filename: str) -> str:
        return hashlib.sha256((static / filename).read_bytes()).hexdigest()[:12]

    def asset(filename: str) -> str:
        return url_for("static", filename=filename, v=fingerprint(filename))

    def shell_version() -> str:
        return hashlib.sha256("".join(fingerprint(f) for f in SHELL_ASSETS).encode()).hexdigest()[:12]

    app.add_template_global(asset, "asset")
    app.add_template_global(shell_version, "shell_version")
    app.add_template_global(SHELL_ASSETS, "shell_assets")

    @app.after_request
    def cache_static(response: Response) -> Response:
        if request.endpoint == "static":
            if request.args.get("v"):
                response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
            else:
                response.headers["Cache-Control"] = "no-cache"
        return response
