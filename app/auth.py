"""Who may use the app: cross-site request checks and the optional login (`APP_PASSWORD`).

- A state-changing request (POST, DELETE, ...) whose `Sec-Fetch-Site` or `Origin` says it comes
  from another site is refused with 403: another website cannot make a visitor's browser spend
  the owner's API money. Same-origin htmx requests and non-browser clients (curl, scripts, the
  seed's JSON API), which send neither header, keep working.
- With `APP_PASSWORD` set, every page and API call needs a session (the login page) or the header
  `Authorization: Bearer <APP_PASSWORD>`; passwords are compared in constant time and login
  attempts are rate limited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
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

from .i18n import N_

bp = Blueprint("auth", __name__)
log = logging.getLogger("app.auth")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# Reachable without logging in: the login itself, health checks, and what the login page needs.
OPEN_ENDPOINTS = (
    "auth.login",
    "web.healthz",
    "web.readyz",
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


def _password() -> str | None:
    return current_app.config["SETTINGS"].app_password


def _session_token(password: str) -> str:
    """What a logged-in session holds: changes when APP_PASSWORD or SECRET_KEY change."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()[:32]


def _matches(given: str, password: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8"))


def is_authenticated() -> bool:
    """True without APP_PASSWORD; else for a logged-in session or a correct bearer token."""
    password = _password()
    if not password:
        return True
    token = session.get("auth")
    if isinstance(token, str) and hmac.compare_digest(token, _session_token(password)):
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and bool(given) and _matches(given.strip(), password)


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
    from .web import error_response  # the one place that shapes errors for each kind of client

    return error_response(status, message, "Forbidden" if status == 403 else "Login required")


def check_request():
    """Before every request: refuse cross-site writes, then ask for a login where one is set."""
    if request.method not in SAFE_METHODS and (why := _same_site_violation()):
        log.warning("Refused a cross-site %s %s (%s)", request.method, request.path, why)
        return _deny(403, N_("This request came from another website and was refused."))
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


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths, so the login cannot be used to redirect elsewhere.

    Control characters and backslashes are refused outright: URL parsers drop or reinterpret
    them, which would turn `/<TAB>/evil.example` into `//evil.example`.
    """
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or any(c <= " " or c == "\\" for c in target)
        or urlsplit(target).netloc
    ):
        return url_for("web.index")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    password = _password()
    if not password:
        return redirect(url_for("web.index"))
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""), error=None)
    given = request.form.get("password", "")
    target = _safe_next(request.form.get("next"))
    if isinstance(given, str) and _matches(given, password):
        session.clear()
        session["auth"] = _session_token(password)
        session.permanent = True
        log.info("Login succeeded")
        return redirect(target)
    log.warning("Login failed")
    return render_template("login.html", next=target, error=N_("Wrong password.")), 401


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("auth.login") if _password() else url_for("web.index"))


def init_app(app: Flask) -> None:
    app.session_interface = SessionInterface()
    app.register_blueprint(bp)
    app.before_request(check_request)
    app.add_template_global(lambda: bool(_password()), "login_enabled")
