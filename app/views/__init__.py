"""The routes, one blueprint per area; each route parses the request, calls one service, and
renders one template or returns JSON.

- `generate`: the page, the two generate routes, Regenerate, the form's chip, the model list.
- `stream`: a code answer as Server-Sent Events, and Stop.
- `history`: History (pages, search, JSON) and deleting a day.
- `entry`: one entry (page, fragment, JSON), deleting it, its code blocks as files.
- `transfer`: exports, import, backup and restore.
- `images`: serving images and thumbnails, the gallery, an entry's image as a download.
- `health`: `/healthz` and `/readyz`.
- `auth`: login and logout (the policy is app.auth); `pwa`: manifest, service worker, offline.

Shared: `plumbing` (services, fields, the htmx/JSON choice, errors, SSE framing), `templating`
(URLs, versions and warnings for templates) and `entry_json` (entries as the API shows them).
"""

from __future__ import annotations

from flask import Flask

from . import auth, entry, generate, health, history, images, plumbing, pwa, stream, templating, transfer

BLUEPRINTS = (generate, stream, history, entry, transfer, images, health, auth, pwa)


def init_app(app: Flask) -> None:
    """Register the plumbing's handlers, the template helpers and every blueprint."""
    plumbing.init_app(app)
    templating.init_app(app)
    for module in BLUEPRINTS:
        app.register_blueprint(module.bp)
