"""What the history holds: entries, their permalinks, days and pages of them.

An entry's links to other entries (`parent`, `root`, `sibling_of`: LINKS) are Permalink values.
The stores keep them as such: TinyDB as `{"date": "YYYY-MM-DD", "index": n}` (what
`Entry.to_dict()` gives, the *stored form*), PostgreSQL as a pair of columns each. Only where the
history leaves or enters the app as text (the JSON API, the exports, a backup's history.json, form
fields) is a permalink written `/chatlog/<date>/<index>`: `Permalink.url` writes it,
`Permalink.parse` reads it, and `Entry.exported()` gives an entry's fields in that form. Data
written before links were stored as values holds that text; `Permalink.of` and
`Entry.from_dict` still read it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..images.names import stored_url
from ..messages import stored_failure

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
KINDS = ("code", "image")


def is_date(value: object) -> bool:
    """True for a `YYYY-MM-DD` string (the whole string: no trailing newline slips through)."""
    return isinstance(value, str) and DATE_RE.fullmatch(value) is not None


@dataclass(frozen=True, order=True)
class Permalink:
    """An entry's fixed address: its date and its 0-based index within that day. Ordered by
    date, then index; unpacks as `date, index`."""

    date: str
    index: int

    def __iter__(self) -> Iterator[Any]:
        return iter((self.date, self.index))

    @property
    def url(self) -> str:
        """The permalink as text, `/chatlog/<date>/<index>`: what the JSON API, the exports and
        backups write and what form fields and imports give back (:meth:`parse` reads it).

        The one place the app spells it. It is not `url_for`'s: it is an entry's name in data,
        the same with or without a request (CLI exports, the daily backup in a background
        thread) and wherever the app is mounted. Links in pages are built with `url_for`
        (app.views.templating.url_for_entry).
        """
        return f"/chatlog/{self.date}/{self.index}"

    def stored(self) -> dict[str, Any]:
        """The permalink as the history stores a link to it: `{"date": ..., "index": ...}`."""
        return {"date": self.date, "index": self.index}

    @property
    def cursor(self) -> str:
        """The `<date>/<index>` form used by paging cursors."""
        return f"{self.date}/{self.index}"

    @classmethod
    def parse(cls, text: object) -> Permalink | None:
        """`/chatlog/<date>/<index>` or `<date>/<index>` → a Permalink; None if malformed."""
        if not isinstance(text, str):
            return None
        date, _, index = text.removeprefix("/chatlog/").partition("/")
        if not is_date(date) or not index.isdigit() or not index.isascii():
            return None
        return cls(date, int(index))

    @classmethod
    def of(cls, value: object) -> Permalink | None:
        """A stored link as a Permalink: its stored form (`{"date", "index"}`), a Permalink, or
        the text `/chatlog/<date>/<index>` that data from before links were values holds; None
        for no link and for anything malformed (a link to nothing)."""
        if value is None or isinstance(value, Permalink):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, dict):
            date, index = value.get("date"), value.get("index")
            if is_date(date) and isinstance(index, int) and not isinstance(index, bool) and index >= 0:
                return cls(str(date), index)
        return None


LINKS = ("parent", "root", "sibling_of")  # an entry's fields that name another entry


def stored_links(raw: dict[str, Any]) -> dict[str, Any] | None:
    """An entry as stored with its links in the stored form, when some are in the text form of
    older data (a document or journal written before links were values); None when none is."""
    old = [name for name in LINKS if isinstance(raw.get(name), str)]
    if not old:
        return None
    new = dict(raw)
    for name in old:
        link = Permalink.parse(raw[name])
        new[name] = link.stored() if link is not None else None
    return new


def parse_cursor(cursor: str | None) -> Permalink | None:
    """`"<date>/<index>"` (or a permalink URL) → (date, index); None when missing or malformed."""
    return Permalink.parse(cursor) if cursor else None


class HistoryCorrupt(RuntimeError):
    """A history file was damaged; it has been moved aside (quarantined) and is named here."""

    def __init__(self, path: Path, detail: str, moved_to: Path | None = None) -> None:
        where = f"; it was moved aside to {moved_to.name}" if moved_to else ""
        super().__init__(f"The history file {path} is damaged ({detail}){where}.")
        self.path = path
        self.detail = detail
        self.moved_to = moved_to


class HistoryUnavailable(RuntimeError):
    """The history store cannot be reached (its database is down); nothing was written."""


@dataclass
class Entry:
    """One exchange: a prompt and its answer (markdown text or the app's own image URL)."""

    id: str
    date: str
    index: int
    created_at: str
    kind: str
    prompt: str
    response: str = ""
    model: str = ""
    status: str = "pending"
    error: str | None = None  # a failure's English sentence, as the exports and the JSON API show it
    demo: bool = False
    image_file: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    dimensions: list[int] = field(default_factory=list)
    # Conversations: the turn this one follows up, and the conversation's first turn.
    parent: Permalink | None = None
    root: Permalink | None = None
    turn: int = 1
    followups: int = 0  # live turns that follow up this one; History shows a thread's latest
    context_dropped: int = 0  # earlier turns left out of the context to fit the budget
    deleted: bool = False
    # Branches (Edit / Regenerate): the first version of the turn this one is another version
    # of; its versions share it (the first version has None and is its own).
    sibling_of: Permalink | None = None
    branched: bool = False  # on a conversation's first turn: one of its turns has versions
    # The picture sent along with the prompt: a stored `<hex>.png` this entry owns (an image
    # attached to a code prompt, or the picture an image edit started from).
    input_image: str | None = None
    # A failure as its kind (a key of app.messages.FAILURES) and the values of its message, so a
    # page shows it in its reader's language; None for entries stored before kinds existed.
    error_kind: str | None = None
    error_params: dict[str, Any] = field(default_factory=dict)

    @property
    def error_message(self) -> str | None:
        """Why it failed, as a message to translate where it is shown (the `tr` filter): from its
        kind and values, or the stored sentence of an older entry; None if it did not fail."""
        return stored_failure(self.error_kind, self.error_params, self.error)

    @property
    def address(self) -> Permalink:
        return Permalink(self.date, self.index)

    @property
    def permalink(self) -> str:
        """The entry's permalink as text (`/chatlog/<date>/<index>`), for the JSON API, form
        fields and the log; see Permalink.url."""
        return self.address.url

    @property
    def thread(self) -> Permalink:
        """The conversation's first turn (the entry itself for a single exchange)."""
        return self.root or self.address

    @property
    def versions_of(self) -> Permalink:
        """What names this turn's versions: its first version (the entry itself if first)."""
        return self.sibling_of or self.address

    @property
    def input_image_url(self) -> str | None:
        """The same-origin URL of the picture sent with the prompt, or None."""
        return stored_url(self.input_image) if self.input_image else None

    @property
    def image_url(self) -> str | None:
        """The same-origin URL of this entry's image, or None when it has none (any more)."""
        return self.response if self.kind == "image" and self.image_file else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entry:
        """The entry of a dict in the stored form or the exported one (links as text)."""
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        for name in LINKS:
            if name in known:
                known[name] = Permalink.of(known[name])
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        """Every field in the stored form (links as `{"date", "index"}`), as the stores keep it."""
        return asdict(self)

    def exported(self) -> dict[str, Any]:
        """Every field as the exports and backups write it: links as permalink text."""
        row = self.to_dict()
        for name in LINKS:
            link = getattr(self, name)
            row[name] = link.url if link is not None else None
        return row


@dataclass(frozen=True)
class Day:
    """The entries of one date, in the order the caller asked for."""

    date: str
    entries: list[Entry]


@dataclass(frozen=True)
class Page:
    """One page of history, newest first, and the cursor of the next (older) page if any."""

    days: list[Day]
    next_cursor: str | None


def group_days(entries: list[dict[str, Any]]) -> list[Day]:
    """Raw entries (already in the wanted order) grouped into consecutive days."""
    days: list[Day] = []
    for raw in entries:
        if not days or days[-1].date != raw["date"]:
            days.append(Day(raw["date"], []))
        days[-1].entries.append(Entry.from_dict(raw))
    return days
