"""The original project's `chatlog.json` format, `{date: [{prompt, response}]}`: checking an
imported file, turning its rows into entries, and the rows of an export. Both engines use these."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..messages import N_
from .model import Entry, is_date

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
UNFINISHED = "The answer was not finished."

ImageFileFor = Callable[[str], "str | None"]


def looks_like_image_response(response: str) -> bool:
    """True for the seed's image answers: its fixed PNG path or a bare image URL."""
    text = response.strip()
    if not text or any(c.isspace() for c in text):
        return False
    path = text.split("?", 1)[0].lower()
    if text.startswith("/static/") or text.startswith("/images/"):
        return path.endswith(_IMAGE_SUFFIXES)
    return text.startswith(("http://", "https://")) and (
        path.endswith(_IMAGE_SUFFIXES) or "dalle" in path or "blob.core.windows.net" in path
    )


def validate_seed(data: Any) -> None:
    """Raise ValueError saying what is wrong unless `data` is in the seed's format."""
    if not isinstance(data, dict):
        raise ValueError(N_("expected a JSON object of dates, as the seed's chatlog.json"))
    for date, rows in data.items():
        if not is_date(date):
            raise ValueError(N_("%(date)s is not a date (YYYY-MM-DD)", date=repr(date)))
        try:
            datetime.strptime(date, "%Y-%m-%d")
        except ValueError:
            raise ValueError(N_("%(date)s is not a valid date", date=repr(date))) from None
        if not isinstance(rows, list) or not all(
            isinstance(r, dict)
            and isinstance(r.get("prompt"), str)
            and isinstance(r.get("response", ""), str)
            for r in rows
        ):
            raise ValueError(
                N_("entries of %(date)s must be objects with string 'prompt' and 'response'", date=date)
            )


def seed_entry(date: str, index: int, row: dict[str, Any], image_file_for: ImageFileFor) -> Entry:
    """An entry for one row of the seed's chatlog.json."""
    prompt, response = row["prompt"], row.get("response", "")
    is_image = looks_like_image_response(response)
    error = row.get("error") if isinstance(row.get("error"), str) else None
    return Entry(
        id=uuid.uuid4().hex,
        date=date,
        index=index,
        created_at=f"{date}T00:00:00",
        kind="image" if is_image else "code",
        prompt=prompt,
        response=response,
        model="imported",
        status="failed" if error else "done",
        error=error,
        image_file=image_file_for(response) if is_image else None,
    )


def unseen_rows(rows: list[dict[str, Any]], present: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The seed rows whose (prompt, response) is not among `present` (nor earlier in `rows`)."""
    new = []
    for row in rows:
        key = (row["prompt"], row.get("response", ""))
        if key not in present:
            present.add(key)
            new.append(row)
    return new


def seed_row(raw: dict[str, Any]) -> dict[str, str]:
    """The seed export's row of a stored entry; failed and unfinished ones carry an `error`."""
    row = {"prompt": raw["prompt"], "response": raw["response"]}
    if raw.get("status") == "failed" and raw.get("error"):
        row["error"] = raw["error"]
    elif raw.get("status") == "pending":
        row["error"] = UNFINISHED
    return row
