"""Checkpoints of the TinyDB history: folding a day's journal into its document (when it has
grown, when the day is over, at start-up), the day's word index written beside it, the
background upkeep that keeps both current, and moving a folder of an older format forward.

Writers wait only while the journal is switched and, later, while the new document is renamed
into place: the document itself is written in between, without the lock. Every step is safe to
repeat after a crash: the document says which journals it holds, and records assign values.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from ...files import fsync_dir, write_temp
from ..model import HistoryCorrupt
from .days import Coverage, doc_key, document_text
from .formats import FORMAT, folder_format, mark_format
from .index import DayIndex, index_body
from .reader import DayReader

log = logging.getLogger("app.history")


class Checkpoints(DayReader):
    """Folding journals and writing word indexes (see the module docstring)."""

    def _fold_later(self, date: str) -> None:
        """Fold `date` soon: in a background thread (the app), or now (tools, tests)."""
        if not self.background:
            self.checkpoint(date, wait=False)
            return
        with self._due_lock:
            self._due.add(date)
            if self._folding:
                return
            self._folding = True
        threading.Thread(target=self._fold_due, name="history-checkpoint", daemon=True).start()

    def _fold_due(self) -> None:
        for _ in range(100_000):  # until nothing is due; each round folds one day
            with self._due_lock:
                if not self._due:
                    self._folding = False
                    return
                date = self._due.pop()
            try:
                self.checkpoint(date)
            except Exception:
                log.exception("Folding the journal of %s failed; it is tried again later.", date)

    def _has_journal(self, date: str, coverage_gen: int) -> bool:
        """True when the day has journal records its document does not hold yet."""
        try:
            return os.stat(self.paths.journal(date, coverage_gen + 1)).st_size > 0
        except FileNotFoundError:
            return False

    def checkpoint(self, date: str, *, wait: bool = True, rewrite: bool = False) -> bool:
        """Fold the day's journals into its document, and write its search index.

        Writers wait only while the journal is switched and, later, while the new document is
        renamed into place and the folded journals are removed: the document is written in
        between, without the lock. Crash-safe at every step: the document says which journals
        it holds, and records assign values, so reading a journal twice changes nothing.
        `rewrite`: write the document again even with no journal to fold (it then holds every
        entry as this version stores it). Returns False when nothing was done (nothing to
        fold, or another fold is running and `wait` is false).
        """
        if wait:
            self.checkpoint_lock.__enter__()
        elif not self.checkpoint_lock.try_acquire():
            return False
        try:
            with self.lock:
                state = self._day(date)
                with state.lock:
                    if state.key is None:
                        return False
                    before, frozen, rows = state.coverage, dict(state.offsets), state.rows()
                    fold = rewrite or any(frozen.values())
                    covered = max(frozen, default=before.gen)  # the new document holds up to it
                    if fold:
                        self._journal(date, covered + 1)  # from now on writers append there
                        state.offsets[covered + 1] = 0
            if not fold:
                self._ensure_index(date)
                return False
            coverage = Coverage(uuid.uuid4().hex, before.id, covered, frozen, before.floor)
            tmp = write_temp(self.paths.doc(date), document_text(coverage, rows))
            with self.lock:
                os.replace(tmp, self.paths.doc(date))
                # The folded journals, and any an earlier fold was stopped before removing.
                for gen in self.paths.journal_gens(date):
                    if gen <= coverage.gen:
                        self.paths.journal(date, gen).unlink(missing_ok=True)
                self._retire_journals(date, covered)
                key = doc_key(self.paths.doc(date))
                with state.lock:
                    adopted = key is not None and state.adopt(key, coverage)
                if not adopted:
                    self._forget(date)
            fsync_dir(self.root)
            if key is not None:
                self._write_index(date, key, coverage.gen, rows)
            return True
        finally:
            self.checkpoint_lock.release()

    def _write_index(
        self, date: str, key: tuple[int, int, int], gen: int, rows: list[dict[str, Any]]
    ) -> None:
        live = [raw for raw in rows if not raw.get("deleted")]
        pending = [raw["index"] for raw in live if raw.get("status") == "pending"]
        words, pairs = index_body(live)
        index = DayIndex(list(key), gen, b"\n" + words, pending, b"\n" + pairs)
        index.write(self.paths.index(date))
        self._indexes[date] = (key, index)

    def _ensure_index(self, date: str) -> None:
        """Write the search index of a day document that has none (documents from before
        indexes, or whose index was lost, or of an older version). Only the index's first line
        is read to tell: its words are for searches to read."""
        key = doc_key(self.paths.doc(date))
        if key is not None and DayIndex.describes(self.paths.index(date), key):
            return
        state = self._day(date)
        if state.key is not None and not state.journaled:
            self._write_index(date, state.key, state.coverage.gen, state.rows())

    def _index_of(self, date: str) -> DayIndex | None:
        """The day's search index if it describes the day's current document, else None."""
        key = doc_key(self.paths.doc(date))
        cached = self._indexes.get(date)
        if cached is not None and cached[0] == key:
            return cached[1]
        index = DayIndex.read(self.paths.index(date))
        if index is None or key is None or tuple(index.document) != key:
            index = None
        self._indexes[date] = (key, index)
        return index

    def maintain(self, *, startup: bool = False) -> None:
        """Fold the journals of days that are over (all of them at start-up, today's too: the
        server that wrote them may have died) and index the documents that have no index yet,
        so a new or upgraded DATA_DIR needs no step by hand."""
        today = self.today()
        for date in self.dates():
            if self._needs_fold(date) and (startup or date != today):
                self.checkpoint(date, wait=False)
            elif self._index_of(date) is None and self.checkpoint_lock.try_acquire():
                # Not while another process folds or indexes: it is doing this work already.
                try:
                    self._ensure_index(date)
                finally:
                    self.checkpoint_lock.release()

    def _needs_fold(self, date: str) -> bool:
        """True when the day has journal records its document does not hold: seen from the
        document's head and a journal's size, without reading the day (a fresh server's upkeep
        would otherwise parse the whole history while its first requests wait for the CPU)."""
        coverage = Coverage.peek(self.paths.doc(date))
        if coverage is None:  # a document from before journals, or none: read it
            return self._day(date).journaled
        return self._has_journal(date, coverage.gen)

    def upgrade_format(self) -> int:
        """Move a folder written by an older version forward to FORMAT, once (see
        app.history.tinydb.formats): each day holding links as text is written again with
        `checkpoint(rewrite=True)`, then the folder is marked. Returns the number of days written.

        One process does it (under the checkpoint lock); another that starts meanwhile waits and
        then finds the mark. A day that cannot be read is left as it is (its links are read in
        either form) and the folder unmarked, so the next start tries again.
        """
        if folder_format(self.root) >= FORMAT:
            return 0
        written, failed = 0, 0
        with self.checkpoint_lock:
            if folder_format(self.root) >= FORMAT:
                return 0
            for date in self.dates():
                try:
                    if self._day(date).legacy and self.checkpoint(date, rewrite=True):
                        written += 1
                except (HistoryCorrupt, OSError):
                    log.exception("The history of %s could not be moved to format %d.", date, FORMAT)
                    failed += 1
                self._forget(date)  # one day in memory at a time
            if not failed:
                mark_format(self.root)
        if written:
            log.info("Moved %d days of the history forward to format %d.", written, FORMAT)
        return written
