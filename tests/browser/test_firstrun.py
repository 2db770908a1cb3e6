"""A new user's first minutes: a fresh clone, `make run` with nothing set but PORT, then Chromium.

The clone is of the committed HEAD of the repository these tests run from; its `make run` makes
its own .venv and installs requirements.txt (with uv, from PyPI or its cache), so the first start
may take minutes. Everything the app writes goes to the default `./data` inside the clone. Run
this test alone with `pytest -m firstrun`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from ..support.browser import WatchedPage
from ..support.ports import free_port
from ..support.serving import ServerProcess, clean_env

pytestmark = [pytest.mark.firstrun, pytest.mark.browser, pytest.mark.full_chromium, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
FIRST_START = 240  # seconds: a fresh .venv and its install
RESTART = 60
CODE_PROMPT = "Write a Python function that adds two numbers"
IMAGE_PROMPT = "A red fox in the snow"
LOADED = "img => img.complete && img.naturalWidth > 0"


class FirstRunPage(WatchedPage):
    """A watched page that also records failed requests and error responses."""

    def __init__(self, page: Page, origin: str) -> None:
        super().__init__(page, origin)
        self.failed: list[str] = []
        page.on("requestfailed", self._request_failed)
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.url}: {r.status}"))

    def _request_failed(self, request: Request) -> None:
        # htmx closes an answer's event stream itself on its `done` event (sse-close), which
        # Chromium may report as aborted when the server had not yet ended the response: that
        # close is the client's own, and the answer it carried is checked on the page.
        closed_by_htmx = request.url.endswith("/stream") and request.failure == "net::ERR_ABORTED"
        if not closed_by_htmx:
            self.failed.append(f"{request.url}: {request.failure}")

    def assert_clean(self) -> None:
        super().assert_clean()
        assert self.failed == []


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A fresh `git clone` of the committed HEAD of this repository."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    target = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=300)
    checkout = ["git", "-C", str(target), "checkout", "--quiet", "--detach", head]
    subprocess.run(checkout, check=True, timeout=60)
    return target


@pytest.fixture
def make_run(checkout: Path, tmp_path: Path) -> Iterator:
    """Start `make run` in the clone with nothing set but PORT; every server is stopped at the end."""
    servers: list[ServerProcess] = []
    port = free_port()

    def start(log_name: str) -> ServerProcess:
        server = ServerProcess(
            ["make", "--no-print-directory", "run"],
            cwd=checkout,
            env=clean_env(PORT=str(port)),
            log=tmp_path / log_name,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def open_watched(chromium: Browser, url: str) -> tuple:
    """A new browser context (no cookies, no service worker yet) and a watched page in it."""
    context = chromium.new_context()
    context.set_default_timeout(30_000)
    watched = FirstRunPage(context.new_page(), url)
    return context, watched


def wait_loaded(page: Page, image) -> None:
    expect(image).to_be_visible()
    page.wait_for_function(LOADED, arg=image.element_handle(), timeout=30_000)


def assert_image_pages_load(page: Page, url: str, image_entry: str) -> None:
    """The image on its entry page and its thumbnail in the gallery are loaded pictures."""
    page.goto(url + image_entry)
    wait_loaded(page, page.get_by_role("img", name=re.compile(IMAGE_PROMPT)))
    page.goto(url + "/images")
    wait_loaded(page, page.locator(".gallery-item img").first)


def history_link(page: Page, prompt: str):
    return page.get_by_role("complementary", name="History").get_by_role("link", name=re.compile(prompt))


def test_fresh_clone_make_run_generates_by_keyboard_and_keeps_everything_over_a_restart(
    browser: Browser,
    checkout: Path,
    make_run,
):
    first = make_run("make-run-1.log")
    first.wait_healthy(FIRST_START)
    url = first.url

    context, watched = open_watched(browser, url)
    page = watched.page
    page.goto(url + "/")
    prompt = page.get_by_role("textbox", name="Prompt")
    results = page.get_by_role("region", name="Results")

    prompt.fill(CODE_PROMPT)
    prompt.press("Control+Enter")
    answer = results.get_by_role("article").filter(has_text="Demo answer")
    expect(answer).to_have_count(1)
    expect(answer.locator("pre.highlight")).to_be_visible()
    expect(results).not_to_have_attribute("aria-busy", "true")

    prompt.fill(IMAGE_PROMPT)
    prompt.press("Control+Shift+Enter")
    wait_loaded(page, results.get_by_role("img", name=re.compile(IMAGE_PROMPT)))

    code_entry = history_link(page, "adds two numbers").get_attribute("href")
    image_entry = history_link(page, IMAGE_PROMPT).get_attribute("href")
    assert re.fullmatch(r"/chatlog/\d{4}-\d{2}-\d{2}/\d+", image_entry or "")
    assert_image_pages_load(page, url, image_entry)
    watched.assert_clean()
    context.close()

    assert first.stop(), first.output()
    output = first.output()
    data = checkout / "data"
    assert f"Serving on {url} — demo mode (no OPENAI_API_KEY), data in {data}" in output
    assert "This is a development server" not in output
    assert len(list((data / "images").glob("*.png"))) == 1
    log = (data / "app.log").read_text(encoding="utf-8")
    assert re.search(r"Generation finished: kind=code entry=\S+ model=demo status=done", log)
    assert re.search(r"Generation finished: kind=image entry=\S+ model=demo status=done .* file=\S+png", log)
    assert CODE_PROMPT not in log

    second = make_run("make-run-2.log")
    second.wait_healthy(RESTART)
    context, watched = open_watched(browser, url)
    page = watched.page
    page.goto(url + "/")
    assert history_link(page, "adds two numbers").get_attribute("href") == code_entry
    assert history_link(page, IMAGE_PROMPT).get_attribute("href") == image_entry
    page.goto(url + code_entry)
    answer = page.get_by_role("article").filter(has_text="Demo answer")
    expect(answer.locator("pre.highlight")).to_be_visible()
    assert_image_pages_load(page, url, image_entry)
    watched.assert_clean()
    context.close()
    assert second.stop(), second.output()
