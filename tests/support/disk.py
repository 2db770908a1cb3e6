"""What the history store has on disk, read without the store (tests check the files themselves).

A day is its TinyDB document (`<date>.json`) plus the journals it does not hold yet
(`<date>.<gen>.journal`, one record per line: `<crc32 hex> <json>`); this reader folds them the
way the format says, independently of the store's own code.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any


def read_history(data_dir: Path) -> dict[str, Any]:
    """Every day document of the history, parsed: {file name: TinyDB document}."""
    root = data_dir / "history"
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(root.glob("*.json"))}


def journal_records(path: Path) -> list[dict[str, Any]]:
    """The intact records of a journal (a torn or damaged line is skipped)."""
    records = []
    data = path.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        crc, _, body = line.partition(b" ")
        if len(crc) == 8 and int(crc, 16) == zlib.crc32(body):
            records.append(json.loads(body))
    return records


def day_entries(data_dir: Path, date: str) -> dict[int, dict[str, Any]]:
    """A day's entries by index: its document with its newer journals applied."""
    root = data_dir / "history"
    doc = json.loads((root / f"{date}.json").read_text(encoding="utf-8"))
    entries = {raw["index"]: raw for raw in doc.get("entries", {}).values()}
    covered = int(doc.get("_journal", {}).get("1", {}).get("gen", 0))
    gens = sorted(
        int(m.group(1))
        for path in root.glob(f"{date}.*.journal")
        if (m := re.fullmatch(rf"{date}\.(\d+)\.journal", path.name))
    )
    for gen in (g for g in gens if g > covered):
        for record in journal_records(root / f"{date}.{gen}.journal"):
            if "put" in record:
                entries[record["put"]["index"]] = record["put"]
            elif record["set"] in entries and entries[record["set"]]["id"] == record["id"]:
                entries[record["set"]] = {**entries[record["set"]], **record["c"]}
    return entries


def stored_entries(data_dir: Path) -> list[dict[str, Any]]:
    """Every entry on disk (tombstones included), day by day in index order."""
    root = data_dir / "history"
    found: list[dict[str, Any]] = []
    for path in sorted(root.glob("*.json")):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}\.json", path.name):
            entries = day_entries(data_dir, path.name[:-5])
            found += [entries[i] for i in sorted(entries)]
    return found
