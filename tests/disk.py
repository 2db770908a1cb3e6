"""What the history store has on disk, read without the store (tests check the files themselves)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_history(data_dir: Path) -> dict[str, Any]:
    """Every day file of the history, parsed: {file name: TinyDB document}."""
    root = data_dir / "history"
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(root.glob("*.json"))}


def stored_entries(data_dir: Path) -> list[dict[str, Any]]:
    """Every entry in the day files as stored on disk, whatever the TinyDB layout around it."""
    found: list[dict[str, Any]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "id" in node and "prompt" in node and "index" in node:
                found.append(node)
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(read_history(data_dir))
    return found
