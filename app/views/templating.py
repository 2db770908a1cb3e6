"""What every template gets from the views: URLs built with `url_for` (an entry's, an image's and
its thumbnail's), an entry's versions, whether images offer "Edit image", and the warning about
damaged history files.

`url_for_entry` is the one place that turns an entry (or its permalink) into the URL of one of its
routes, so how permalinks are stored can change without touching a template.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, url_for

from .. import image_options
from ..history import Entry, Permalink
from ..images.names import thumb_name
from .plumbing import generator, history


def url_for_entry(entry: Entry | Permalink | str, endpoint: str = "entry.view_entry", **params: Any) -> str:
    """The URL of an entry's page, or of another of its routes (`endpoint`: its stream, its
    image download …), from the entry, its permalink, or its permalink's text."""
    if isinstance(entry, Entry):
        address: Permalink | None = entry.address
    else:
        address = Permalink.of(entry)
    if address is None:
        raise ValueError(f"{entry!r} is not a permalink")
    return url_for(endpoint, date=address.date, index=address.index, **params)


def url_for_image(name: str) -> str:
    """The URL a stored image (an original or a thumbnail) is served at."""
    return url_for("images.image_file", name=name)


def url_for_thumb(name: str) -> str:
    """The URL of the thumbnail of the stored original `name`."""
    return url_for_image(thumb_name(name))


def turn_versions(entry: Entry) -> list[Permalink]:
    """The permalinks of a turn's versions, oldest first (just its own without any); read once
    per entry and request."""
    known: dict[str, list[Permalink]] = g.setdefault("turn_versions", {})
    if entry.id not in known:
        known[entry.id] = [v.address for v in history().versions(entry)]
    return known[entry.id]


def history_warnings() -> dict[str, Any]:
    """Damaged history files that were moved aside: every page says so until they are dealt with."""
    return {"quarantined": history().quarantined()}


def entry_helpers() -> dict[str, Any]:
    """For the entry partial: its versions, and whether images get "Edit image" (the image
    model edits pictures) or "Variation" (a new picture from the edited text)."""
    edits = image_options.capabilities(generator().provider.image_model).edits
    return {"turn_versions": turn_versions, "image_edits": edits}


def init_app(app: Flask) -> None:
    app.context_processor(history_warnings)
    app.context_processor(entry_helpers)
    app.add_template_global(url_for_entry)
    app.add_template_global(url_for_image)
    app.add_template_global(url_for_thumb)
