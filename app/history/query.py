"""What a search asks for, the same for every engine: words, quoted phrases and filters.

`parse_query('parse_rows "red fox" kind:code after:2026-01-01')` gives two terms and two filters.

- A word matches an entry whose prompt or answer contains it (a substring, so a code identifier
  such as `parse_rows` or `std::vector` matches as typed); several words must all be there, in any
  order and field. A `"quoted phrase"` must occur exactly, as whole words.
- Text is compared folded: case-insensitive, accents dropped (`uber` finds `über`), runs of
  whitespace as one space.
- Filters: `kind:image|code`, `before:YYYY-MM-DD`, `after:YYYY-MM-DD` (both exclusive) and
  `model:NAME` (the whole model name, case-insensitive).
- Ranking: the more of the terms an entry's prompt holds, the higher (a prompt match before an
  answer-only match), then newer first.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..i18n import N_
from .model import KINDS, is_date

MAX_TERMS = 8  # more words than this are left out (each costs the engines a condition)
_WORD = re.compile(r"\w+")
# Combining marks left by NFKD: dropping them folds `ü` to `u`, `é` to `e`.
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TOKEN = re.compile(r'"([^"]*)"?|(\S+)')
FILTERS = ("kind", "before", "after", "model")


class QueryError(ValueError):
    """A filter with a value it cannot have; the message says which and what is expected."""


def fold(text: str) -> str:
    """`text` as search compares it: case-folded, accents dropped, whitespace runs as one space."""
    if text.isascii():
        folded = text.lower()
    else:
        folded = _MARKS.sub("", unicodedata.normalize("NFKD", text).casefold())
    return " ".join(folded.split())


def tokens(folded: str) -> list[str]:
    """The word-runs of folded text (what the TinyDB word index holds)."""
    return _WORD.findall(folded)


@dataclass(frozen=True)
class Term:
    """One word or quoted phrase of a query, folded."""

    text: str
    phrase: bool = False

    @property
    def words(self) -> list[str]:
        return tokens(self.text)

    @property
    def exact_in_index(self) -> bool:
        """True when the word index alone decides it: a plain word that is one word-run (a
        phrase, or `std::vector`, needs the text to check the characters between runs)."""
        return not self.phrase and _WORD.fullmatch(self.text) is not None

    @property
    def pattern(self) -> re.Pattern[str]:
        """A phrase as whole words (no word character right before or after it)."""
        body = re.escape(self.text)
        head = r"(?<!\w)" if self.text[:1].isalnum() or self.text[:1] == "_" else ""
        tail = r"(?!\w)" if self.text[-1:].isalnum() or self.text[-1:] == "_" else ""
        return re.compile(head + body + tail)

    def found_in(self, folded: str) -> bool:
        """Whether this term occurs in the folded text of one field."""
        if self.phrase:
            return self.pattern.search(folded) is not None
        return self.text in folded


@dataclass(frozen=True)
class Query:
    """A parsed search: terms that must all match, and filters."""

    terms: tuple[Term, ...] = ()
    kind: str | None = None
    before: str | None = None
    after: str | None = None
    model: str | None = None

    @property
    def empty(self) -> bool:
        return not self.terms and not self.has_filters

    @property
    def has_filters(self) -> bool:
        return any(v is not None for v in (self.kind, self.before, self.after, self.model))

    def date_ok(self, date: str) -> bool:
        return (self.before is None or date < self.before) and (self.after is None or date > self.after)

    def filters_ok(self, raw: dict[str, Any]) -> bool:
        """The filters on one raw entry (dates, kind, model)."""
        if not self.date_ok(raw["date"]) or (self.kind is not None and raw.get("kind") != self.kind):
            return False
        return self.model is None or fold(raw.get("model") or "") == self.model

    def score(self, prompt: str, answer: str) -> int | None:
        """How many terms the folded prompt holds; None unless every term is in one field."""
        score = 0
        for term in self.terms:
            if term.found_in(prompt):
                score += 1
            elif not term.found_in(answer):
                return None
        return score

    def rank_raw(self, raw: dict[str, Any]) -> int | None:
        """The score of a raw stored entry, None when it does not match (reference evaluation)."""
        if raw.get("deleted") or not self.filters_ok(raw):
            return None
        prompt, answer = searchable_fields(raw)
        return self.score(prompt, answer)


def searchable_fields(raw: dict[str, Any]) -> tuple[str, str]:
    """The folded prompt and answer an entry is found by (an image's answer is its URL: not
    searched; a deleted entry has no text)."""
    if raw.get("deleted"):
        return "", ""
    answer = raw.get("response") or "" if raw.get("kind") != "image" else ""
    return fold(raw.get("prompt") or ""), fold(answer)


def _filter(name: str, value: str) -> tuple[str, str]:
    if name == "kind":
        if value.lower() not in KINDS:
            raise QueryError(N_("kind: must be kind:image or kind:code."))
        return name, value.lower()
    if name in ("before", "after"):
        if not is_date(value):
            raise QueryError(
                N_("before: needs a date written YYYY-MM-DD, e.g. before:2026-01-31.")
                if name == "before"
                else N_("after: needs a date written YYYY-MM-DD, e.g. after:2026-01-31.")
            )
        return name, value
    if not value:
        raise QueryError(N_("model: needs a model name, e.g. model:gpt-4o-mini."))
    return name, fold(value)


def parse_query(text: str) -> Query:
    """Words, `"quoted phrases"` and `name:value` filters (see the module docstring)."""
    text = _CONTROL.sub(" ", text or "")
    terms: list[Term] = []
    filters: dict[str, str] = {}
    for match in _TOKEN.finditer(text):
        phrase, word = match.group(1), match.group(2)
        if phrase is not None:
            folded = fold(phrase)
            if folded:
                terms.append(Term(folded, phrase=True))
            continue
        name, sep, value = word.partition(":")
        if sep and name.lower() in FILTERS:
            key, clean = _filter(name.lower(), value)
            filters[key] = clean
            continue
        folded = fold(word)
        if folded and Term(folded) not in terms:
            terms.append(Term(folded))
    return Query(tuple(terms[:MAX_TERMS]), **filters)
