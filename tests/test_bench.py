"""`make bench` keeps working: a tiny run writes a results table with every figure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_writes_a_table_with_each_figure(tmp_path: Path):
    out = tmp_path / "RESULTS.md"
    subprocess.run(
        [
            *(sys.executable, "-m", "bench", "--rounds", "1", "--per-round", "2"),
            *("--output", str(out), "--history-sizes", "50", "500", "--users", "4"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=240,
    )
    text = out.read_text()
    figures = (
        "POST /generate_code (JSON)",
        "POST /generate_image (JSON, b64 PNG)",
        "GET / (",
        "append (begin + finish) p50, 500 vs 50",
        "GET / median at 500 entries",
        "search median at 500 entries",
        "import of 500 entries",
        "time to first token, app vs openai client",
        "POST /generate_code (JSON, non-streaming) p50",
        "4 concurrent streams on the production config",
        "load: 4 concurrent users × 10 requests",
        "image pipeline 1024×1024 PNG",
        "image pipeline 1792×1024 PNG",
    )
    for figure in figures:
        assert figure in text
    assert "×" in text
