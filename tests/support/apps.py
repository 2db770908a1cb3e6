"""What the tests' apps are built with: the upstream key and the history engines."""

from __future__ import annotations

import pytest

# A key-shaped secret: tests assert it never shows up in logs, pages or responses.
TEST_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"

BACKENDS = ("tinydb", "postgresql")

# For a test that exercises no storage in a module whose tests run on every engine: it runs once,
# on TinyDB (a direct parametrization overrides the module's `history_backend` fixture).
STORAGE_FREE = pytest.mark.parametrize("history_backend", ["tinydb"])
