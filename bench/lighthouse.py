"""`make lighthouse`: Lighthouse 12 (pinned in bench/lighthouse) on `/` with a history present.

Starts the app in demo mode on a loopback port with a few dozen entries, runs Lighthouse in
Debian's chromium (CHROME_PATH=/usr/bin/chromium), and appends the category scores and the page's
transfer size to bench/RESULTS.md (replacing an earlier Lighthouse section).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from werkzeug.serving import make_server

from app import create_app

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
LIGHTHOUSE = HERE / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
MARKER = "## Lighthouse"
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"data_dir": Path(tmp), "log_level": "WARNING"})
        client = app.test_client()
        for n in range(12):
            client.post("/generate_code", data={"prompt": f"Python: example {n}"})
        client.post("/generate_image", data={"prompt": "A lighthouse at dusk"})
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/"
        report = Path(tmp) / "report.json"
        flags = "--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking"
        try:
            subprocess.run(
                [
                    str(LIGHTHOUSE),
                    url,
                    "--output=json",
                    f"--output-path={report}",
                    f"--only-categories={','.join(CATEGORIES)}",
                    f"--chrome-flags={flags}",
                    "--quiet",
                ],
                check=True,
                timeout=300,
                env={**os.environ, "CHROME_PATH": "/usr/bin/chromium"},
            )
        finally:
            server.shutdown()
            server.server_close()
        data = json.loads(report.read_text())
    scores = {c: round((data["categories"][c]["score"] or 0) * 100) for c in CATEGORIES}
    weight = data["audits"]["total-byte-weight"]["numericValue"]
    misses = [
        f"- {audit['title']} ({category})"
        for category in CATEGORIES
        for ref in data["categories"][category]["auditRefs"]
        if ref.get("weight")
        and (audit := data["audits"][ref["id"]]).get("score") is not None
        and audit["score"] < 1
    ]
    rows = "\n".join(f"| {c} | {scores[c]} | 100 |" for c in CATEGORIES)
    lines = [
        MARKER,
        "",
        f"Lighthouse {data['lighthouseVersion']} on `/` with 13 history entries (its default mobile "
        "emulation and simulated throttling), Debian's chromium.",
        "",
        "| category | score | goal |",
        "|---|---|---|",
        rows,
        f"| first-load transfer (total-byte-weight) | {weight / 1024:.1f} KB | ≤ 40 KB |",
        "",
        "Audits below full marks: " + ("none." if not misses else "\n" + "\n".join(misses)),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    section = run()
    print(section)
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    text = text.split(MARKER)[0].rstrip() + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
