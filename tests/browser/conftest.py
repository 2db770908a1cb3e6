"""The fixtures of the browser tests alone: a live server per app, fresh tabs on it, and axe-core.
`browser` and `open_page` are in tests/conftest.py: a few tests elsewhere use them too."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext

from ..support.browser import AXE_PATH, JS_DIR, NPM_TIMEOUT, Tab, installed_axe_version, pinned_axe_version


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js at the pinned version; installed from the lock file when it is missing."""
    if installed_axe_version() != pinned_axe_version():
        command = ["npm", "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.fail(f"`{' '.join(command)}` could not run: {error}")
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    installed = installed_axe_version()
    if installed != pinned_axe_version():
        pytest.fail(f"axe-core {installed} installed in tests/js, package.json pins {pinned_axe_version()}")
    return AXE_PATH.read_text(encoding="utf-8")


@pytest.fixture
def serve(live_server) -> Callable[[Any], str]:
    """Start (once per app) a live server for an app; returns its base URL."""
    urls: dict[int, str] = {}

    def start(app) -> str:
        if id(app) not in urls:
            urls[id(app)] = live_server(app).url
        return urls[id(app)]

    return start


@pytest.fixture
def new_tab(browser: Browser, serve) -> Iterator[Callable[..., Tab]]:
    """A fresh browser context (empty cache and storage) with one page on the app."""
    contexts: list[BrowserContext] = []

    def open_tab(
        app, path: str | None = "/", *, color_scheme: str = "light", reduced_motion: str = "no-preference"
    ) -> Tab:
        base = serve(app)
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.emulate_media(color_scheme=color_scheme, reduced_motion=reduced_motion)
        tab = Tab(page, base)
        if path is not None:
            tab.goto(path)
        return tab

    yield open_tab
    for context in contexts:
        context.close()
