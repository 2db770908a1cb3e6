"""Debian's chromium through Playwright: how it is launched, a page that watches for console
errors and foreign requests, the page's regions, and axe-core (pinned in tests/js)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

# Debian's chromium, the browser a person runs, and its headless shell: the same Blink and V8 of
# the same Debian build without the browser's windows, toolbar and omnibox, which every new page of
# /usr/bin/chromium builds even headless (about 2.7 s of CPU per page here against 0.9 s). The
# shell is what Playwright itself runs for headless tests; the tests marked `full_chromium`, about
# what the whole browser does (the first run, the favicon, what a first load weighs, being
# installable), run in /usr/bin/chromium.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_HEADLESS_SHELL = "/usr/bin/chromium-headless-shell"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
AXE_PATH = JS_DIR / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
NPM_TIMEOUT = 180  # seconds for `npm ci`
CODE_PROMPT = "Write a Python function that adds two numbers"
IMAGE_PROMPT = "A red fox in the snow"


class WatchedPage:
    """A page that records console errors and any request to another origin."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.foreign_requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        page.on(
            "request",
            lambda r: None if r.url.startswith(origin) else self.foreign_requests.append(r.url),
        )

    def assert_clean(self) -> None:
        assert self.console_errors == []
        assert self.foreign_requests == []


def results(page: Page):
    return page.get_by_role("region", name="Results")


def history(page: Page):
    return page.get_by_role("complementary", name="History")


def pinned_axe_version() -> str:
    return json.loads((JS_DIR / "package.json").read_text())["dependencies"]["axe-core"]


def installed_axe_version() -> str | None:
    package = AXE_PATH.parent / "package.json"
    if not (AXE_PATH.exists() and package.exists()):
        return None
    return json.loads(package.read_text()).get("version")


class Tab(WatchedPage):
    """A watched page that knows the server's base URL."""

    def __init__(self, page: Page, base: str) -> None:
        super().__init__(page, base)
        self.base = base

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)


def seed_entries(app) -> dict[str, str]:
    """A code and an image entry made through the JSON API; their permalinks."""
    client = app.test_client()
    code = client.post("/generate_code", json={"prompt": CODE_PROMPT})
    image = client.post("/generate_image", json={"prompt": IMAGE_PROMPT})
    assert code.status_code == 200 and image.status_code == 200, (code.data, image.data)
    return {"code": code.get_json()["entry"], "image": image.get_json()["entry"]}


AXE_RUN = """tags => axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})
  .then(result => result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary || ""})),
  })))"""


def axe_violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    """Run axe in the page. It is evaluated through the DevTools protocol, which the page's CSP
    (script-src 'self', no inline scripts) does not govern, so the CSP stays on for the run."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe_source + "\n;undefined")
    return page.evaluate(AXE_RUN, AXE_TAGS)


def describe(violations: list[dict[str, Any]]) -> str:
    lines = [f"{len(violations)} axe violation(s):"]
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:8]:
            summary = " | ".join(line.strip() for line in node["summary"].splitlines() if line.strip())
            lines.append(f"    {node['target']}: {summary[:300]}")
        if len(v["nodes"]) > 8:
            lines.append(f"    … and {len(v['nodes']) - 8} more")
    return "\n".join(lines)


def luminance(css_colour: str) -> float:
    """Relative luminance (WCAG) of a computed `rgb(...)`/`rgba(...)` colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+(?:\.\d+)?", css_colour)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def body_luminance(page: Page) -> float:
    return luminance(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def assert_no_axe_violations_light_and_dark(page: Page, axe_source: str, what: str) -> None:
    """axe finds nothing on the page as it is, in the light scheme, nor after the system's scheme
    turns dark, which the stylesheet follows at once (a media query, no script, no transition)
    and which is checked before axe runs again. The page is left dark."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert (body_luminance(page) < 0.2) == (scheme == "dark"), f"{what} is not {scheme}"
        violations = axe_violations(page, axe_source)
        assert violations == [], f"{what} ({scheme}): " + describe(violations)
