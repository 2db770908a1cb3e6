"""What the tests' apps are built with: the upstream key and the history engines."""

from __future__ import annotations

import pytest

# A key-shaped secret: tests assert it never shows up in logs, pages or responses.
TEST_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"

BACKENDS = ("tinydb", "postgresql")

# Apps use TinyDB unless a test asks for more. Where what the history engine stores is part of
# what a test checks, outside tests/history/test_store_contract.py (which holds both engines to
# one contract), the test runs on every engine: a direct parametrization overrides the
# `history_backend` fixture.
ON_EVERY_ENGINE = pytest.mark.parametrize("history_backend", BACKENDS)

# For a test that exercises no storage in a module whose tests all run on every engine (its own
# `history_backend` fixture): it runs once, on TinyDB.
STORAGE_FREE = pytest.mark.parametrize("history_backend", ["tinydb"])
