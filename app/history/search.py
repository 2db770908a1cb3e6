"""Search over the TinyDB history: a word index per day, which ranks without reading the day.

What a query means is in app.history.query (the same for both engines). Scanning every day's text
costs a parse of every day file on a fresh server, so each day document has an index beside it
(`<date>.idx`): one line per distinct folded word of the day, with the entries that hold it in
their prompt and those that hold it only in their answer:

    word<TAB>prompt indexes<TAB>answer-only indexes

plus lines for the filters (`\\x01k:<kind>`, `\\x01m:<model>`) and one listing every live entry
(`\\x01all`). A plain word of a query is found as a substring of the index's words, so the index
alone gives each entry's matches and score; a phrase (or `std::vector`, whose characters between
word-runs the index does not keep) narrows the entries to check, and the store checks those few
against the text. The index is written by the checkpoint that writes its document and records
which document it describes, so a stale one is noticed and not trusted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import atomic_write
from .query import Query, fold, searchable_fields, tokens

INDEX_VERSION = 2  # 2: words with postings and filters (1 held only the day's words)
ALL = "\x01all"


def kind_word(kind: str) -> str:
    return f"\x01k:{kind}"


def model_word(model: str) -> str:
    """The index line of a model; `model` is folded (so it holds no tab or newline)."""
    return f"\x01m:{model}"


def index_body(rows: list[dict[str, Any]]) -> bytes:
    """The index lines of a day's live entries (see the module docstring)."""
    postings: dict[str, tuple[list[int], list[int]]] = {}
    for raw in rows:
        if raw.get("deleted"):
            continue
        number = raw["index"]
        prompt, answer = searchable_fields(raw)
        in_prompt = set(tokens(prompt))
        for word in in_prompt:
            postings.setdefault(word, ([], []))[0].append(number)
        meta = {ALL, kind_word(str(raw.get("kind"))), model_word(fold(raw.get("model") or ""))}
        for word in (set(tokens(answer)) - in_prompt) | meta:
            postings.setdefault(word, ([], []))[1].append(number)
    lines = [
        f"{word}\t{' '.join(map(str, sorted(p)))}\t{' '.join(map(str, sorted(a)))}\n"
        for word, (p, a) in sorted(postings.items())
    ]
    return "".join(lines).encode("utf-8", "replace")


def _numbers(segment: bytes) -> set[int]:
    return set(map(int, segment.split()))


@dataclass
class DayIndex:
    """A day's word index and what it describes."""

    document: list[int]  # the day document's (inode, size, mtime_ns) when the index was built
    gen: int  # the last journal generation that document holds
    body: bytes  # the index lines, after a leading newline (so every line starts after one)
    pending: list[int] = field(default_factory=list)  # indexes of entries then still pending

    def _lines_with(self, needle: bytes) -> Iterator[bytes]:
        """The lines whose word contains `needle` (never the filter lines)."""
        body = self.body
        pos = body.find(needle)
        for _ in range(len(body)):  # each round moves past one line
            if pos < 0:
                return
            start = body.rfind(b"\n", 0, pos) + 1
            tab = body.find(b"\t", start)
            end = body.find(b"\n", pos)
            if pos + len(needle) <= tab and body[start : start + 1] != b"\x01":
                yield body[start:end]
            pos = body.find(needle, end)

    def _word_sets(self, run: str) -> tuple[set[int], set[int]]:
        """Entries holding `run` inside a word: (in the prompt, anywhere)."""
        prompt: set[int] = set()
        anywhere: set[int] = set()
        for line in self._lines_with(run.encode("utf-8", "replace")):
            _, p, a = line.split(b"\t")
            in_prompt = _numbers(p)
            prompt |= in_prompt
            anywhere |= in_prompt | _numbers(a)
        return prompt, anywhere

    def _line(self, word: str) -> set[int]:
        """The entries of one exact index line (a filter line)."""
        needle = b"\n" + word.encode("utf-8", "replace") + b"\t"
        pos = self.body.find(needle)
        if pos < 0:
            return set()
        end = self.body.find(b"\n", pos + 1)
        _, p, a = self.body[pos + 1 : end].split(b"\t")
        return _numbers(p) | _numbers(a)

    def rank(self, query: Query) -> tuple[dict[int, int], bool]:
        """The day's entries that may match, with their scores; and whether that is exact (else
        the caller checks them against the text)."""
        candidates = self._line(ALL)
        if query.kind is not None:
            candidates &= self._line(kind_word(query.kind))
        if query.model is not None:
            candidates &= self._line(model_word(query.model))
        exact = True
        in_prompt: list[set[int]] = []
        for term in query.terms:
            exact = exact and term.exact_in_index
            prompt: set[int] | None = None
            for run in term.words:
                p, anywhere = self._word_sets(run)
                candidates &= anywhere
                prompt = p if prompt is None else prompt & p
                if not candidates:
                    return {}, True
            in_prompt.append(prompt if prompt is not None else candidates)
        return {n: sum(n in p for p in in_prompt) for n in candidates}, exact

    def write(self, path: Path) -> None:
        header = {"v": INDEX_VERSION, "document": self.document, "gen": self.gen, "pending": self.pending}
        # Derived data: atomic (never half-read) but not fsynced; a lost index is rebuilt.
        atomic_write(path, json.dumps(header).encode() + self.body, durable=False)

    @classmethod
    def read(cls, path: Path) -> DayIndex | None:
        """The index in `path`; None when it is missing, of another version or damaged."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        head, newline, body = data.partition(b"\n")
        try:
            header = json.loads(head)
            if header.get("v") != INDEX_VERSION:
                return None
            document, gen = list(header["document"]), int(header["gen"])
            return cls(document, gen, newline + body, list(header.get("pending", [])))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
