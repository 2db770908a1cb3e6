"""What the history holds: entries, their permalinks, days and pages of them."""

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
        return f"/chatlog/{self.date}/{self.index}"

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
    # Conversations: the permalink of the turn this one follows up, and of the first turn.
    parent: str | None = None
    root: str | None = None
    turn: int = 1
    followups: int = 0  # live turns that follow up this one; History shows a thread's latest
    context_dropped: int = 0  # earlier turns left out of the context to fit the budget
    deleted: bool = False
    # Branches (Edit / Regenerate): the permalink of the first version of the turn this one is
    # another version of; its versions share it (the first version has None and is its own).
    sibling_of: str | None = None
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
        return self.address.url

    @property
    def thread(self) -> str:
        """The permalink of the conversation's first turn (its own for a single exchange)."""
        return self.root or self.permalink

    @property
    def versions_of(self) -> str:
        """The permalink naming this turn's versions: its first version's (its own if first)."""
        return self.sibling_of or self.permalink

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
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
