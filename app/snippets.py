"""Search hits as a person reads them: a short snippet around the first match with the matched
words in `<mark>`, and the marks on the entry page a hit links to (`?hl=<query>#match`).

Matching happens on folded text (app.history.query.fold); marking happens on the text as written.
The bridge is a regular expression built from the folded terms that accepts every case and
accented form of each letter (`uber` marks `Über`), so no position has to be mapped back. Text is
cut first and escaped afterwards, so a snippet never ends inside a tag or an entity, and it is cut
between characters (never inside a multi-byte one) and never between a letter and its accent.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain

from markupsafe import Markup, escape

from .history import Entry
from .history.query import Query, Term, fold

SNIPPET_CHARS = 160
TITLE_CHARS = 120
_COMBINING = "[\u0300-\u036f]*"
_TAG = re.compile(r"(<[^>]*>)")


@lru_cache(maxsize=1)
def _variants() -> dict[str, str]:
    """For each folded letter, the precomposed Latin letters that fold to it (`u` → `úùûü…`)."""
    table: dict[str, set[str]] = defaultdict(set)
    for code in chain(range(0xC0, 0x250), range(0x1E00, 0x1F00)):
        char = chr(code)
        folded = fold(char)
        if len(folded) == 1 and folded != char:
            table[folded].add(char)
    return {letter: "".join(sorted(chars)) for letter, chars in table.items()}


def _term_pattern(term: Term) -> str:
    parts: list[str] = []
    text, at = term.text, 0
    for _ in range(len(text)):  # each round consumes one or two characters
        if at >= len(text):
            break
        if text.startswith("ss", at):
            parts.append("(?:ss|ß|ẞ)")
            at += 2
            continue
        char = text[at]
        if char == " ":
            parts.append(r"\s+")
        else:
            others = _variants().get(char, "")
            parts.append(f"[{re.escape(char + others)}]{_COMBINING}" if others else re.escape(char))
        at += 1
    body = "".join(parts)
    if term.phrase:
        head = r"(?<!\w)" if text[:1].isalnum() or text[:1] == "_" else ""
        tail = r"(?!\w)" if text[-1:].isalnum() or text[-1:] == "_" else ""
        body = head + body + tail
    return body


def match_pattern(query: Query) -> re.Pattern[str] | None:
    """One expression matching any term of `query` in text as written; None without terms."""
    if not query.terms:
        return None
    ordered = sorted(query.terms, key=lambda t: len(t.text), reverse=True)  # longest wins
    return re.compile("|".join(f"(?:{_term_pattern(t)})" for t in ordered), re.IGNORECASE)


def mark(text: str, pattern: re.Pattern[str] | None) -> Markup:
    """`text` escaped, each match of `pattern` wrapped in `<mark>`."""
    if pattern is None:
        return escape(text)
    # NUL and SOH stand for the tags while the whole is escaped once (they are dropped from
    # the text: control characters that show nothing).
    clean = text.replace("\x00", "").replace("\x01", "")
    parts: list[str] = []
    last = 0
    for match in pattern.finditer(clean):
        if match.end() > match.start():
            parts += [clean[last : match.start()], "\x00", match.group(), "\x01"]
            last = match.end()
    parts.append(clean[last:])
    escaped = html.escape("".join(parts))
    return Markup(escaped.replace("\x00", "<mark>").replace("\x01", "</mark>"))


class Matcher:
    """Finds a query's first match in text as written (see the module docstring)."""

    def __init__(self, query: Query) -> None:
        self.terms = query.terms
        self.pattern = match_pattern(query)
        self.longest = max((len(t.text) for t in query.terms), default=0)

    def first(self, flat: str) -> int | None:
        """Where the first match in `flat` (one-line text) starts, None without one. ASCII text
        folds to its lower case, same length, so plain searches find it; other text takes the
        expression, which accepts every accented form."""
        if self.pattern is None:
            return None
        if not flat.isascii():
            match = self.pattern.search(flat)
            return match.start() if match else None
        lower = flat.lower()
        starts = []
        for term in self.terms:
            if term.phrase:
                found = term.pattern.search(lower)
                starts.append(found.start() if found else -1)
            else:
                starts.append(lower.find(term.text))
        return min((at for at in starts if at >= 0), default=None)


def _widen(flat: str, start: int, end: int) -> tuple[int, int]:
    """Move a window's edges to spaces nearby and off combining marks."""
    if start > 0 and (space := flat.find(" ", start, start + 20)) >= 0:
        start = space + 1
    if end < len(flat) and (space := flat.rfind(" ", end - 20, end)) > start:
        end = space
    while 0 < start < len(flat) and unicodedata.combining(flat[start]):
        start -= 1
    while end < len(flat) and unicodedata.combining(flat[end]):
        end += 1
    return start, end


def snippet(text: str, matcher: Matcher, width: int = SNIPPET_CHARS) -> Markup | None:
    """About `width` characters of `text` (on one line) around its first match, marked; None
    when it has no match. Only the window is searched for the marks."""
    flat = " ".join(text.split())
    at = matcher.first(flat)
    if at is None:
        return None
    start = max(0, min(at - width // 3, len(flat) - width))
    start, end = _widen(flat, start, min(len(flat), max(start + width, at + matcher.longest)))
    if at < start:  # a long word before the match: keep the match whole
        start = at
    body = mark(flat[start:end], matcher.pattern)
    return Markup("").join([Markup("…" if start else ""), body, Markup("…" if end < len(flat) else "")])


def beginning(text: str, width: int = TITLE_CHARS) -> Markup:
    """The start of `text` on one line, escaped, for a hit without a match there."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return escape(flat)
    _, end = _widen(flat, 0, width)
    return escape(flat[:end]) + Markup("…")


# An entry's URL, with query parameters and `_anchor` as url_for takes them (url_for_entry).
Link = Callable[..., str]


@dataclass(frozen=True)
class Hit:
    """One search result: the entry, its prompt (marked), the answer's snippet when the answer
    holds a match, where the first match is, and the link that jumps to it."""

    entry: Entry
    title: Markup
    snippet: Markup | None
    field: str | None
    url: str


def hits(entries: list[Entry], query: Query, text: str, link: Link) -> list[Hit]:
    """The search results of `entries` for `query` (typed as `text`); `link` builds an entry's
    URL, which for a hit with a match jumps to it (`?hl=<text>#match`)."""
    matcher = Matcher(query)
    found = []
    for entry in entries:
        title = snippet(entry.prompt, matcher, TITLE_CHARS)
        answer = snippet(entry.response, matcher) if entry.kind != "image" else None
        field = "prompt" if title is not None else "answer" if answer is not None else None
        url = link(entry, hl=text, _anchor="match") if field else link(entry)
        found.append(Hit(entry, title or beginning(entry.prompt), answer, field, url))
    return found


class Marker:
    """Marks a query's matches on an entry page; the first mark gets `id="match"`, the target of
    a search hit's link (the browser scrolls to it and :target highlights it)."""

    def __init__(self, query: Query) -> None:
        self.pattern = match_pattern(query)
        self.first = True

    def _mark(self, text: str) -> Markup:
        marked = mark(text, self.pattern)
        if self.first and "<mark>" in marked:
            self.first = False
            return Markup(str(marked).replace("<mark>", '<mark id="match">', 1))
        return marked

    def text(self, text: str) -> Markup:
        """Plain text (a prompt), escaped and marked."""
        return self._mark(text)

    def html(self, html: Markup) -> Markup:
        """Sanitized HTML (a rendered answer): only the text between tags is marked."""
        out = []
        for part in _TAG.split(str(html)):
            if part.startswith("<"):
                out.append(part)
            else:
                out.append(str(self._mark(Markup(part).unescape())))
        return Markup("".join(out))
