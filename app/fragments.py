"""Rendered fragments that are the same for every reader: History's rows.

Every page, and every htmx answer to a generation, lists History's newest entries; rendering
each row through the template again costs more than the rest of the request. A row depends only
on its entry's state and the reader's language, so it is rendered once per (language, entry,
status, turns) and reused.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import Flask, current_app
from flask_babel import get_locale
from markupsafe import Markup

from .history import Entry

CACHED_ROWS = 4096


class HistoryRows:
    """The `history_row(entry)` template global: an entry's History row, rendered once."""

    def __init__(self, size: int = CACHED_ROWS) -> None:
        self.size = size
        self._rows: OrderedDict[tuple[str, str, str, int], Markup] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, entry: Entry) -> Markup:
        key = (str(get_locale() or "en"), entry.id, entry.status, entry.turn)
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
                return row
        template = current_app.jinja_env.get_template("partials/_history_row.html")
        row = Markup(template.render(entry=entry))
        with self._lock:
            self._rows[key] = row
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)
        return row

    def init_app(self, app: Flask) -> None:
        app.add_template_global(self, "history_row")
