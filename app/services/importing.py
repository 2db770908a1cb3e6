"""Importing a chatlog.json (the seed's format), for the upload route and the CLI alike.

The file is untrusted: it is parsed with a clear error for anything that is not a chatlog (deep
nesting included), bounded in rows and field lengths, and its image URLs may only bring back an
image that no entry owns, so deleting an imported row can never delete someone else's image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..history import HistoryStore
from ..i18n import N_
from ..images import ImageStore
from ..images.names import original_name

MAX_IMPORT_ROWS = 200_000  # per file (split a larger history into several files)
MAX_ERROR_CHARS = 10_000


class ImportFileError(ValueError):
    """The file cannot be imported; the message says why (and names the limit, if one)."""


def parse_chatlog(text: str) -> Any:
    """The JSON of an import file; ImportFileError for invalid or too deeply nested JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ImportFileError(
            N_(
                "The file is not valid JSON (line %(line)s, column %(column)s).",
                line=e.lineno,
                column=e.colno,
            )
        ) from None
    except RecursionError:
        raise ImportFileError(N_("The file is nested too deeply to be a chatlog.json.")) from None


def check_limits(data: Any, settings: Settings) -> None:
    """Refuse a file over the row cap or with an overlong field. The shape itself (dates, rows
    with string fields) is the history store's to check: what is not shaped right is skipped
    here and refused by its import."""
    if not isinstance(data, dict):
        return
    days = {date: day for date, day in data.items() if isinstance(day, list)}
    rows = sum(len(day) for day in days.values())
    if rows > MAX_IMPORT_ROWS or len(data) > MAX_IMPORT_ROWS:
        raise ImportFileError(
            N_(
                "The file has %(rows)s entries on %(dates)s dates; at most %(limit)s "
                "can be imported at once. Split it into smaller files.",
                rows=rows,
                dates=len(data),
                limit=MAX_IMPORT_ROWS,
            )
        )
    limits = (
        ("prompt", settings.max_prompt_chars, "MAX_PROMPT_CHARS"),
        ("response", settings.max_answer_chars, "MAX_ANSWER_CHARS"),
        ("error", MAX_ERROR_CHARS, str(MAX_ERROR_CHARS)),
    )
    for date, day in days.items():
        for n, row in enumerate(day):
            for field, limit, name in limits:
                value = row.get(field) if isinstance(row, dict) else None
                if isinstance(value, str) and len(value) > limit:
                    raise ImportFileError(
                        N_(
                            "Entry %(n)s of %(date)s: its %(field)s has %(length)s characters; "
                            "the limit is %(limit)s (%(setting)s).",
                            n=n,
                            date=date,
                            field=field,
                            length=len(value),
                            limit=limit,
                            setting=name,
                        )
                    )


def unclaimed_images(history: HistoryStore, images: ImageStore) -> Callable[[str], str | None]:
    """`image_file_for` for an import: an app image URL maps to its stored file only if no entry
    owns that file (by its `image_file`, or by its id, which names the file of an image still
    being made) and no earlier row of the same import claimed it."""
    claimed: set[str] = set()
    for raw in history.iter_entries():
        claimed.add(original_name(raw["id"]))
        if raw.get("image_file"):
            claimed.add(raw["image_file"])

    def image_file_for(response: str) -> str | None:
        name = images.name_for_url(response)
        if name is None or name in claimed:
            return None
        claimed.add(name)
        return name

    return image_file_for


def import_chatlog(
    text: str, history: HistoryStore, images: ImageStore, settings: Settings
) -> tuple[int, int]:
    """Import the text of a chatlog.json; returns (added, skipped). ImportFileError/ValueError
    say what is wrong with the file."""
    data = parse_chatlog(text)
    check_limits(data, settings)
    return history.import_seed(data, unclaimed_images(history, images))
