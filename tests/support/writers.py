"""What the processes that tests spawn to write one DATA_DIR at once do. A spawned process imports
the module of its target function first: this one imports only the history when it runs, not
pytest, requests or a test module (about half of what each process paid to start)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any


def write_entries(
    data_dir: str, worker: int, count: int, barrier: Any, *, finish: bool, at: datetime | None = None
) -> None:
    """Wait for the other writers at `barrier`, then store `count` prompts ("worker W prompt N"),
    with their answers when `finish`, dated `at` (a fixed moment) or now."""
    from app.history import ChatLog

    barrier.wait(timeout=60)
    chatlog = ChatLog(Path(data_dir), clock=(lambda: at) if at else None)
    for n in range(count):
        entry = chatlog.begin("code", f"worker {worker} prompt {n}", "test-model")
        if finish:
            chatlog.finish(entry, f"worker {worker} answer {n}")
