"""The UI in a real browser: Debian's chromium driven by Playwright, against a live server."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ..support.apps import TEST_KEY
from ..support.browser import history, results
from ..support.upstream import Reply, error_body

pytestmark = pytest.mark.browser


def test_ctrl_enter_generates_code_into_results_and_history_without_reload(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill("Write a Python function that adds two numbers")
    prompt.press("Control+Enter")

    answer = results(page).get_by_role("article")
    expect(answer).to_have_count(1)
    expect(answer).to_contain_text("Demo answer")
    expect(answer.locator("pre.highlight")).to_be_visible()
    expect(history(page).get_by_role("link", name=re.compile("adds two numbers"))).to_be_visible()
    expect(results(page)).not_to_have_attribute("aria-busy", "true")
    assert page.evaluate("window.__noReload") is True
    expect(prompt).to_have_value("")
    expect(prompt).to_be_focused()
    watched.assert_clean()


def test_ctrl_shift_enter_generates_an_image_shown_in_results(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill("A red fox in the snow")
    prompt.press("Control+Shift+Enter")

    image = results(page).get_by_role("img", name=re.compile("red fox"))
    expect(image).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    expect(history(page).get_by_role("link", name=re.compile("red fox"))).to_be_visible()
    assert page.evaluate("window.__noReload") is True
    watched.assert_clean()


def test_enter_inserts_a_newline_and_generates_nothing(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.type("first line")
    prompt.press("Enter")
    prompt.type("second line")
    expect(prompt).to_have_value("first line\nsecond line")
    expect(results(page).get_by_role("article")).to_have_count(0)
    watched.assert_clean()


def test_upstream_failure_shows_an_error_and_keeps_the_prompt(open_page, make_app, upstream):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("boom")))
    watched = open_page(app)
    page = watched.page
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill("Keep me after the error")
    page.get_by_role("button", name="Generate code").click()

    alert = results(page).get_by_role("alert")
    expect(alert).to_contain_text("server error")
    expect(prompt).to_have_value("Keep me after the error")
    expect(history(page).get_by_role("link", name=re.compile("Keep me"))).to_be_visible()
    expect(page.get_by_text("Demo mode")).to_have_count(0)
    assert TEST_KEY not in page.content()
    # Swapping a 500 fragment is deliberate: it must not log a console error.
    watched.assert_clean()


def test_slash_focuses_prompt_escape_leaves_it_and_question_mark_opens_help(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.press("Escape")
    expect(prompt).not_to_be_focused()

    page.keyboard.press("/")
    expect(prompt).to_be_focused()
    expect(prompt).to_have_value("")

    prompt.press("Escape")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Generate an image")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    watched.assert_clean()


def test_history_link_opens_the_entry_page_which_survives_reload(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill("SQL: top customers")
    prompt.press("Control+Enter")
    link = history(page).get_by_role("link", name=re.compile("top customers"))
    href = link.get_attribute("href")
    link.click()
    expect(page).to_have_url(re.compile(re.escape(href) + "$"))
    expect(page.get_by_role("article")).to_contain_text("SELECT")
    page.reload()
    expect(page.get_by_role("article")).to_contain_text("SQL: top customers")
    page.go_back()
    expect(history(page).get_by_role("link", name=re.compile("top customers"))).to_have_attribute(
        "href", href
    )
    watched.assert_clean()


def _import_sample(app, n: int) -> None:
    rows = [{"prompt": f"sample prompt {i:02d}", "response": f"answer {i:02d}"} for i in range(n)]
    app.extensions["chatlog"].import_seed({"2024-08-30": rows[: n // 2], "2024-08-31": rows[n // 2 :]})


def test_history_loads_older_pages_as_they_scroll_into_view(open_page, make_app):
    app = make_app(history_sidebar_limit=3)
    _import_sample(app, 7)
    watched = open_page(app)
    page = watched.page
    links = history(page).get_by_role("link", name=re.compile("sample prompt"))
    more = page.get_by_role("button", name="Load older entries")
    for _ in range(10):  # each page loads when its button scrolls into view
        if more.count() == 0:
            break
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(100)
    expect(links).to_have_count(7)
    names = sorted(links.all_inner_texts())
    assert names == sorted({n for n in names})  # no entry twice
    expect(page.get_by_role("button", name="Load older entries")).to_have_count(0)
    watched.assert_clean()


def test_active_search_shows_highlighted_matches_with_a_linkable_url(open_page, demo_app):
    _import_sample(demo_app, 6)
    demo_app.extensions["chatlog"].import_seed({"2024-09-01": [{"prompt": "A red Fox", "response": "x"}]})
    watched = open_page(demo_app)
    page = watched.page
    page.get_by_role("link", name="All history").first.click()
    search = page.get_by_role("searchbox", name="Search prompts and answers")
    search.type("fox")
    expect(page.locator("#search-results mark")).to_have_text(["Fox"])
    expect(page).to_have_url(re.compile(r"/chatlog\?q=fox$"))
    page.reload()
    expect(page.get_by_role("link", name="A red Fox")).to_be_visible()
    expect(page.get_by_role("searchbox", name="Search prompts and answers")).to_have_value("fox")
    watched.assert_clean()


def test_deleting_an_entry_removes_it_from_results_and_history(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    page.on("dialog", lambda dialog: dialog.accept())
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill("Delete me later")
    prompt.press("Control+Enter")
    expect(history(page).get_by_role("link", name=re.compile("Delete me later"))).to_be_visible()

    results(page).get_by_role("button", name="Delete").click()

    expect(results(page).get_by_role("status")).to_have_text("Entry deleted.")
    expect(history(page).get_by_role("link", name=re.compile("Delete me later"))).to_have_count(0)
    watched.assert_clean()


STREAMED_ANSWER = ["Partial ", "text ", "arrives ", "first.\n\n", "```python\n", "print('hi')\n", "```\n"]


def test_streamed_answer_shows_partial_text_then_the_rendered_entry(open_page, make_app, upstream):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    upstream.script("/v1/chat/completions", Reply(chunks=STREAMED_ANSWER, chunk_delay=0.3))
    watched = open_page(app)
    page = watched.page
    page.get_by_role("textbox", name="Prompt").fill("Stream me an answer")
    page.get_by_role("button", name="Generate code").click()

    # Tokens show up in the streaming article, before the final event replaces it.
    expect(results(page).locator("article.streaming .stream-text")).to_contain_text("Partial text")

    answer = results(page).get_by_role("article")
    expect(answer).to_have_class(re.compile(r"\bstatus-done\b"))
    expect(answer).not_to_have_class(re.compile(r"\bstreaming\b"))
    expect(answer.locator("pre.highlight")).to_be_visible()
    expect(answer).to_contain_text("Partial text arrives first.")
    expect(results(page).locator('[aria-busy="true"]')).to_have_count(0)
    expect(results(page)).not_to_have_attribute("aria-busy", "true")
    watched.assert_clean()


def test_escape_stops_a_streaming_answer(open_page, make_app, upstream):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    words = [f"word{n} " for n in range(40)]
    upstream.script("/v1/chat/completions", Reply(chunks=words, chunk_delay=0.2))
    watched = open_page(app)
    page = watched.page
    page.get_by_role("textbox", name="Prompt").fill("Stop me with Escape")
    page.get_by_role("button", name="Generate code").click()
    expect(results(page).locator("article.streaming .stream-text")).to_contain_text("word0")

    page.keyboard.press("Escape")

    answer = results(page).get_by_role("article")
    expect(answer).to_have_class(re.compile(r"\bstatus-stopped\b"))
    expect(answer).to_contain_text("stopped")
    expect(answer).to_contain_text("word0")
    expect(answer).not_to_contain_text("word39")
    watched.assert_clean()
