"""Search over the TinyDB history: a word index per day, which ranks without reading the day.

What a query means is in app.history.query (the same for both engines). Scanning every day's text
costs a parse of every day file on a fresh server, so each day document has an index beside it
(`<date>.idx`): one line per distinct folded word of the day, with the entries that hold it in
their prompt and those that hold it only in their answer, each as a set of entry indexes written
as a bit set in hex (bit n set: entry n holds it), so sets are read and intersected at C speed:

    word<TAB>prompt entries<TAB>answer-only entries

plus lines for the filters (`\\x01k:<kind>`, `\\x01m:<model>`), one listing every live entry
(`\\x01all`), and one per pair of words that follow each other with one space between
(`\\x02red fox`), so a two-word phrase is answered by the index alone and a longer one narrowed
to few entries. A plain word of a query is found as a substring of the index's words, so the index
alone gives each entry's matches and score; a phrase (or `std::vector`, whose characters between
word-runs the index does not keep) narrows the entries to check, and the store checks those few
against the text. The index is written by the checkpoint that writes its document and records
which document it describes, so a stale one is noticed and not trusted.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...files import atomic_write
from ..query import Query, Term, fold, searchable_fields

INDEX_VERSION = 2  # 2: words with their entries, and filters (1 held only the day's words)
ALL = "\x01all"
PAIR = "\x02"  # the lines of word pairs
_RUN = re.compile(r"\w+")
_PAIRS = re.compile(r"(?<!\w)(?=(\w+ \w+))")  # at each word's start: it, a space, the next word


def kind_word(kind: str) -> str:
    return f"\x01k:{kind}"


def model_word(model: str) -> str:
    """The index line of a model; `model` is folded (so it holds no tab or newline)."""
    return f"\x01m:{model}"


def index_body(rows: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """The index lines of a day's live entries (see the module docstring): the words and
    filters, and the word pairs (kept apart: only a phrase reads them)."""
    postings: dict[str, list[int]] = {}
    for raw in rows:
        if raw.get("deleted"):
            continue
        bit = 1 << raw["index"]
        prompt, answer = searchable_fields(raw)
        in_prompt = _words(prompt)
        for word in in_prompt:
            postings.setdefault(word, [0, 0])[0] |= bit
        meta = {ALL, kind_word(str(raw.get("kind"))), model_word(fold(raw.get("model") or ""))}
        for word in (_words(answer) - in_prompt) | meta:
            postings.setdefault(word, [0, 0])[1] |= bit
    words: list[str] = []
    pairs: list[str] = []
    for word, (p, a) in sorted(postings.items()):
        (pairs if word.startswith(PAIR) else words).append(f"{word}\t{_encode(p)}\t{_encode(a)}\n")
    return "".join(words).encode("utf-8", "replace"), "".join(pairs).encode("utf-8", "replace")


def _words(folded: str) -> set[str]:
    """The distinct words of folded text, and the pairs of words one space apart."""
    found = set(_RUN.findall(folded))
    found.update({PAIR + pair for pair in _PAIRS.findall(folded)})
    return found


def _encode(bits: int) -> str:
    """A set of entries: hex bits when dense, `,3,17` (the indexes) when sparse, '' when empty."""
    if not bits:
        return ""
    count = bits.bit_count()
    if count * 4 < bits.bit_length() // 4:
        return "".join(f",{n}" for n in entries_of(bits))
    return f"{bits:x}"


def _bits(segment: bytes) -> int:
    if not segment:
        return 0
    if segment[:1] == b",":
        bits = 0
        for number in segment[1:].split(b","):
            bits |= 1 << int(number)
        return bits
    return int(segment, 16)


def entries_of(bits: int) -> list[int]:
    """The entry indexes in a bit set."""
    found = []
    for _ in range(bits.bit_length()):  # each round takes the lowest bit set
        if not bits:
            break
        low = bits & -bits
        found.append(low.bit_length() - 1)
        bits ^= low
    return found


@dataclass
class DayIndex:
    """A day's word index and what it describes."""

    document: list[int]  # the day document's (inode, size, mtime_ns) when the index was built
    gen: int  # the last journal generation that document holds
    body: bytes  # the word and filter lines, after a leading newline (every line follows one)
    pending: list[int] = field(default_factory=list)  # indexes of entries then still pending
    pairs: bytes | None = None  # the word pair lines (as body), read when a phrase needs them
    source: tuple[Path, int, int, int] | None = None  # (file, inode, mtime_ns, pairs offset)

    def _pairs(self) -> bytes:
        """The pair lines, read from the index file on first use; empty if it was replaced
        meanwhile (the phrase is then checked against the text instead)."""
        if self.pairs is None:
            self.pairs = b""
            if self.source is not None:
                path, inode, mtime, offset = self.source
                try:
                    with open(path, "rb") as fh:
                        st = os.fstat(fh.fileno())
                        if (st.st_ino, st.st_mtime_ns) == (inode, mtime):
                            fh.seek(offset)
                            self.pairs = b"\n" + fh.read()
                except FileNotFoundError:
                    pass
        return self.pairs

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
            if pos + len(needle) <= tab and body[start] >= 0x20:  # not a filter or pair line
                yield body[start:end]
            pos = body.find(needle, end)

    def _word_bits(self, run: str) -> tuple[int, int]:
        """Entries holding `run` inside a word: (in the prompt, anywhere), as bit sets."""
        prompt = anywhere = 0
        for line in self._lines_with(run.encode("utf-8", "replace")):
            _, p, a = line.split(b"\t")
            in_prompt = _bits(p)
            prompt |= in_prompt
            anywhere |= in_prompt | _bits(a)
        return prompt, anywhere

    def _exact(self, word: str) -> tuple[int, int]:
        """The entries of one whole index line: (in the prompt, only in the answer)."""
        body = self._pairs() if word.startswith(PAIR) else self.body
        needle = b"\n" + word.encode("utf-8", "replace") + b"\t"
        pos = body.find(needle)
        if pos < 0:
            return 0, 0
        end = body.find(b"\n", pos + 1)
        _, p, a = body[pos + 1 : end].split(b"\t")
        return _bits(p), _bits(a)

    def _line(self, word: str) -> int:
        """The entries of one exact index line (a filter line), as a bit set."""
        p, a = self._exact(word)
        return p | a

    def _term_bits(self, term: Term) -> tuple[int, int, bool]:
        """Entries that may hold `term`: (in the prompt, anywhere, whether exactly so). A phrase
        of words one space apart is looked up by its word pairs (exact for one or two words);
        anything else by each word-run inside the index's words."""
        runs = term.words
        if term.phrase and runs and term.text == " ".join(runs) and (len(runs) == 1 or self._pairs()):
            if len(runs) == 1:
                p, a = self._exact(runs[0])
                return p, p | a, True
            prompt = anywhere = -1
            for pair in itertools.pairwise(runs):
                p, a = self._exact(f"{PAIR}{pair[0]} {pair[1]}")
                prompt, anywhere = prompt & p, anywhere & (p | a)
            return prompt, anywhere, len(runs) == 2
        prompt = anywhere = -1
        for run in runs:
            p, any_run = self._word_bits(run)
            prompt, anywhere = prompt & p, anywhere & any_run
        return prompt, anywhere, term.exact_in_index

    def rank(self, query: Query) -> tuple[dict[int, int], bool]:
        """The day's entries that may match, with their scores; and whether that is exact (else
        the caller checks them against the text)."""
        candidates = -1  # every entry, until a term or filter narrows it
        for word, wanted in ((kind_word, query.kind), (model_word, query.model)):
            if wanted is not None:
                candidates &= self._line(word(wanted))
        exact = True
        in_prompt: list[int] = []
        for term in query.terms:
            prompt, anywhere, precise = self._term_bits(term)
            candidates &= anywhere
            if not candidates:
                return {}, True
            exact = exact and precise
            in_prompt.append(prompt)
        if candidates < 0:  # nothing narrowed it (a term without word characters): every entry
            candidates &= self._line(ALL)
        return {n: sum(p >> n & 1 for p in in_prompt) for n in entries_of(candidates)}, exact

    def write(self, path: Path) -> None:
        """Header line, the word lines, then the pair lines (the header says where they start)."""
        words = self.body[1:]
        header = {
            "v": INDEX_VERSION,
            "document": self.document,
            "gen": self.gen,
            "pending": self.pending,
            "words": len(words),
        }
        data = json.dumps(header).encode() + b"\n" + words + (self.pairs or b"\n")[1:]
        # Derived data: atomic (never half-read) but not fsynced; a lost index is rebuilt.
        atomic_write(path, data, durable=False)

    @staticmethod
    def describes(path: Path, document: tuple[int, int, int]) -> bool:
        """Whether the index in `path` is of this version and describes `document` (its first
        line is read, nothing more)."""
        try:
            with open(path, "rb") as fh:
                header = json.loads(fh.readline(64 * 1024))
            return header.get("v") == INDEX_VERSION and tuple(header["document"]) == document
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return False

    @classmethod
    def read(cls, path: Path) -> DayIndex | None:
        """The index in `path` (its pair lines are read when first needed); None when it is
        missing, of another version or damaged."""
        try:
            with open(path, "rb") as fh:
                head = fh.readline(64 * 1024)
                header = json.loads(head)
                if not isinstance(header, dict) or header.get("v") != INDEX_VERSION:
                    return None
                words = fh.read(int(header["words"]))
                st = os.fstat(fh.fileno())
            source = (path, st.st_ino, st.st_mtime_ns, len(head) + len(words))
            document, gen = list(header["document"]), int(header["gen"])
            return cls(document, gen, b"\n" + words, list(header.get("pending", [])), None, source)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
