"""HTTP security headers on every response (headers, not meta tags) and per-client rate limits.

Rate limits use flask-limiter. Its storage (`RATELIMIT_STORAGE_URI`) defaults to memory, which is
per process: with several gunicorn workers or servers, point it at a shared store (e.g.
`redis://127.0.0.1:6379`) so the limits hold across all of them.
"""

from __future__ import annotations

import math
import time
from typing import cast

from flask import Flask, Response
from flask.typing import RouteCallable
from flask_limiter import HeaderNames, Limiter
from flask_limiter.util import get_remote_address

from .config import Settings

# Styles, connections, fonts, the manifest and workers fall back to default-src 'self'; every
# byte of these headers is sent with every response, so nothing is repeated.
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# Views (by endpoint) and which rate-limit setting applies to them. LOGIN_RATE_LIMIT counts
# failed password attempts (login form and bearer token) in app.auth, on this limiter's storage.
LIMITED = {
    "generate.generate_code": "rate_limit",
    "generate.generate_image": "rate_limit",
    "generate.regenerate_entry": "rate_limit",
}


def init_app(app: Flask, settings: Settings, image_origin: str | None = None) -> Limiter:
    """Add the security headers and the rate limits to `app`; returns its limiter.

    `image_origin` is where images are served from when not same-origin (presigned object
    store URLs); the CSP's img-src allows it too.
    """
    headers = dict(HEADERS)
    if image_origin:
        csp = CSP.replace("img-src 'self' data:", f"img-src 'self' data: {image_origin}")
        # The service worker fetches images too: its requests follow the redirect to the store.
        headers["Content-Security-Policy"] = f"{csp}; connect-src 'self' {image_origin}"

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    shared_storage = not settings.ratelimit_storage_uri.startswith("memory://")

    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.ratelimit_storage_uri,
        headers_enabled=True,
        # The limiter would stamp Retry-After on every response; keep that header for real 429s
        # (ours, and the upstream's wait passed on), and give the limiter's its own name.
        header_name_mapping={HeaderNames.RETRY_AFTER: "X-RateLimit-Retry-After"},
        strategy="moving-window",
        key_prefix="chat",
        # A shared storage (Redis …) that goes down must not take the app with it: limits are
        # then counted per process until it is back (flask-limiter logs the failure).
        in_memory_fallback_enabled=shared_storage,
        storage_options={"socket_connect_timeout": 2, "socket_timeout": 2}
        if settings.ratelimit_storage_uri.startswith(("redis://", "rediss://"))
        else {},
    )
    for endpoint, setting in LIMITED.items():
        # A shared limit (scoped by setting): code and image generations draw on one allowance.
        # The limiter checks it in the wrapper it returns, so the wrapper replaces the view.
        shared = limiter.shared_limit(getattr(settings, setting), scope=setting, methods=["POST"])
        app.view_functions[endpoint] = cast(RouteCallable, shared(app.view_functions[endpoint]))
    app.extensions["app_limiter"] = limiter
    return limiter


def limit_retry_after() -> int | None:
    """Seconds until the rate limit just exceeded frees up again (for the 429's Retry-After)."""
    from flask import current_app

    limiter: Limiter | None = current_app.extensions.get("app_limiter")
    current = limiter.current_limit if limiter else None
    if current is None:
        return None
    return max(1, math.ceil(current.reset_at - time.time()))
