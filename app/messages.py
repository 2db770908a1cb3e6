"""Messages for people, and the failures a history entry stores by kind.

`N_("Imported %(added)s entries, skipped %(skipped)s already present.", added=3, skipped=0)`
marks a message for the catalogue (`make translations` extracts every `N_`) and returns a
:class:`Message`: a `str` holding the English text, which is what JSON answers, logs and exports
carry, that also keeps its catalogue id and values, so pages and htmx fragments show it in the
reader's language (`app.i18n.translate`, the templates' `tr` filter).

A failed entry stores its failure as a kind and values (`Entry.error_kind`, `Entry.error_params`):
FAILURES names each kind's message, so the entry's page says it in its reader's language, with
the wording of the version showing it. The English sentence is stored beside them (`error`) for
the exports and the JSON API. Nothing here needs a request or Flask.
"""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


class Message(str):
    """A message's English text (the `str` itself), its catalogue id `msgid`, its named values,
    and for a failure stored on an entry its `kind` (a key of FAILURES)."""

    msgid: str
    values: dict[str, Any]
    kind: str | None

    def __new__(cls, msgid: str, /, **values: Any) -> Message:
        # Only a message with values is formatted: a fixed one may hold a literal "%".
        message = super().__new__(cls, msgid % values if values else msgid)
        message.msgid, message.values, message.kind = str(msgid), values, None
        return message

    def render(self, translation: str) -> str:
        """The message in another language, from the catalogue's `translation` of `msgid`; the
        English text if the translation does not fit the values (the catalogue test keeps the
        placeholders equal, so this only guards a hand-edited .mo)."""
        if not self.values:
            return translation
        try:
            return translation % self.values
        except (KeyError, ValueError, TypeError):
            return str(self)


def N_(msgid: str, /, **values: Any) -> Message:  # noqa: N802 - the conventional gettext marker name
    """Mark a message for the catalogue; with named values for its `%(name)s` placeholders. It is
    translated where it is shown (`tr`), so it can be made before the reader's language is known."""
    return Message(msgid, **values)


def message_of(error: BaseException) -> str:
    """The message an exception was raised with (a Message, so a page can translate it), or its
    text when it was raised with a plain string."""
    first = error.args[0] if error.args else None
    return first if isinstance(first, Message) else str(error)


# Every way a generation can fail, by the kind an entry stores. The kinds are stored data: rename
# none; a message may be reworded (old entries then show the new wording).
FAILURES: dict[str, str] = {
    # The upstream answered with an error, or not at all (app.providers.openai_provider).
    "auth_rejected": N_("The upstream rejected the API key (401). Check OPENAI_API_KEY and OPENAI_BASE_URL."),
    "auth_forbidden": N_("The API key is not allowed to use this model or endpoint (403)."),
    "rate_limited": N_("The upstream is rate limiting requests (429). Try again shortly."),
    "rate_limited_for": N_("The upstream is rate limiting requests (429). Try again in %(seconds)s seconds."),
    "server_error": N_("The upstream had a server error (%(status)s). Try again in a moment."),
    "content_policy": N_("The upstream refused this prompt under its content policy."),
    "images_refused": N_("This model does not accept images. Remove the image or choose another model."),
    "bad_request": N_("The upstream could not process this request (400)."),
    "not_found": N_("The upstream does not know this model or endpoint (404)."),
    "status_error": N_("The upstream answered with an error (%(status)s)."),
    "timeout": N_("The upstream did not answer in time. Try again later."),
    "unreachable": N_("Could not connect to the upstream. Is OPENAI_BASE_URL right and the server up?"),
    "connection_dropped": N_("The upstream connection was interrupted before the answer was complete."),
    "unreadable": N_("The upstream sent a response this app cannot read."),
    "content_filter": N_("The upstream's content filter stopped this answer."),
    "request_failed": N_("The upstream request failed."),
    "declined": N_("The upstream declined to answer this prompt."),
    "timed_out": N_("The upstream did not answer in time (timed out)."),
    "no_answer": N_("The upstream returned no answer."),
    "empty_answer": N_("The upstream returned an empty answer."),
    "no_image": N_("The upstream returned no image."),
    "image_not_base64": N_("The upstream's image data is not valid base64."),
    "stalled": N_("The upstream timed out: it stopped sending before the answer was complete."),
    # A streamed answer that did not end well (app.generation).
    "unfinished_in_time": N_("The upstream did not finish the answer in time."),
    "ended_early": N_("The upstream connection ended before the answer was complete."),
    "interrupted": N_("The answer was interrupted before it finished. Use Retry to ask again."),
    "not_saved": N_("The answer could not be saved because the history database cannot be reached."),
    "answer_failed": N_("Something went wrong while generating the answer."),
    "image_failed": N_("Something went wrong while generating the image."),
    "image_not_stored": N_(
        "The image store cannot be reached, so the image was not saved. Try again in a moment."
    ),
    # The picture the upstream returned (app.images: the guarded download and the decoding).
    "image_url_invalid": N_("The upstream returned an invalid image URL."),
    "image_url_not_http": N_("The upstream returned an image URL that is not http(s)."),
    "image_host_unknown": N_("The image URL's host could not be found."),
    "image_url_private": N_("The image URL points at a private or local address; it was not fetched."),
    "image_redirects": N_("The image URL redirected too often."),
    "image_download_failed": N_("The generated image could not be downloaded."),
    "image_download_status": N_("Downloading the image failed (%(status)s)."),
    "image_download_timeout": N_("Downloading the generated image timed out."),
    "image_url_not_image": N_("The upstream's image URL did not return an image."),
    "image_too_large": N_("The upstream's image is too large."),
    "image_empty": N_("The upstream's image is empty."),
    "image_too_many_pixels": N_("The upstream's image is too large to decode safely."),
    "image_not_image": N_("The upstream's response is not an image."),
    "image_damaged": N_("The upstream's image is damaged (%(problem)s)."),
}


def failure(kind: str, /, **values: Any) -> Message:
    """The message of a failure of this `kind` (a key of FAILURES) with its values, to raise as
    an UpstreamError's message and store on the entry. KeyError for an unknown kind or a
    missing value: a mistake in the code, never in the data."""
    message = Message(FAILURES[kind], **values)
    message.kind = kind
    return message


def failure_fields(error: str) -> dict[str, Any]:
    """The fields a failed entry stores for `error`: its English sentence (for the exports and
    the JSON API) and, for a failure's Message (`failure`), its kind and values."""
    if isinstance(error, Message) and error.kind is not None:
        return {"error": str(error), "error_kind": error.kind, "error_params": dict(error.values)}
    return {"error": str(error), "error_kind": None, "error_params": {}}


def stored_failure(kind: str | None, values: dict[str, Any], sentence: str | None) -> str | None:
    """The message of an entry's stored failure: from its kind and values; for an entry stored
    before kinds existed (or by a newer version, with a kind this one does not know), its English
    sentence, recognised as a kind's message where it is one, else as written."""
    if kind in FAILURES:
        try:
            return failure(kind, **values)
        except (KeyError, ValueError, TypeError):
            pass  # values that do not fit the message: its stored sentence says it
    return recognised(sentence) if sentence else sentence


def _pattern(msgid: str) -> re.Pattern[str]:
    """A message as a pattern that matches its English text with any values."""
    parts = PLACEHOLDER.split(msgid)  # text, name, text, name, ..., text
    body = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(body)


_PATTERNS = {kind: _pattern(msgid) for kind, msgid in FAILURES.items() if PLACEHOLDER.search(msgid)}


def recognised(sentence: str) -> str:
    """A failure's English sentence as its message (so it can be translated with its values),
    or the sentence itself when it is no failure message with values. A fixed sentence is found
    in the catalogue as it is."""
    for kind, pattern in _PATTERNS.items():
        if match := pattern.fullmatch(sentence):
            return failure(kind, **match.groupdict())
    return sentence


# Error pages show Werkzeug's name of the status as their title, and its description when the
# error brings no message of its own (an unknown URL, a malformed form, a crash): `tr` finds them
# in the catalogue like any sentence, so they are marked here, as Werkzeug writes them, for the
# statuses the app answers with (tests/i18n/test_catalogue.py checks they still match Werkzeug's).
HTTP_TEXTS = {
    400: (
        N_("Bad Request"),
        N_("The browser (or proxy) sent a request that this server could not understand."),
    ),
    401: (N_("Unauthorized"), None),
    403: (N_("Forbidden"), None),
    404: (
        N_("Not Found"),
        N_(
            "The requested URL was not found on the server. If you entered the URL manually please check "
            "your spelling and try again."
        ),
    ),
    405: (N_("Method Not Allowed"), None),
    409: (N_("Conflict"), None),
    410: (N_("Gone"), None),
    413: (N_("Request Entity Too Large"), None),
    421: (N_("Misdirected Request"), None),
    429: (N_("Too Many Requests"), None),
    500: (
        N_("Internal Server Error"),
        N_(
            "The server encountered an internal error and was unable to complete your request. Either the "
            "server is overloaded or there is an error in the application."
        ),
    ),
    503: (N_("Service Unavailable"), None),
}
