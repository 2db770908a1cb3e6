"""A search hit in a real browser: clicking it opens the entry scrolled to the match, marked."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from ..support.apps import BACKENDS

pytestmark = pytest.mark.browser


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_a_search_hit_opens_its_entry_scrolled_to_the_highlighted_match(open_page, demo_app):
    store = demo_app.extensions["chatlog"]
    paragraphs = "\n\n".join(f"Paragraph {n}: nothing to see here yet." for n in range(150))
    answer = paragraphs + "\n\nThe Quokka hides at the very end."
    entry = store.finish(store.begin("code", "a very long answer", "demo"), answer)
    watched = open_page(demo_app)
    page = watched.page
    page.goto(page.url.rstrip("/") + "/chatlog?q=quokka")

    hit = page.locator("#search-results").get_by_role("link", name="a very long answer")
    expect(page.locator("#search-results .snippet mark")).to_have_text(["Quokka"])
    hit.click()

    expect(page).to_have_url(re.compile(re.escape(entry.permalink) + r"\?hl=quokka#match$"))
    match = page.locator("mark#match")
    expect(match).to_have_text("Quokka")
    expect(match).to_be_in_viewport()
    assert match.evaluate("el => el.matches(':target') && getComputedStyle(el).outlineStyle") == "solid"
    assert page.evaluate("window.scrollY") > 1000  # the match is far below the page's top
    watched.assert_clean()
