"""Deleting from the history: one entry, or every entry of a day, with the images they own.

An image never outlives its entry: the images go first (if the image store is down, the delete
fails as a whole and can be repeated), then the entries, which leave tombstones so their
permalinks answer 410 and are never reused; the store keeps the conversation's follow-up counts
right. An image finished in between (an answer still being made) goes last.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..history import Entry, HistoryStore, is_date
from ..images import ImageStore


class NothingToDelete(LookupError):
    """There never was such an entry (or no live entry on that day)."""


class AlreadyDeleted(LookupError):
    """The entry was deleted before (its tombstone is all that is left)."""


def delete_entry(history: HistoryStore, images: ImageStore, date: str, index: int) -> Entry:
    """Delete the entry at `date`/`index` and its images; returns it as it was."""
    existing = history.get(date, index)
    if existing is None:
        raise NothingToDelete(date, index)
    if existing.deleted:
        raise AlreadyDeleted(date, index)
    removed = remove_images(images, [existing])
    deleted = history.delete(date, index)
    if deleted is None:
        raise AlreadyDeleted(date, index)  # another request deleted it meanwhile
    remove_images(images, [deleted], removed)
    return deleted


def delete_day(history: HistoryStore, images: ImageStore, date: str) -> list[Entry]:
    """Delete every entry of `date` and their images; returns them as they were."""
    if not is_date(date):
        raise NothingToDelete(date)
    live = (Entry.from_dict(raw) for raw in history.iter_entries(since=date, until=date))
    removed = remove_images(images, live)
    deleted = history.delete_day(date)
    if not deleted:
        raise NothingToDelete(date)
    remove_images(images, deleted, removed)
    return deleted


def remove_images(images: ImageStore, entries: Iterable[Entry], done: set[str] | None = None) -> set[str]:
    """Delete the entries' images and input pictures (except those in `done`); returns the
    names handled."""
    done = set(done or ())
    for entry in entries:
        for name in (entry.image_file, entry.input_image):
            if name and name not in done:
                images.delete(name)
                done.add(name)
    return done
