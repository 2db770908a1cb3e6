"""The history store's interface (every method the app calls, typed) and the behaviour both
engines share, written once on top of each engine's primitives."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..messages import failure_fields
from . import branches
from .claims import StreamClaims
from .model import KINDS, Day, Entry, Page, Permalink, group_days
from .query import Query, parse_query
from .seed import ImageFileFor, seed_row

Clock = Callable[[], datetime]
MAX_CHAIN = 10_000  # bound on walking a conversation's parent links (a hand-edited file may loop)


@dataclass
class ImportResult:
    """What one batch of entries put at their permalinks did (copy, migration, restore)."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    orphaned_images: list[str] = field(default_factory=list)  # replaced or deleted by the copy

    def add(self, other: ImportResult) -> None:
        """Count another batch's result in this one."""
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.conflicts += other.conflicts
        self.orphaned_images += other.orphaned_images


class HistoryStore(Protocol):
    """What the routes, the generator and the CLI use of a history, whatever its engine.

    Engines: :class:`app.history.tinydb.ChatLog` (TinyDB day documents under a journal in
    DATA_DIR, the default) and :class:`app.history.sql.SQLChatLog` (PostgreSQL).
    """

    backend: str
    clock: Clock

    @property
    def claims(self) -> StreamClaims:
        """Who streams which pending entry, and Stop requests."""
        ...

    # -- writes
    def begin(
        self,
        kind: str,
        prompt: str,
        model: str,
        *,
        demo: bool = False,
        parent: Entry | None = None,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        """Store a new pending entry for `prompt` before the upstream is asked, and return it.

        `parent`: the turn it follows up. `replaces`: the turn it is another version of (it
        then takes that turn's place: same parent, given as `parent`, same turn number).
        `input_image`: the stored picture sent with the prompt.
        """
        ...

    def finish(self, entry: Entry, response: str, **extra: Any) -> Entry:
        """Record the answer of a pending entry; it is durable when this returns."""
        ...

    def fail(self, entry: Entry, error: str, *, partial: str = "", **extra: Any) -> Entry:
        """Mark a pending entry failed, keeping the prompt and any partial answer. A failure's
        message (app.messages.failure) is stored as its kind and values too, so pages show it in
        their reader's language; the English sentence stays in `error` for the exports."""
        ...

    def stop(self, entry: Entry, partial: str, **extra: Any) -> Entry:
        """Mark a pending entry stopped by the user, keeping the partial answer."""
        ...

    def delete(self, date: str, index: int) -> Entry | None:
        """Delete one entry, leaving a tombstone; returns what was deleted (None if nothing)."""
        ...

    def delete_day(self, date: str) -> list[Entry]:
        """Delete every entry of a date; returns them."""
        ...

    def import_seed(self, data: Any, image_file_for: ImageFileFor = ...) -> tuple[int, int]:
        """Import the seed's chatlog.json format; returns (added, skipped)."""
        ...

    # -- reads
    def get(self, date: str, index: int) -> Entry | None:
        """The entry at a permalink, a tombstone if deleted, None if it never existed."""
        ...

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Raw live entries, read a batch at a time; `until`/`since` bound the dates."""
        ...

    def days(self, *, newest_first: bool = True, limit: int | None = None) -> list[Day]: ...

    def page(self, limit: int, before: str | None = None) -> Page:
        """A page of History, newest first; a conversation appears once, as its latest turn."""
        ...

    def images_page(self, limit: int, before: str | None = None) -> tuple[list[Entry], str | None]: ...

    def conversation(self, entry: Entry) -> list[Entry]:
        """Every live turn of `entry`'s conversation in order."""
        ...

    def chain(self, entry: Entry) -> list[Entry]:
        """The turns `entry` follows up, oldest first, ending with `entry`."""
        ...

    def versions(self, entry: Entry) -> list[Entry]:
        """The live versions of `entry`'s turn (Edit / Regenerate), oldest first, itself included."""
        ...

    def branch(self, entry: Entry) -> list[Entry]:
        """The turns shown with `entry`: those it follows up, itself, then the newest branch
        below it."""
        ...

    def search(self, query: str | Query, limit: int = 100) -> list[Entry]:
        """Entries matching a search (text, or parsed by :func:`parse_query`), best first:
        more terms in the prompt, then newer. Raises QueryError for a malformed filter."""
        ...

    def pending(self) -> list[Entry]:
        """Every entry still waiting for its answer (for the reaper of interrupted answers)."""
        ...

    def count_on(self, date: str) -> int: ...

    def count(self) -> int: ...

    def dates(self) -> list[str]: ...

    def today(self) -> str: ...

    # -- exports
    def iter_seed(self) -> Iterator[tuple[str, dict[str, str]]]: ...

    def export_seed(self) -> dict[str, list[dict[str, str]]]: ...

    def iter_full(self) -> Iterator[dict[str, Any]]: ...

    def export_full(self) -> list[dict[str, Any]]: ...

    # -- copies (backup and restore)
    def copy_days(self) -> Iterator[tuple[str, list[dict[str, Any]], int]]:
        """Every date, oldest first, with all its raw entries (tombstones included, in the stored
        form: Entry.to_dict) and the next index it would hand out; one day in memory at a time."""
        ...

    def restore_entries(self, batch: list[dict[str, Any]], next_index: dict[str, int]) -> ImportResult:
        """Put entries (tombstones included; in the stored form, though links as permalink text are
        read too) at their own permalinks. An entry already there (same id) is left as it is, a
        different entry there is a conflict and is left alone, so doing it twice adds nothing.
        `next_index` raises each day's counter: no index is reused."""
        ...

    # -- operations
    def quarantined(self) -> list[str]:
        """Names of damaged parts of the history that were moved aside."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the store can take writes now, and a short word on why not."""
        ...

    def maintain(self, *, startup: bool = False) -> None:
        """Background upkeep (folding journals, building indexes); cheap when nothing is due.
        `startup`: the server has just started (whatever a dead one left is tidied up)."""
        ...

    def close(self) -> None: ...


class StoreBase:
    """The behaviour both engines share, on top of their primitives (`_update`, `get`,
    `iter_entries`). Engines subclass it and implement the rest of :class:`HistoryStore`."""

    backend = "abstract"

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or (lambda: datetime.now().astimezone())

    # -- primitives each engine provides
    def _insert(self, entry: Entry, parent: Entry | None, replaces: Entry | None) -> Entry:
        """Store a new entry (`_new_entry`) at its day's next index, counting the follow-up on
        `parent` and marking the conversation branched for `replaces`; returns it."""
        raise NotImplementedError

    def _update(self, entry: Entry, **changes: Any) -> Entry:
        raise NotImplementedError

    def get(self, date: str, index: int) -> Entry | None:
        raise NotImplementedError

    def iter_entries(
        self, *, newest_first: bool = True, until: str | None = None, since: str | None = None
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    # -- shared behaviour
    def begin(
        self,
        kind: str,
        prompt: str,
        model: str,
        *,
        demo: bool = False,
        parent: Entry | None = None,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        entry = self._new_entry(kind, prompt, model, demo, parent, replaces, input_image)
        return self._insert(entry, parent, replaces)

    def _new_entry(
        self,
        kind: str,
        prompt: str,
        model: str,
        demo: bool,
        parent: Entry | None,
        replaces: Entry | None = None,
        input_image: str | None = None,
    ) -> Entry:
        """A new pending entry (index 0 until the engine assigns the day's next one).

        Another version of a turn (`replaces`) takes the turn's place in its conversation: the
        same parent (a deleted one too) and turn number; a first turn's version joins the first
        turn's conversation."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        now = self.clock()
        entry = Entry(
            id=uuid.uuid4().hex,
            date=now.date().isoformat(),
            index=0,
            created_at=now.isoformat(timespec="seconds"),
            kind=kind,
            prompt=prompt,
            model=model,
            demo=demo,
            parent=parent.address if parent else None,
            root=parent.thread if parent else None,
            turn=parent.turn + 1 if parent else 1,
            input_image=input_image,
        )
        if replaces is not None:
            entry.parent, entry.root, entry.turn = replaces.parent, replaces.thread, replaces.turn
            entry.sibling_of = replaces.versions_of
        return entry

    def finish(self, entry: Entry, response: str, **extra: Any) -> Entry:
        return self._update(entry, response=response, status="done", error=None, **extra)

    def fail(self, entry: Entry, error: str, *, partial: str = "", **extra: Any) -> Entry:
        return self._update(entry, status="failed", response=partial, **failure_fields(error), **extra)

    def stop(self, entry: Entry, partial: str, **extra: Any) -> Entry:
        return self._update(entry, status="stopped", error=None, response=partial, **extra)

    @staticmethod
    def _tombstone(stored: dict[str, Any]) -> dict[str, Any]:
        # The content goes; only what keeps the permalink meaningful (410, not reused) stays.
        # `parent` and `root` stay too: later turns of a conversation remain linked through it.
        return {
            "deleted": True,
            "prompt": "",
            "response": "",
            "error": None,
            "error_kind": None,
            "error_params": {},
            "image_file": None,
            "input_image": None,
            "usage": {},
        }

    def _at(self, link: Permalink | None) -> Entry | None:
        return self.get(*link) if link is not None else None

    def _live_ancestor(self, link: Permalink | None) -> Entry | None:
        """The first live entry up a parent chain starting at `link` (tombstones skipped)."""
        for _ in range(MAX_CHAIN):
            entry = self._at(link)
            if entry is None or not entry.deleted:
                return entry
            link = entry.parent
        return None

    def chain(self, entry: Entry) -> list[Entry]:
        turns: list[Entry] = []
        current: Entry | None = entry
        for _ in range(MAX_CHAIN):
            if current is None:
                break
            if not current.deleted:
                turns.append(current)
            current = self._at(current.parent)
        return list(reversed(turns))

    def conversation(self, entry: Entry) -> list[Entry]:
        raise NotImplementedError

    def _branched(self, entry: Entry) -> bool:
        """Whether any turn of `entry`'s conversation has another version (read from the store:
        the flag on the first turn changes after the entry was read)."""
        first = self._at(entry.thread)
        return first is not None and first.branched

    def _parent_of_deleted(self, link: Permalink) -> Permalink | None:
        entry = self._at(link)
        return entry.parent if entry is not None else None

    def versions(self, entry: Entry) -> list[Entry]:
        if not self._branched(entry):
            return [entry]
        return branches.versions(self.conversation(entry), entry)

    def branch(self, entry: Entry) -> list[Entry]:
        turns = self.conversation(entry)
        if not self._branched(entry):
            return turns  # one line of turns: all of them
        return branches.branch_path(turns, entry, self._parent_of_deleted)

    def days(self, *, newest_first: bool = True, limit: int | None = None) -> list[Day]:
        """Entries grouped by date (deleted ones left out); `limit` caps the number of entries."""
        picked: list[dict[str, Any]] = []
        for raw in self.iter_entries(newest_first=newest_first):
            if limit is not None and len(picked) >= limit:
                break
            picked.append(raw)
        return group_days(picked)

    def search(self, query: str | Query, limit: int = 100) -> list[Entry]:
        parsed = parse_query(query) if isinstance(query, str) else query
        return [] if parsed.empty else self._search(parsed, limit)

    def _search(self, query: Query, limit: int) -> list[Entry]:
        raise NotImplementedError

    def today(self) -> str:
        """Today's date by the store's clock (the server's local date)."""
        return self.clock().date().isoformat()

    def quarantined(self) -> list[str]:
        return []

    def maintain(self, *, startup: bool = False) -> None:
        return None

    def close(self) -> None:
        return None

    def export_seed(self) -> dict[str, list[dict[str, str]]]:
        """The whole history in the seed's `chatlog.json` shape, oldest date first."""
        out: dict[str, list[dict[str, str]]] = {}
        for date, row in self.iter_seed():
            out.setdefault(date, []).append(row)
        return out

    def iter_seed(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(date, seed row) of every live entry, oldest first, read a batch at a time."""
        for raw in self.iter_entries(newest_first=False):
            yield raw["date"], seed_row(raw)

    def export_full(self) -> list[dict[str, Any]]:
        return list(self.iter_full())

    def iter_full(self) -> Iterator[dict[str, Any]]:
        """Every live entry with all its fields as exported (links as permalink text), oldest
        first, read a batch at a time."""
        for raw in self.iter_entries(newest_first=False):
            entry = Entry.from_dict(raw)
            row = entry.exported()
            if entry.input_image_url:
                row["input_image_url"] = entry.input_image_url
            yield row
