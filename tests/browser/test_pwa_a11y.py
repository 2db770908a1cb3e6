"""Accessibility (axe-core), keyboard use, dark mode, the installable/offline app, first-load
weight and reduced motion, in Debian's chromium driven by Playwright against a live server.

axe-core is pinned in tests/js/package.json (lock file beside it) and read from
tests/js/node_modules; a session fixture runs `npm ci --prefix tests/js` when it is missing.
Elements are found by role and English accessible name (the default locale), not by markup.
"""

from __future__ import annotations

import base64
import contextlib
import io
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import BrowserContext, Page, expect

from ..support.apps import TEST_KEY
from ..support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    CODE_PROMPT,
    IMAGE_PROMPT,
    Tab,
    assert_no_axe_violations_light_and_dark,
    body_luminance,
    history,
    results,
    seed_entries,
)
from ..support.upstream import Reply, error_body, png_bytes

pytestmark = pytest.mark.browser

WEIGHT_BUDGET = 40 * 1024  # bytes transferred by the first load of /


# --- fixtures and helpers ----------------------------------------------------------------------


def prompt_box(page: Page):
    return page.get_by_role("textbox", name="Prompt")


def wait_for_done_answer(page: Page) -> None:
    newest = results(page).get_by_role("article").first
    expect(newest).to_have_class(re.compile(r"\bstatus-done\b"), timeout=15_000)


def wait_for_image(page: Page, name: str) -> None:
    image = results(page).get_by_role("img", name=re.compile(name))
    expect(image).to_be_visible(timeout=15_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())


# --- 1. axe-core ------------------------------------------------------------------------------


def _axe_index_empty(request, new_tab) -> Page:
    tab = new_tab(request.getfixturevalue("demo_app"))
    expect(prompt_box(tab.page)).to_be_visible()
    return tab.page


def _axe_index_with_results(request, new_tab) -> Page:
    upstream = request.getfixturevalue("upstream")
    app = request.getfixturevalue("make_app")(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    page = new_tab(app).page
    prompt = prompt_box(page)
    prompt.fill(CODE_PROMPT)
    prompt.press("Control+Enter")
    wait_for_done_answer(page)
    prompt.fill(IMAGE_PROMPT)
    prompt.press("Control+Shift+Enter")
    wait_for_image(page, "red fox")
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("boom")))
    prompt.fill("This one fails")
    prompt.press("Control+Enter")
    expect(results(page).get_by_role("alert")).to_be_visible(timeout=15_000)
    expect(results(page).get_by_role("article")).to_have_count(3)
    expect(results(page).locator('[aria-busy="true"]')).to_have_count(0)
    return page


def _axe_entry(request, new_tab) -> Page:
    app = request.getfixturevalue("demo_app")
    links = seed_entries(app)
    page = new_tab(app, links["code"]).page
    expect(page.get_by_role("article")).to_contain_text(CODE_PROMPT)
    return page


def _axe_history(request, new_tab) -> Page:
    app = request.getfixturevalue("demo_app")
    seed_entries(app)
    page = new_tab(app, "/chatlog").page
    expect(page.get_by_role("link", name=re.compile("adds two numbers"))).to_be_visible()
    return page


def _axe_history_search(request, new_tab) -> Page:
    app = request.getfixturevalue("demo_app")
    seed_entries(app)
    page = new_tab(app, "/chatlog?q=fox").page
    expect(page.get_by_role("link", name=re.compile("red fox"))).to_be_visible()
    return page


def _axe_gallery(request, new_tab) -> Page:
    app = request.getfixturevalue("demo_app")
    seed_entries(app)
    page = new_tab(app, "/images").page
    # The thumbnail is decorative (alt=""): its link is named by the caption beside it.
    image = page.get_by_role("link", name=re.compile("red fox")).locator("img")
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return page


def _axe_login(request, new_tab) -> Page:
    app = request.getfixturevalue("make_app")(app_password="correct horse battery staple")
    page = new_tab(app).page
    expect(page.get_by_label("Password")).to_be_visible()
    return page


def _axe_not_found(request, new_tab) -> Page:
    tab = new_tab(request.getfixturevalue("demo_app"), "/chatlog/1999-01-01/7")
    expect(tab.page.get_by_role("heading", level=1)).to_contain_text("404")
    return tab.page


def _axe_offline(request, new_tab) -> Page:
    tab = new_tab(request.getfixturevalue("demo_app"), "/offline")
    expect(tab.page.get_by_role("heading", level=1)).to_be_visible()
    return tab.page


AXE_PAGES = {
    "index-empty": _axe_index_empty,
    "index-with-code-image-and-failed-results": _axe_index_with_results,
    "entry-page": _axe_entry,
    "history": _axe_history,
    "history-search": _axe_history_search,
    "gallery": _axe_gallery,
    "login": _axe_login,
    "not-found": _axe_not_found,
    "offline-page": _axe_offline,
}


@pytest.mark.parametrize("page_name", list(AXE_PAGES))
def test_page_has_no_axe_violations_in_light_and_dark(request, new_tab, axe_source, page_name):
    page = AXE_PAGES[page_name](request, new_tab)  # built once, light
    assert_no_axe_violations_light_and_dark(page, axe_source, page_name)


# --- 2. keyboard ------------------------------------------------------------------------------


def test_ctrl_enter_in_the_prompt_generates_code(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt = prompt_box(page)
    prompt.fill(CODE_PROMPT)
    prompt.press("Control+Enter")
    answer = results(page).get_by_role("article")
    expect(answer).to_have_count(1)
    expect(answer).to_contain_text("Demo answer")


def test_ctrl_shift_enter_in_the_prompt_generates_an_image(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt = prompt_box(page)
    prompt.fill(IMAGE_PROMPT)
    prompt.press("Control+Shift+Enter")
    wait_for_image(page, "red fox")
    expect(results(page).get_by_role("article")).to_have_count(1)


def test_enter_in_the_prompt_inserts_a_newline_and_generates_nothing(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt = prompt_box(page)
    prompt.press_sequentially("first line")
    prompt.press("Enter")
    prompt.press_sequentially("second line")
    expect(prompt).to_have_value("first line\nsecond line")
    page.wait_for_load_state("networkidle")
    expect(results(page).get_by_role("article")).to_have_count(0)


def test_slash_outside_a_text_field_focuses_the_prompt_without_typing_it(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt = prompt_box(page)
    page.get_by_role("link", name="All history").first.focus()
    page.keyboard.press("/")
    expect(prompt).to_be_focused()
    expect(prompt).to_have_value("")


def test_slash_inside_another_text_field_is_typed_there(new_tab, demo_app):
    page = new_tab(demo_app).page
    search = page.get_by_role("searchbox", name="Search history")
    search.focus()
    page.keyboard.press("/")
    expect(search).to_be_focused()
    expect(search).to_have_value("/")


def test_escape_moves_focus_out_of_the_prompt(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt = prompt_box(page)
    prompt.focus()
    page.keyboard.press("Escape")
    expect(prompt).not_to_be_focused()


def test_escape_while_streaming_stops_the_answer(new_tab, make_app, upstream):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    upstream.script("/v1/chat/completions", Reply(chunks=[f"word{n} " for n in range(40)], chunk_delay=0.2))
    page = new_tab(app).page
    prompt = prompt_box(page)
    prompt.fill("Stop me with Escape")
    prompt.press("Control+Enter")
    answer = results(page).get_by_role("article")
    expect(answer).to_contain_text("word0", timeout=10_000)
    page.keyboard.press("Escape")
    expect(answer).to_have_class(re.compile(r"\bstatus-stopped\b"), timeout=10_000)
    expect(answer).not_to_contain_text("word39")


def test_question_mark_opens_the_help_dialog_with_focus_inside_it(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt_box(page).press("Escape")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    assert dialog.evaluate("d => d === document.activeElement || d.contains(document.activeElement)"), (
        "focus is outside the dialog: " + page.evaluate("document.activeElement.outerHTML.slice(0, 120)")
    )


def test_help_dialog_lists_every_shortcut(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt_box(page).press("Escape")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    keys = {k.strip() for k in dialog.locator("kbd").all_inner_texts()}
    missing_keys = {"Ctrl", "Shift", "Enter", "/", "Esc", "j", "k", "?"} - keys
    assert not missing_keys, f"keys not listed in the help dialog: {missing_keys} (listed: {keys})"
    text = dialog.inner_text().lower()
    actions = [
        "generate code",
        "generate an image",
        "new line",
        "focus the prompt",
        "stop",
        "history",
        "help",
    ]
    missing_actions = [a for a in actions if a not in text]
    assert not missing_actions, f"actions not described in the help dialog: {missing_actions}\n{text}"


def test_escape_closes_the_help_dialog(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt_box(page).press("Escape")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


@pytest.mark.parametrize("path", ["/", "/chatlog"])
def test_j_and_k_move_focus_through_history_links(new_tab, demo_app, path):
    seed_entries(demo_app)
    page = new_tab(demo_app, path).page
    newest = page.get_by_role("link", name=re.compile("red fox"))
    older = page.get_by_role("link", name=re.compile("adds two numbers"))
    expect(newest).to_be_visible()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("j")
    expect(newest).to_be_focused()
    page.keyboard.press("j")
    expect(older).to_be_focused()
    page.keyboard.press("k")
    expect(newest).to_be_focused()


def test_a_whole_session_works_with_the_keyboard_alone(new_tab, demo_app):
    tab = new_tab(demo_app)
    page = tab.page
    keyboard = page.keyboard
    prompt = prompt_box(page)

    keyboard.press("Escape")
    keyboard.press("/")
    expect(prompt).to_be_focused()
    keyboard.type(CODE_PROMPT)
    keyboard.press("Control+Enter")
    wait_for_done_answer(page)
    expect(prompt).to_be_focused()  # after an answer, ready for the next prompt

    keyboard.type(IMAGE_PROMPT)
    keyboard.press("Control+Shift+Enter")
    wait_for_image(page, "red fox")
    expect(prompt).to_be_focused()

    keyboard.press("Escape")
    keyboard.press("j")
    keyboard.press("j")
    link = history(page).get_by_role("link", name=re.compile("adds two numbers"))
    expect(link).to_be_focused()
    href = link.get_attribute("href")
    keyboard.press("Enter")
    expect(page).to_have_url(re.compile(re.escape(href) + "$"))
    expect(page.get_by_role("article")).to_contain_text(CODE_PROMPT)

    # Alt+Left is handled by the browser's UI, which headless Chromium does not run (pressing it
    # there does nothing), so go back the way that key would.
    page.go_back()
    expect(page).to_have_url(tab.base + "/")
    keyboard.press("Escape")
    keyboard.press("/")
    expect(prompt_box(page)).to_be_focused()


FOCUS_STYLE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const style = getComputedStyle(el);
  return {
    element: el.outerHTML.slice(0, 100),
    focusVisible: el.matches(":focus-visible"),
    outlineStyle: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
  };
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_keyboard_focus_is_visible_on_every_tab_stop(new_tab, demo_app, scheme):
    seed_entries(demo_app)
    page = new_tab(demo_app, color_scheme=scheme).page
    expect(history(page).get_by_role("link", name=re.compile("red fox"))).to_be_visible()
    seen: list[dict[str, Any]] = []
    for _ in range(30):
        page.keyboard.press("Tab")
        state = page.evaluate(FOCUS_STYLE)
        if state and state["element"] not in {s["element"] for s in seen}:
            seen.append(state)
    assert len(seen) >= 10, f"Tab reached only {len(seen)} elements: {seen}"
    invisible = [
        s for s in seen if not s["focusVisible"] or s["outlineStyle"] == "none" or s["outlineWidth"] <= 0
    ]
    assert invisible == [], f"{scheme}: focused elements without a visible outline: {invisible}"


# --- 3. dark mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colours_follow_the_system_scheme(new_tab, demo_app, scheme):
    page = new_tab(demo_app, color_scheme=scheme).page
    if scheme == "dark":
        assert body_luminance(page) < 0.05
    else:
        assert body_luminance(page) > 0.8
    expect(page.get_by_role("button", name="Dark mode")).to_have_attribute(
        "aria-pressed", "true" if scheme == "dark" else "false"
    )


def test_dark_mode_toggle_flips_the_scheme(new_tab, demo_app):
    page = new_tab(demo_app, color_scheme="light").page
    toggle = page.get_by_role("button", name="Dark mode")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    assert body_luminance(page) < 0.05
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert body_luminance(page) > 0.8


@pytest.mark.parametrize(("system", "chosen"), [("light", "dark"), ("dark", "light")])
def test_dark_mode_choice_survives_a_reload(new_tab, demo_app, system, chosen):
    page = new_tab(demo_app, color_scheme=system).page
    toggle = page.get_by_role("button", name="Dark mode")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true" if chosen == "dark" else "false")
    page.reload()
    expect(page.get_by_role("button", name="Dark mode")).to_have_attribute(
        "aria-pressed", "true" if chosen == "dark" else "false"
    )
    if chosen == "dark":
        assert body_luminance(page) < 0.05
    else:
        assert body_luminance(page) > 0.8


# Records <html data-theme> when <body> first appears: a choice applied by then is applied
# before anything is painted (render-blocking head scripts run before the body is parsed).
THEME_AT_BODY = """
new MutationObserver((records, observer) => {
  if (!document.body) return;
  window.__themeAtBody = document.documentElement.getAttribute("data-theme");
  observer.disconnect();
}).observe(document, {childList: true, subtree: true});
"""


@pytest.mark.parametrize(("system", "chosen"), [("light", "dark"), ("dark", "light")])
def test_stored_scheme_is_applied_before_the_body_is_parsed(new_tab, demo_app, system, chosen):
    page = new_tab(demo_app, color_scheme=system).page
    page.get_by_role("button", name="Dark mode").click()
    page.add_init_script(THEME_AT_BODY)
    page.reload()
    assert page.evaluate("window.__themeAtBody") == chosen


# --- 4. PWA -----------------------------------------------------------------------------------


def test_manifest_describes_a_standalone_app(new_tab, demo_app):
    tab = new_tab(demo_app, None)
    response = tab.page.request.get(tab.base + "/manifest.webmanifest")
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["name"] and manifest["short_name"]
    assert manifest["start_url"] == "/"
    assert manifest["display"] == "standalone"
    for colour in ("theme_color", "background_color"):
        assert re.fullmatch(r"#[0-9a-fA-F]{6}", manifest.get(colour, "")), (colour, manifest)


@pytest.mark.parametrize(("size", "purpose"), [(192, "any"), (512, "any"), (512, "maskable")])
def test_manifest_icon_loads_as_a_png_of_its_size(new_tab, demo_app, size, purpose):
    tab = new_tab(demo_app, None)
    manifest = tab.page.request.get(tab.base + "/manifest.webmanifest").json()
    icons = [
        icon
        for icon in manifest["icons"]
        if f"{size}x{size}" in icon.get("sizes", "").split()
        and purpose in icon.get("purpose", "any").split()
        and icon.get("type") == "image/png"
    ]
    assert icons, f"no {size}x{size} PNG icon for purpose {purpose}: {manifest['icons']}"
    for icon in icons:
        response = tab.page.request.get(tab.base + icon["src"])
        assert response.status == 200, icon
        assert response.headers["content-type"] == "image/png", icon
        with Image.open(io.BytesIO(response.body())) as image:
            assert (image.format, image.size) == ("PNG", (size, size)), icon


def test_service_worker_controls_the_page_after_a_reload(new_tab, demo_app):
    page = new_tab(demo_app).page
    page.wait_for_function("() => navigator.serviceWorker.ready.then(r => !!r.active)", timeout=10_000)
    page.reload()
    script = page.evaluate(
        "navigator.serviceWorker.controller && navigator.serviceWorker.controller.scriptURL"
    )
    assert script and script.endswith("/sw.js"), script


@pytest.mark.full_chromium
def test_chromium_considers_the_app_installable(playwright, serve, demo_app, tmp_path):
    base = serve(demo_app)
    # Installability needs a normal profile: Playwright's new_context() is incognito-like.
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        page = context.new_page()
        page.goto(base + "/")
        page.wait_for_function("() => navigator.serviceWorker.ready.then(r => !!r.active)", timeout=10_000)
        cdp = context.new_cdp_session(page)
        errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        manifest = cdp.send("Page.getAppManifest")
    finally:
        context.close()
    assert errors == [], errors
    assert manifest["errors"] == [], manifest["errors"]


def test_login_page_logs_no_console_error(new_tab, make_app):
    """With APP_PASSWORD the login page still runs app.js; registering /sw.js must not hit the
    login redirect (Chromium logs "The script resource is behind a redirect" as a console error)."""
    tab = new_tab(make_app(app_password="correct horse battery staple"))
    expect(tab.page.get_by_label("Password")).to_be_visible()
    tab.page.wait_for_load_state("networkidle")
    assert tab.console_errors == []


class OfflineApp:
    """A page whose service worker has seen /, an entry page and /chatlog while online."""

    def __init__(self, tab: Tab, links: dict[str, str], context: BrowserContext) -> None:
        self.tab = tab
        self.page = tab.page
        self.links = links
        self.context = context


@pytest.fixture
def offline_app(new_tab, demo_app) -> OfflineApp:
    links = seed_entries(demo_app)
    tab = new_tab(demo_app)
    page = tab.page
    page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=10_000)
    tab.goto(links["code"])
    expect(page.get_by_role("article")).to_contain_text(CODE_PROMPT)
    tab.goto("/chatlog")
    expect(page.get_by_role("link", name=re.compile("adds two numbers"))).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.context.set_offline(True)
    return OfflineApp(tab, links, page.context)


def test_offline_the_app_shell_still_renders(offline_app):
    offline_app.tab.goto("/")
    expect(prompt_box(offline_app.page)).to_be_visible()


def test_offline_a_visited_entry_page_shows_its_content(offline_app):
    offline_app.tab.goto(offline_app.links["code"])
    expect(offline_app.page.get_by_role("article")).to_contain_text(CODE_PROMPT)


def test_offline_reloading_history_shows_its_entries(offline_app):
    offline_app.page.reload()
    expect(offline_app.page.get_by_role("link", name=re.compile("adds two numbers"))).to_be_visible()


def test_offline_an_unvisited_page_shows_the_offline_page(offline_app):
    offline_app.tab.goto(offline_app.links["image"])
    expect(offline_app.page.get_by_role("heading", level=1)).to_have_text("You are offline")


def test_offline_banner_is_shown_on_a_page_loaded_offline(offline_app):
    offline_app.tab.goto(offline_app.links["code"])
    expect(offline_app.page.get_by_role("status").filter(has_text="You are offline")).to_be_visible()


def test_offline_banner_hides_when_back_online(offline_app):
    offline_app.tab.goto(offline_app.links["code"])
    banner = offline_app.page.get_by_role("status").filter(has_text="You are offline")
    expect(banner).to_be_visible()
    offline_app.context.set_offline(False)
    expect(banner).to_be_hidden()


def test_offline_generate_attempt_says_so_and_keeps_the_prompt(new_tab, demo_app):
    page = new_tab(demo_app).page
    page.wait_for_load_state("networkidle")
    page.context.set_offline(True)
    expect(page.get_by_role("status").filter(has_text="You are offline")).to_be_visible()
    prompt = prompt_box(page)
    prompt.fill("Generate this when online")
    prompt.press("Control+Enter")
    alert = results(page).get_by_role("alert")
    expect(alert).to_contain_text("offline", timeout=10_000)
    expect(prompt).to_have_value("Generate this when online")


# --- 5. weight --------------------------------------------------------------------------------


class CountingProxy:
    """A TCP relay on 127.0.0.1 counting the bytes each connection carries back to the browser:
    exactly what went over the wire (headers and encoded bodies), whichever part of the browser
    (page, service worker, manifest/icon fetcher) made the request."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.connections: list[dict[str, Any]] = []
        self.last_activity = time.monotonic()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        record: dict[str, Any] = {"sent": bytearray(), "received": 0, "open": True}
        with self.lock:
            self.connections.append(record)
        server = socket.create_connection(self.target)
        peers = {client: server, server: client}
        try:
            while peers:
                readable, _, _ = select.select(list(peers), [], [], 5)
                if not readable:
                    break
                for sock in readable:
                    data = sock.recv(65536)
                    with self.lock:
                        self.last_activity = time.monotonic()
                        if sock is client and len(record["sent"]) < 65536:
                            record["sent"] += data
                        elif sock is server:
                            record["received"] += len(data)
                    other = peers[sock]
                    if data:
                        other.sendall(data)
                    else:
                        with contextlib.suppress(OSError):
                            other.shutdown(socket.SHUT_WR)
                        del peers[sock]
        except OSError:
            pass
        finally:
            client.close()
            server.close()
            with self.lock:
                record["open"] = False
                self.last_activity = time.monotonic()

    def wait_idle(self, quiet: float = 0.75, limit: float = 15.0) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            with self.lock:
                idle = not any(c["open"] for c in self.connections)
                quiet_enough = time.monotonic() - self.last_activity > quiet
            if idle and quiet_enough:
                return
            time.sleep(0.05)

    def breakdown(self) -> list[tuple[str, int]]:
        rows = []
        with self.lock:
            for c in self.connections:
                lines = re.findall(rb"^([A-Z]+ \S+) HTTP/1\.[01]\r?$", bytes(c["sent"]), re.M)
                rows.append((" + ".join(line.decode() for line in lines) or "(no request)", c["received"]))
        return rows

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def counted(serve, demo_app) -> Iterator[CountingProxy]:
    proxy = CountingProxy(serve(demo_app))
    yield proxy
    proxy.close()


@pytest.mark.full_chromium  # what the browser a person runs fetches, its favicon among it
def test_first_load_transfers_at_most_40_kb(browser, counted):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(counted.url + "/", wait_until="networkidle")
        page.wait_for_function("() => navigator.serviceWorker.ready.then(r => !!r.active)", timeout=10_000)
        # A desktop Chrome fetches the manifest and an icon on every load to offer installing;
        # headless Chrome does so when asked.
        context.new_cdp_session(page).send("Page.getInstallabilityErrors")
        page.wait_for_load_state("networkidle")
        counted.wait_idle()
    finally:
        context.close()
    rows = counted.breakdown()
    total = sum(size for _, size in rows)
    table = "\n".join(f"{size:7d}  {what}" for what, size in sorted(rows, key=lambda r: -r[1]))
    assert total <= WEIGHT_BUDGET, f"first load transferred {total} B > {WEIGHT_BUDGET} B:\n{table}"


@pytest.mark.full_chromium  # the manifest, its icon and the favicon: the headless shell fetches none
def test_first_load_makes_no_request_to_another_origin(new_tab, demo_app):
    tab = new_tab(demo_app, None)
    requests: list[str] = []
    tab.page.context.on("request", lambda r: requests.append(r.url))
    tab.goto("/")
    tab.page.wait_for_load_state("networkidle")
    tab.page.wait_for_function("() => navigator.serviceWorker.ready.then(r => !!r.active)", timeout=10_000)
    tab.page.context.new_cdp_session(tab.page).send("Page.getInstallabilityErrors")
    tab.page.wait_for_load_state("networkidle")
    assert requests, "no request recorded"
    foreign = [url for url in requests if not url.startswith(tab.base + "/")]
    assert foreign == [] and tab.foreign_requests == [], foreign + tab.foreign_requests


TEXT_TYPES = ("text/css", "text/javascript", "application/javascript", "image/svg+xml")


@pytest.mark.full_chromium  # the favicon is among the assets: the headless shell never asks for it
def test_static_assets_are_compressed_and_fingerprinted_ones_immutable(new_tab, demo_app):
    tab = new_tab(demo_app, None)
    responses = []
    tab.page.on("response", lambda response: responses.append(response))
    tab.goto("/")
    tab.page.wait_for_load_state("networkidle")
    static = [r for r in responses if "/static/" in r.url]
    assert len(static) >= 4, [r.url for r in responses]  # CSS bundle, theme.js, JS bundle, icon
    problems = []
    for response in static:
        headers = response.headers
        if "?v=" in response.url and "immutable" not in headers.get("cache-control", ""):
            problems.append(f"{response.url}: Cache-Control {headers.get('cache-control')!r}")
        ctype = headers.get("content-type", "").split(";")[0]
        compressible = ctype in TEXT_TYPES and len(response.body()) >= 1024
        if compressible and headers.get("content-encoding") not in ("br", "gzip"):
            problems.append(f"{response.url}: Content-Encoding {headers.get('content-encoding')!r}")
    assert problems == [], "\n".join(problems)


# --- 6. reduced motion ------------------------------------------------------------------------


def test_busy_spinner_does_not_move_with_reduced_motion(new_tab, make_app, upstream):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    slow_image = Reply(delay=2.0, json={"created": 0, "data": [{"b64_json": _b64_png()}]})
    upstream.script("/v1/images/generations", slow_image)
    page = new_tab(app, reduced_motion="reduce").page
    prompt = prompt_box(page)
    prompt.fill(IMAGE_PROMPT)
    prompt.press("Control+Shift+Enter")
    busy = page.get_by_role("status").filter(has_text="Generating")
    expect(busy).to_be_visible()
    animations = busy.evaluate(
        "el => [el, ...el.querySelectorAll('*')].map(e => getComputedStyle(e).animationName)"
    )
    wait_for_image(page, "red fox")
    assert set(animations) == {"none"}, animations


def _b64_png() -> str:
    return base64.b64encode(png_bytes()).decode()
