"""English and German UI with Flask-Babel: message catalogues in `translations/`.

The language comes from `?lang=` (remembered in a cookie), then the cookie, then the browser's
`Accept-Language`; English otherwise. Dates are formatted for the chosen locale.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask, redirect, request, url_for
from flask_babel import Babel, format_date, get_locale, get_translations
from werkzeug.wrappers import Response as WerkzeugResponse

from .messages import N_ as N_  # the marker's old home: `from .i18n import N_` keeps working
from .messages import Message

LANGUAGES = {"en": "English", "de": "Deutsch"}
COOKIE = "lang"


def select_locale() -> str:
    chosen = request.args.get("lang") or request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or "en"


def local_date(value: str | date | datetime, format: str = "medium") -> str:
    """A date (or ISO date string) formatted for the current locale: 27.11.2026 / Nov 27, 2026."""
    if isinstance(value, str):
        try:
            return _formatted(date.fromisoformat(value[:10]), format, str(get_locale() or "en"))
        except ValueError:
            return value
    return str(format_date(value, format=format))


@lru_cache(maxsize=4096)
def _formatted(day: date, format: str, locale: str) -> str:
    """Formatting a date costs Babel a lot; a page of search hits or history shows the same few
    dates many times."""
    return str(format_date(day, format=format))


def translate(message: str) -> str:
    """The translation of a message known at runtime (an error, a notice), as plain text: a
    Message with its values filled in; a plain string (an older entry's stored sentence) if the
    catalogue has it, else as it is.

    Templates use this filter, not `_()`, for such messages: `_()` marks its result safe, which
    is right for literal strings in templates but never for text that may carry user input.
    """
    if isinstance(message, Message):
        return message.render(_translations().ugettext(message.msgid))
    return _translations().ugettext(str(message))


# The request's catalogue, looked up once per request: templates translate dozens of strings per
# page, and Flask-Babel finds the catalogue through the request context for each of them.
_catalogue: ContextVar[Any] = ContextVar("catalogue", default=None)


def _translations() -> Any:
    return _catalogue.get() or get_translations()


def _install_fast_gettext(app: Flask) -> None:
    """Template `_()`, `{% trans %}` and friends through the request's cached catalogue."""

    @app.before_request
    def look_up_catalogue() -> None:
        _catalogue.set(get_translations())

    @app.teardown_request
    def forget_catalogue(_error: BaseException | None) -> None:
        _catalogue.set(None)

    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s: _translations().ugettext(s),
        lambda s, p, n: _translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: _translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _translations().unpgettext(c, s, p, n),
    )


def init_app(app: Flask, root: Path) -> None:
    Babel(app, locale_selector=select_locale, default_translation_directories=str(root / "translations"))
    _install_fast_gettext(app)
    app.add_template_filter(local_date, "local_date")
    app.add_template_filter(translate, "tr")
    app.jinja_env.globals["languages"] = LANGUAGES
    app.add_template_global(lambda: str(get_locale() or "en"), "current_language")

    @app.before_request
    def remember_language() -> WerkzeugResponse | None:
        """`?lang=de` on a page: remember it and show the same page without the parameter."""
        chosen = request.args.get("lang")
        if request.method != "GET" or chosen not in LANGUAGES or request.endpoint is None:
            return None
        args = request.args.to_dict(flat=False)
        args.pop("lang", None)
        query = urlencode(args, doseq=True)
        # Rebuilt from the matched route, never from the raw path: a path like "/\t/evil.example"
        # would otherwise become the redirect "//evil.example".
        path = url_for(request.endpoint, **(request.view_args or {}))
        response = redirect(path + (f"?{query}" if query else ""))
        response.set_cookie(COOKIE, chosen, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
        return response
