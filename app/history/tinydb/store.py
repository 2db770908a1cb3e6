"""The default history engine: one TinyDB document per date in DATA_DIR, under an append-only journal.

A write appends one record to its day's journal (app.history.tinydb.journal) and costs the same on the
busiest day as on an empty one; a checkpoint folds the journal into the day's TinyDB document
(app.history.tinydb.days) in the background, when the journal has grown, when the day is over and at
start-up. Every `*.json` file is complete at every instant: documents are replaced atomically and
journals have another suffix. An index is fixed when an entry is created and never reused, so
`/chatlog/<date>/<index>` points at the same entry for ever; a deleted entry leaves a tombstone,
and the checkpoint that follows the delete removes its content from the disk.

Several threads, gunicorn workers and CLI runs share a DATA_DIR: writers take one lock for the
length of an append; readers take none and catch up on what was appended since they last looked.

Links between entries are stored as `{"date", "index"}` objects (app.history.tinydb.days); a
folder written by an older version, with links as permalink text, is moved forward once when the
app starts (app.history.tinydb.formats), and read as it is until then.

A damaged day document is moved aside (`<date>.json.corrupt-<time>`), never overwritten, and
logged with its name; the rest keeps working, and the day's new entries continue after the highest
index still readable in the damaged file, so no permalink is ever reused.
"""

from __future__ import annotations

import uuid

from .copies import Copies


class ChatLog(Copies):
    """The history store in TinyDB files under a journal (see the module docstring).

    Its parts, each a module: `reader` (days as they are now, the sequence, damage), `checkpoints`
    (folding journals, word indexes, moving an older folder forward), `writer` (appends, writes,
    deletes), `reads` (entries, pages, search) and `copies` (import, backup copies, restore).
    """

    def close(self) -> None:
        """Close the journals and lock files this process holds open, once the store is no
        longer used (it is not locked for it: a later write would open them again, and its
        folder may be gone, as with a broken DATA_DIR)."""
        # Copies: a background fold may open a journal meanwhile (it is closed when collected).
        for handles in list(self._journals.values()):
            for journal in list(handles.values()):
                journal.close()
        self._journals.clear()
        self.lock.close()
        self.checkpoint_lock.close()

    def ready(self) -> tuple[bool, str]:
        try:
            probe = self.root / f".readyz-{uuid.uuid4().hex}.tmp"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError:
            return False, "not writable"
        return True, "writable"
