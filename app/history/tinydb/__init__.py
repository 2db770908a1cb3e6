"""The default history engine: TinyDB day documents in DATA_DIR under an append-only journal.

- `store`: ChatLog, the engine, put together from its parts: `reader` (days as they are now, the
  day sequence, damaged files), `checkpoints` (folding journals, word indexes, moving an older
  folder forward), `writer` (appends, writes, deletes), `reads` (entries, pages, search) and
  `copies` (import, copies for backups and migrations, restore).
- `days`: the day documents and a day's state; `journal`: the journal and its lock; `index`: the
  word index per day; `formats`: the folder's format (`format.json`) and what each one stores.
"""

from __future__ import annotations

from .store import ChatLog

__all__ = ["ChatLog"]
