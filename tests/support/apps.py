"""What the tests' apps are built with: the upstream key and the history engines."""

from __future__ import annotations

# A key-shaped secret: tests assert it never shows up in logs, pages or responses.
TEST_KEY = "sk-test-DO-NOT-LEAK-0123456789abcdef"

BACKENDS = ("tinydb", "postgresql")
