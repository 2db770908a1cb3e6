"""`make bench` keeps working: a tiny run writes a results table with every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes: make test runs it, make test-fast does not

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_bench_writes_a_table_with_each_figure(tmp_path: Path):
    out = tmp_path / "RESULTS.md"
    subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--rounds", "1", "--per-round", "2"),
            *(
                "--output",
                str(out),
                "--history-sizes",
                "50",
                "500",
                "--users",
                "4",
                "--busy-day",
                "100",
                "--history-days",
                "10",
                "--quick",
            ),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=540,
    )
    text = out.read_text()
    figures = (
        "POST /generate_code (JSON)",
        "POST /generate_image (JSON, b64 PNG)",
        "GET / (",
        "append (begin + finish) p50, 500 vs 50",
        "GET / median at 500 entries",
        "search median at 500 entries",
        "import of 500 entries (seed format, 10 days)",
        "POST /generate_code (JSON) overhead vs the openai client direct, p50",
        "as a ratio of the LiteLLM proxy's overhead",
        "time to first token through the htmx + SSE path",
        "4 concurrent streams on the production config",
        "append (begin + finish) p50, today holding 100 entries",
        "4 users × 8 JSON generations at once, today holding 100 entries",
        "4 users × 10 requests (JSON generation and page, alternating)",
        "entries in the export after that burst",
        "first search of a freshly started server at 500 entries",
        "image pipeline 1024×1024 PNG",
        "image pipeline 1792×1024 PNG",
    )
    for figure in figures:
        assert figure in text
    assert "×" in text
