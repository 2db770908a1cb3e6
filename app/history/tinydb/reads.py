"""Reading entries from the TinyDB history: one at a time, a day at a time, History's pages,
the gallery, a conversation, the pending answers, and search (a day's word index first, the text
only for what the index cannot decide)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..model import Entry, Page, Permalink, group_days, is_date
from ..query import Query, searchable_fields
from .days import TABLE
from .writer import JournalWriter


class EntryReads(JournalWriter):
    """The store's reads and search (see the module docstring)."""

    def get(self, date: str, index: int) -> Entry | None:
        """The entry at `/chatlog/<date>/<index>`, a tombstone if deleted, or None if never existed."""
        if not is_date(date) or index < 0:
            return None
        raw = self._day(date).entries.get(index)
        return Entry.from_dict(raw) if raw is not None else None

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Raw live entries (no tombstones), a day at a time: only as many days are read as used.

        `until` and `since` skip the dates after / before them without reading them.
        """
        dates = self.dates()
        if until is not None:
            dates = [d for d in dates if d <= until]
        if since is not None:
            dates = [d for d in dates if d >= since]
        for date in reversed(dates) if newest_first else dates:
            entries = [e for e in self._rows(date) if not e.get("deleted")]
            yield from reversed(entries) if newest_first else entries

    def _after_cursor(self, before: str | None) -> Iterator[dict[str, Any]]:
        start = Permalink.parse(before)
        for raw in self.iter_entries(until=start.date if start else None):
            if start is None or (raw["date"], raw["index"]) < (start.date, start.index):
                yield raw

    def page(self, limit: int, before: str | None = None) -> Page:
        """Up to `limit` entries, newest first, older than the cursor `before` ("<date>/<index>").

        A conversation appears once, as its latest turn (earlier turns have follow-ups).
        """
        picked: list[dict[str, Any]] = []
        more = False
        newest: dict[Permalink, Permalink] = {}  # a branched conversation's thread → its newest turn
        for raw in self._after_cursor(before):
            if raw.get("followups", 0) > 0 or not self._is_newest(Entry.from_dict(raw), newest):
                continue
            if len(picked) == limit:
                more = True
                break
            picked.append(raw)
        cursor = Permalink(picked[-1]["date"], picked[-1]["index"]).cursor if more and picked else None
        return Page(group_days(picked), cursor)

    def _is_newest(self, entry: Entry, newest: dict[Permalink, Permalink]) -> bool:
        """Whether `entry` is the newest live turn of its conversation, as History lists it.
        Only a conversation with branches can have another turn without follow-ups."""
        if not self._branched(entry):
            return True
        if entry.thread not in newest:
            newest[entry.thread] = self.conversation(entry)[-1].address
        return newest[entry.thread] == entry.address

    def images_page(self, limit: int, before: str | None = None) -> tuple[list[Entry], str | None]:
        """Up to `limit` image entries that still have their image, newest first, older than the
        cursor `before`; and the cursor of the next page, if any."""
        picked: list[Entry] = []
        for raw in self._after_cursor(before):
            if raw["kind"] != "image" or not raw.get("image_file"):
                continue
            if len(picked) == limit:
                return picked, picked[-1].address.cursor
            picked.append(Entry.from_dict(raw))
        return picked, None

    def conversation(self, entry: Entry) -> list[Entry]:
        """Every live turn of `entry`'s conversation in order (just `entry` for a single one)."""
        thread = entry.thread
        root = thread.stored()  # as the rows hold it (a day's state holds the stored form)
        turns = [
            Entry.from_dict(raw)
            for raw in self.iter_entries(newest_first=False, since=thread.date)
            if raw.get("root") == root or (raw["date"] == thread.date and raw["index"] == thread.index)
        ]
        return turns or [entry]

    def _folded_day(self, date: str) -> dict[int, tuple[dict[str, Any], str, str]]:
        """A day's live entries by index with their folded prompt and answer (kept with the
        day's state until it changes), for the text the word index cannot decide."""
        state = self._day(date)
        with state.lock:
            rows, version = state.rows(), state.version
            if state.folded is None or state.folded[0] != version:
                live = [raw for raw in rows if not raw.get("deleted")]
                state.folded = (version, {raw["index"]: (raw, *searchable_fields(raw)) for raw in live})
            return state.folded[1]

    def _day_hits(self, date: str, query: Query) -> dict[int, int]:
        """The day's matching entries (index → score): from its word index when that is up to
        date, checking only what the index cannot decide against the text; else from the text."""
        index = self._index_of(date)
        candidates: Iterable[int] | None = None
        if index is not None and not self._has_journal(date, index.gen):
            ranked, exact = index.rank(query)
            if exact or not ranked:
                return ranked
            candidates = ranked
        folded = self._folded_day(date)
        hits = {}
        for number in folded if candidates is None else candidates:
            if number not in folded:
                continue
            raw, prompt, answer = folded[number]
            if query.filters_ok(raw) and (score := query.score(prompt, answer)) is not None:
                hits[number] = score
        return hits

    def _search(self, query: Query, limit: int) -> list[Entry]:
        """Days newest first, until `limit` entries with every term in the prompt are found (no
        older entry can rank above them); then the best `limit` by score, date and index."""
        top = len(query.terms)
        hits: list[tuple[int, str, int]] = []
        best = 0
        for date in reversed(self.dates()):
            if not query.date_ok(date):
                continue
            for number, score in self._day_hits(date, query).items():
                hits.append((score, date, number))
                best += score == top
            if best >= limit:
                break
        hits.sort(reverse=True)
        wanted: dict[str, list[int]] = {}
        for _, date, number in hits[:limit]:
            wanted.setdefault(date, []).append(number)
        found = {date: self._entries_at(date, numbers) for date, numbers in wanted.items()}
        return [Entry.from_dict(found[date][n]) for _, date, n in hits[:limit] if n in found[date]]

    def _entries_at(self, date: str, numbers: list[int]) -> dict[int, dict[str, Any]]:
        """Some raw entries of a day. A day this process has not read yet, whose document holds
        everything (a current index, no journal since), gives just those entries, decoded from
        their place in the document: a search's hits spread over many days cost no full parse."""
        with self._states_lock:
            loaded = date in self._states
        index = None if loaded else self._index_of(date)
        if index is not None and not self._has_journal(date, index.gen):
            picked = self._decode_entries(date, numbers)
            if picked is not None:
                return picked
        entries = self._day(date).entries
        return {n: entries[n] for n in numbers if n in entries and not entries[n].get("deleted")}

    def _decode_entries(self, date: str, numbers: list[int]) -> dict[int, dict[str, Any]] | None:
        """The live entries `numbers` decoded from the day document alone; None when the
        document does not hold them where a folded document keeps them (read the day instead)."""
        try:
            data = self.paths.doc(date).read_bytes()
        except FileNotFoundError:
            return None
        decoder = json.JSONDecoder()
        start = data.find(b'"%s":{' % TABLE.encode())
        picked: dict[int, dict[str, Any]] = {}
        for number in numbers:
            # Keys are the indexes + 1 and each entry starts with its id; inside a JSON string
            # these quotes would be escaped, so the first unescaped match is the entry itself.
            # Only its bytes are decoded: up to the next entry's key.
            at = data.find(b'"%d":{"id":' % (number + 1), start) if start >= 0 else -1
            if at < 0:
                return None
            brace = data.index(b"{", at)
            end = data.find(b'"%d":{"id":' % (number + 2), brace)
            try:
                raw, _ = decoder.raw_decode(data[brace : end if end > 0 else len(data)].decode("utf-8"))
            except ValueError:
                return None
            if not isinstance(raw, dict) or raw.get("index") != number:
                return None
            if not raw.get("deleted"):
                picked[number] = raw
        return picked

    def pending(self) -> list[Entry]:
        """Every entry still waiting for its answer; days whose index lists none are not read."""
        found: list[Entry] = []
        for date in self.dates():
            index = self._index_of(date)
            if index is not None and not index.pending and not self._has_journal(date, index.gen):
                continue
            found += [
                Entry.from_dict(raw)
                for raw in self._rows(date)
                if raw.get("status") == "pending" and not raw.get("deleted")
            ]
        return found

    def count_on(self, date: str) -> int:
        """Entries created on `date`, deleted ones included (they were generated all the same)."""
        return len(self._day(date).entries) if is_date(date) else 0

    def count(self) -> int:
        """Number of entries (deleted ones left out)."""
        return sum(1 for _ in self.iter_entries())
