"""The service worker keeps no secrets: nothing `no-store`, no export, and nothing once the server
says this browser is logged out; visited pages still open offline. Debian's chromium driven by
Playwright against a live server on 127.0.0.1."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ..support.browser import CODE_PROMPT, seed_entries

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
CACHED_URLS = """() => caches.keys()
  .then(names => Promise.all(names.filter(n => !n.startsWith("chat-shell-"))
    .map(n => caches.open(n).then(c => c.keys()))))
  .then(lists => lists.flat().map(r => new URL(r.url).pathname + new URL(r.url).search))"""


def controlled_tab(new_tab, app, path: str = "/"):
    tab = new_tab(app, path)
    tab.page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=10_000)
    return tab


def cached(tab) -> list[str]:
    """Paths (with query) of every page and image the worker has kept."""
    return tab.page.evaluate(CACHED_URLS)


def log_in(tab) -> None:
    tab.goto("/login")
    tab.page.get_by_label("Password").fill(PASSWORD)
    tab.page.get_by_role("button", name="Log in").click()
    expect(tab.page.get_by_role("textbox", name="Prompt")).to_be_visible()


@pytest.mark.parametrize("path", ["/chatlog.json", "/chatlog.full.json", "/chatlog.md"])
def test_exports_are_never_kept_by_the_worker(new_tab, demo_app, path):
    links = seed_entries(demo_app)
    tab = controlled_tab(new_tab, demo_app)
    tab.goto(links["code"])  # a page it does keep, so the cache is known to work
    expect(tab.page.get_by_role("article")).to_contain_text(CODE_PROMPT)

    # Asked for as a page (Accept: text/html), the way the worker decides what it keeps.
    status = tab.page.evaluate(
        "url => fetch(url, {headers: {Accept: 'text/html'}}).then(r => r.text().then(() => r.status))", path
    )

    assert status == 200
    kept = cached(tab)
    assert links["code"] in kept
    assert path not in kept


def test_no_store_responses_are_never_kept(new_tab, demo_app):
    tab = controlled_tab(new_tab, demo_app)

    tab.goto("/healthz")  # JSON, no-store: a navigation the worker sees
    expect(tab.page.locator("body")).to_contain_text('"status"')
    tab.goto("/models")

    kept = cached(tab)
    assert "/" in kept  # the start page is kept, so the worker does store pages
    assert "/healthz" not in kept
    assert "/models" not in kept


def test_offline_a_visited_entry_page_still_opens(new_tab, demo_app):
    links = seed_entries(demo_app)
    tab = controlled_tab(new_tab, demo_app)
    tab.goto(links["code"])
    expect(tab.page.get_by_role("article")).to_contain_text(CODE_PROMPT)
    tab.page.context.set_offline(True)

    tab.goto(links["code"])

    expect(tab.page.get_by_role("article")).to_contain_text(CODE_PROMPT)


@pytest.fixture
def kept_entry(new_tab, make_app):
    """(tab, entry permalink, end_every_session): logged in, an entry page visited and kept."""
    app = make_app(app_password=PASSWORD)
    link = seed_entries_logged_in(app)["code"]
    tab = controlled_tab(new_tab, app, "/login")
    log_in(tab)
    tab.goto(link)
    expect(tab.page.get_by_role("article")).to_contain_text(CODE_PROMPT)
    assert link in cached(tab)

    def end_every_session() -> None:
        """End every session, as "Log out everywhere" in another browser does."""
        other = app.test_client()
        other.post("/login", data={"password": PASSWORD, "next": "/"})
        assert other.post("/logout/everywhere").status_code == 302

    return tab, link, end_every_session


def test_a_way_to_the_login_page_clears_kept_pages(kept_entry):
    tab, link, end_every_session = kept_entry
    end_every_session()

    tab.goto("/chatlog")  # redirected to the login page
    expect(tab.page.get_by_label("Password")).to_be_visible()

    assert [path for path in cached(tab) if not path.startswith("/login")] == []
    tab.page.context.set_offline(True)
    tab.goto(link)
    expect(tab.page.get_by_role("heading", level=1)).to_have_text("You are offline")


def test_a_401_clears_kept_pages(kept_entry):
    tab, _link, end_every_session = kept_entry
    end_every_session()

    status = tab.page.evaluate(
        "() => fetch('/chatlog', {headers: {Accept: 'application/json'}}).then(r => r.status)"
    )

    assert status == 401
    assert cached(tab) == []


def seed_entries_logged_in(app) -> dict[str, str]:
    """seed_entries through a bearer token (the app has a password)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {PASSWORD}"}
    code = client.post("/generate_code", json={"prompt": CODE_PROMPT}, headers=headers)
    assert code.status_code == 200, code.data
    return {"code": code.get_json()["entry"]}


def test_log_out_everywhere_is_a_keyboard_reachable_button(new_tab, make_app):
    app = make_app(app_password=PASSWORD)
    tab = new_tab(app, "/login")
    log_in(tab)
    button = tab.page.get_by_role("button", name="Log out everywhere")
    expect(button).to_be_visible()

    for _ in range(40):  # Tab through the page until the button has focus (bounded)
        tab.page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    tab.page.keyboard.press("Enter")

    expect(tab.page.get_by_label("Password")).to_be_visible()
    assert re.search(r"/login$", tab.page.url)


def test_pages_are_no_store_unless_the_worker_asks_for_an_offline_copy(demo_app):
    client = demo_app.test_client()
    links = seed_entries(demo_app)

    plain = client.get(links["code"])
    for_worker = client.get(links["code"], headers={"X-Offline-Copy": "1"})
    fragment = client.get(links["code"], headers={"X-Offline-Copy": "1", "HX-Request": "true"})
    export = client.get("/chatlog.json", headers={"X-Offline-Copy": "1"})

    assert plain.status_code == for_worker.status_code == 200
    assert plain.headers["Cache-Control"] == "no-store"
    assert for_worker.headers["Cache-Control"] == "private, no-cache"
    assert fragment.headers["Cache-Control"] == "no-store"
    assert export.headers["Cache-Control"] == "no-store"
    assert "X-Offline-Copy" in for_worker.headers["Vary"]
