"""Search over the TinyDB history: what text an entry is found by, and a word index per day.

A search finds the entries whose prompt or answer contains the query as a case-insensitive
substring. Scanning every day's text costs a parse of every day file on a fresh server, so each
day document has a small index beside it (`<date>.idx`): the day's distinct words. A day can only
hold the query if every word-run of the query occurs inside one of the day's words; the few days
that pass that test are scanned, the others are not even read. The index is written by the
checkpoint that writes its document and records which document it describes, so a stale one is
noticed and not trusted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write

INDEX_VERSION = 1
_WORD = re.compile(r"\w+")
SEPARATOR = "\x00"  # between prompt and answer in an entry's searchable text


def searchable(raw: dict[str, Any]) -> str:
    """The case-folded text an entry is found by: its prompt, and its answer unless an image."""
    if raw.get("deleted"):
        return ""
    answer = raw.get("response", "") if raw.get("kind") != "image" else ""
    return f"{raw.get('prompt', '')}{SEPARATOR}{answer}".casefold()


def query_words(needle: str) -> list[bytes]:
    """The word-runs of a (case-folded) query; each must occur inside a word of a matching day."""
    return [w.encode("utf-8", "replace") for w in _WORD.findall(needle)]


def day_words(rows: list[dict[str, Any]]) -> bytes:
    """The distinct words of a day's live entries, one per line (the index's body)."""
    words: set[str] = set()
    for raw in rows:
        words.update(_WORD.findall(searchable(raw)))
    return "\n".join(sorted(words)).encode("utf-8", "replace")


@dataclass
class DayIndex:
    """A day's word index and what it describes."""

    document: list[int]  # the day document's (inode, size, mtime_ns) when the index was built
    gen: int  # the last journal generation that document holds
    words: bytes
    pending: list[int] = field(default_factory=list)  # indexes of entries then still pending

    def may_contain(self, words: list[bytes]) -> bool:
        """False only when the day certainly holds no entry with all of `words` (in one entry or
        not: the test is per day, the scan that follows is per entry)."""
        return all(word in self.words for word in words)

    def write(self, path: Path) -> None:
        header = {"v": INDEX_VERSION, "document": self.document, "gen": self.gen, "pending": self.pending}
        # Derived data: atomic (never half-read) but not fsynced; a lost index is rebuilt.
        atomic_write(path, json.dumps(header).encode() + b"\n" + self.words, durable=False)

    @classmethod
    def read(cls, path: Path) -> DayIndex | None:
        """The index in `path`; None when it is missing, of another version or damaged."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        head, _, words = data.partition(b"\n")
        try:
            header = json.loads(head)
            if header.get("v") != INDEX_VERSION:
                return None
            return cls(list(header["document"]), int(header["gen"]), words, list(header.get("pending", [])))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
