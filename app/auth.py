"""Who may use the app: cross-site request checks and the optional login (`APP_PASSWORD`).

- A state-changing request (POST, DELETE, ...) whose `Sec-Fetch-Site` or `Origin` says it comes
  from another site is refused with 403: another website cannot make a visitor's browser spend
  the owner's API money. Same-origin htmx requests and non-browser clients (curl, scripts, the
  seed's JSON API), which send neither header, keep working.
- With `APP_PASSWORD` set, every page and API call needs a session (the login page) or the header
  `Authorization: Bearer <APP_PASSWORD>`; passwords are compared in constant time.
- Guessing is rate limited: a wrong login password and a wrong bearer token each count once
  against LOGIN_RATE_LIMIT per client address (one counter for both), and are logged without
  the guess. A wrong bearer token gets 401 JSON on every route, never the login page.
- Sessions can be revoked on the server (app.sessions): "Log out" ends that session, "Log out
  everywhere" (or a new APP_PASSWORD) ends all of them.

The login and logout routes are app.views.auth; this module is the policy they and every other
request go through.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    current_app,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.strategies import RateLimiter

from .i18n import N_
from .sessions import SessionRegistry

log = logging.getLogger("app.auth")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Reachable without logging in: the login itself, health checks, and what the login page needs.
OPEN_ENDPOINTS = (
    "auth.login",
    "health.healthz",
    "health.readyz",
    "static",
    # The app shell holds no history: the login page may register the worker and manifest.
    "pwa.service_worker",
    "pwa.manifest",
    "pwa.offline",
)


class SessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions whose cookie is marked Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or bool(app.config.get("SESSION_COOKIE_SECURE"))


def password() -> str | None:
    """APP_PASSWORD, or None when the app has no login."""
    return current_app.config["SETTINGS"].app_password


def _session_token(password: str) -> str:
    """What a logged-in session holds: changes when APP_PASSWORD or SECRET_KEY change."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()[:32]


def matches(given: str, password: str) -> bool:
    """Whether `given` is the password, compared in constant time."""
    return hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8"))


def _registry() -> SessionRegistry:
    return current_app.extensions["sessions"]


def _session_valid(password: str) -> bool:
    """A logged-in session for this password that has not been revoked on the server."""
    token = session.get("auth")
    if not isinstance(token, str) or not hmac.compare_digest(token, _session_token(password)):
        return False
    return _registry().is_valid(session.get("sid"), session.get("epoch"))


def _bearer() -> str | None:
    """The token of an `Authorization: Bearer …` header ('' for an empty one), else None."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def is_authenticated() -> bool:
    """True without APP_PASSWORD; else for a valid session or a correct bearer token."""
    expected = password()
    if not expected:
        return True
    if _session_valid(expected):
        return True
    given = _bearer()
    return given is not None and given != "" and matches(given, expected)


def start_session(expected: str) -> None:
    """Log this browser in: a new session id in the current epoch, kept across restarts."""
    session.clear()
    session["auth"] = _session_token(expected)
    session["sid"] = SessionRegistry.new_id()
    session["epoch"] = _registry().epoch()
    session.permanent = True


def end_session() -> None:
    """Log this browser out, here and on the server: a copy of its cookie no longer works."""
    _registry().revoke(session.get("sid"))
    session.clear()


def end_every_session() -> None:
    """End every session of every browser (a new epoch), this one included."""
    if password():
        _registry().revoke_all()
        log.warning("Logged out everywhere: every session was ended")
    session.clear()


class GuessLimit:
    """Failed password attempts per client address (login form and bearer token alike),
    counted in the rate limiter's storage (shared across workers when that is Redis)."""

    def __init__(self, rate: str) -> None:
        self.rate = rate
        self.items = parse_many(rate)

    @staticmethod
    def _strategy() -> RateLimiter:
        # The limiter's own strategy (moving window), on its storage or its in-memory fallback.
        return current_app.extensions["app_limiter"].limiter

    @staticmethod
    def _key() -> tuple[str, str]:
        return "login-failures", get_remote_address()

    def exhausted(self) -> int | None:
        """Seconds until the next attempt may be made, or None while attempts remain."""
        strategy = self._strategy()
        try:
            waits = [
                strategy.get_window_stats(item, *self._key()).reset_time - time.time()
                for item in self.items
                if not strategy.test(item, *self._key())
            ]
        except Exception:  # a shared storage that is down must not lock everyone out
            log.exception("The rate limit storage cannot be reached; failed logins are not counted")
            return None
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self) -> None:
        """Count one failed attempt."""
        strategy = self._strategy()
        try:
            for item in self.items:
                strategy.hit(item, *self._key())
        except Exception:
            log.exception("The rate limit storage cannot be reached; failed logins are not counted")


def guesses() -> GuessLimit:
    """The count of failed password attempts of the app."""
    return current_app.extensions["guess_limit"]


def too_many_guesses(wait: int) -> Response:
    """429: the client's password attempts are used up for `wait` seconds (the login page for
    the login form, JSON for everything else)."""
    message = N_(
        "Too many failed password attempts (the limit is %(limit)s). "
        "Please try again in %(seconds)s seconds.",
        limit=guesses().rate,
        seconds=wait,
    )
    if request.blueprint == "auth" and request.method == "POST":
        response = make_response(render_template("login.html", next="", error=message), 429)
    else:
        response = make_response(jsonify(error=message), 429)
    response.headers["Retry-After"] = str(wait)
    return response


def _check_bearer():
    """A request with a bearer token: the right one passes; a wrong one is a counted, logged
    guess answered with 401 JSON. While the client's guesses are used up, every token is refused."""
    given = _bearer()
    expected = password()
    if given is None or not expected:
        return None
    if (wait := guesses().exhausted()) is not None:
        log.warning("Refused a bearer token: too many failed attempts from this client")
        return too_many_guesses(wait)
    if given and matches(given, expected):
        return None
    guesses().failed()
    log.warning("Wrong bearer token on %s %s", request.method, request.path)
    response = jsonify(error="Wrong bearer token: send Authorization: Bearer <APP_PASSWORD>.")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="chat", error="invalid_token"'
    return response


def _same_site_violation() -> str | None:
    """Why a state-changing request looks cross-site, or None if it does not."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {fetch_site}"
    origin = request.headers.get("Origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != request.host.lower()):
        return "Origin of another site"
    return None


def _deny(status: int, message: str):
    from .views.plumbing import error_response  # the one place that shapes errors for each client

    return error_response(status, message, N_("Forbidden") if status == 403 else N_("Login required"))


def check_request():
    """Before every request: refuse cross-site writes, then ask for a login where one is set."""
    if request.method not in SAFE_METHODS and (why := _same_site_violation()):
        log.warning("Refused a cross-site %s %s (%s)", request.method, request.path, why)
        return _deny(403, N_("This request came from another website and was refused."))
    if (refused := _check_bearer()) is not None:
        return refused
    if request.endpoint in OPEN_ENDPOINTS or is_authenticated():
        return None
    if request.headers.get("HX-Request") == "true":
        response = make_response("", 200)
        response.headers["HX-Redirect"] = url_for("auth.login")
        return response
    prefers_json = (
        request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
    )
    if request.method == "GET" and not prefers_json:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    response = jsonify(error="Authentication required: log in, or send Authorization: Bearer <APP_PASSWORD>.")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="chat"'
    return response


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.session_interface = SessionInterface()
    app.extensions["sessions"] = SessionRegistry(
        settings.data_dir, app.permanent_session_lifetime.total_seconds()
    )
    app.extensions["guess_limit"] = GuessLimit(settings.login_rate_limit)
    app.before_request(check_request)
    app.add_template_global(lambda: bool(password()), "login_enabled")
