"""Logging in and out, with APP_PASSWORD set: `GET/POST /login`, `POST /logout` and
`POST /logout/everywhere`. The policy (sessions, guesses, who may pass) is app.auth."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from .. import auth
from ..i18n import N_

bp = Blueprint("auth", __name__)
log = logging.getLogger("app.auth")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The login page, and the password it sends: a session on success, a counted guess not."""
    password = auth.password()
    if not password:
        return redirect(url_for("generate.index"))
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""), error=None)
    if (wait := auth.guesses().exhausted()) is not None:
        log.warning("Login refused: too many failed attempts from this client")
        return auth.too_many_guesses(wait)
    given = request.form.get("password", "")
    target = _safe_next(request.form.get("next"))
    if isinstance(given, str) and auth.matches(given, password):
        auth.start_session(password)
        log.info("Login succeeded")
        return redirect(target)
    auth.guesses().failed()
    log.warning("Login failed")
    return render_template("login.html", next=target, error=N_("Wrong password.")), 401


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this session, here and on the server: a copy of its cookie no longer works."""
    auth.end_session()
    return redirect(url_for("auth.login") if auth.password() else url_for("generate.index"))


@bp.post("/logout/everywhere")
def logout_everywhere() -> ResponseReturnValue:
    """End every session of every browser (a lost laptop, a shared password)."""
    auth.end_every_session()
    return redirect(url_for("auth.login") if auth.password() else url_for("generate.index"))


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
        return url_for("generate.index")
    return target
