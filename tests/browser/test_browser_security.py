"""Script payloads in prompts and answers render as inert text in a real browser (chromium).

Every page is checked three ways: `window.__xss` stays undefined, the DOM holds no event-handler
attribute, `javascript:` URL or inline script from the payloads, and the page logs no console
error (a CSP violation or a failed `<img src=x>` request would be one).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from ..support.apps import TEST_KEY
from ..support.browser import WatchedPage
from ..support.upstream import Reply

pytestmark = pytest.mark.browser

DATE = "2024-05-01"
PAYLOADS = {
    "img-onerror": '<img src=x onerror="window.__xss=1">',
    "script": "<script>window.__xss=1</script>",
    "svg-onload": '<svg onload="window.__xss=1"></svg>',
    "iframe": '<iframe src="javascript:window.__xss=1"></iframe>',
}
LINK_ANSWER = (
    "Try [click me](javascript:window.__xss=1) or [shout](JaVaScRiPt:window.__xss=1) "
    'or [data](data:text/html,<script>window.__xss=1</script>) or <a href="javascript:window.__xss=1">raw</a>'
)

# Elements or attributes a payload would leave behind if it were rendered as HTML.
DANGEROUS_DOM = """() => {
  const found = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (/^on/i.test(a.name) || /^\\s*(javascript|data):/i.test(a.value)) {
        found.push(`${el.tagName} ${a.name}=${a.value}`);
      }
    }
  }
  for (const s of document.scripts) if (!s.src) found.push('inline script: ' + s.text.slice(0, 80));
  for (const el of document.querySelectorAll('main svg, main iframe, main img[src="x"], aside img')) {
    found.push('element: ' + el.outerHTML.slice(0, 80));
  }
  return found;
}"""


def _rows() -> list[dict[str, str]]:
    rows = [
        {"prompt": f"prompt {name}: {payload}", "response": f"answer {name}: {payload}"}
        for name, payload in PAYLOADS.items()
    ]
    rows.append({"prompt": "prompt link: [click me](javascript:window.__xss=1)", "response": LINK_ANSWER})
    return rows


INDEX = {name: i for i, name in enumerate(PAYLOADS)}
LINK_INDEX = len(PAYLOADS)


@pytest.fixture
def xss_app(make_app):
    app = make_app()
    added, _ = app.extensions["chatlog"].import_seed({DATE: _rows()})
    assert added == len(PAYLOADS) + 1
    return app


def assert_inert(watched: WatchedPage) -> None:
    page = watched.page
    # Give any handler (an image's onerror, an svg's onload) the chance to run first.
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.evaluate(DANGEROUS_DOM) == []
    watched.assert_clean()


def goto(watched: WatchedPage, path: str) -> Page:
    page = watched.page
    origin = re.match(r"https?://[^/]+", page.url).group(0)
    page.goto(origin + path)
    return page


# -- imported entries ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_on_the_entry_page_is_shown_as_text(open_page, xss_app, name):
    watched = open_page(xss_app)
    page = goto(watched, f"/chatlog/{DATE}/{INDEX[name]}")

    article = page.get_by_role("article")
    expect(article).to_contain_text(f"prompt {name}: {PAYLOADS[name]}")
    expect(article).to_contain_text(f"answer {name}: {PAYLOADS[name]}")
    assert_inert(watched)


def test_javascript_links_in_an_answer_do_nothing_when_clicked(open_page, xss_app):
    watched = open_page(xss_app)
    page = goto(watched, f"/chatlog/{DATE}/{LINK_INDEX}")
    url = page.url

    for text in ("click me", "shout", "data", "raw"):
        page.get_by_role("article").get_by_text(text, exact=False).first.click()

    assert page.url == url
    assert_inert(watched)


def test_javascript_link_in_an_answer_is_not_a_javascript_href(open_page, xss_app):
    watched = open_page(xss_app)
    page = goto(watched, f"/chatlog/{DATE}/{LINK_INDEX}")

    hrefs = page.get_by_role("article").locator("a[href]").evaluate_all("els => els.map(a => a.href)")

    assert hrefs  # the entry's own links (permalink, downloads) are there
    assert [h for h in hrefs if not h.startswith(("http://", "https://"))] == []
    assert_inert(watched)


def test_payloads_in_the_history_sidebar_are_shown_as_text(open_page, xss_app):
    watched = open_page(xss_app)
    page = watched.page
    history = page.get_by_role("complementary", name="History")

    for name, payload in PAYLOADS.items():
        expect(history.get_by_role("link", name=f"prompt {name}: {payload}")).to_be_visible()
    assert_inert(watched)


def test_payloads_on_the_full_history_page_are_shown_as_text(open_page, xss_app):
    watched = open_page(xss_app)
    page = goto(watched, "/chatlog")

    for name, payload in PAYLOADS.items():
        expect(page.get_by_role("link", name=f"prompt {name}: {payload}").first).to_be_visible()
    assert_inert(watched)


@pytest.mark.parametrize("query", ["xss", "onerror", "<script>", "window.__xss=1"])
def test_payloads_in_search_results_are_shown_as_text(open_page, xss_app, query):
    watched = open_page(xss_app)
    page = goto(watched, f"/chatlog?q={query}")

    results = page.locator("#search-results")
    expect(results.locator("mark").first).to_be_visible()
    for name, payload in PAYLOADS.items():
        if query.lower() in payload.lower():
            expect(results.get_by_role("link", name=f"prompt {name}: {payload}")).to_be_visible()
    assert_inert(watched)


def test_typing_a_payload_into_the_live_search_keeps_it_inert(open_page, xss_app):
    watched = open_page(xss_app)
    page = goto(watched, "/chatlog")

    search = page.get_by_role("searchbox", name="Search prompts and answers")
    search.type('"<img src=x onerror')  # a phrase (the closing quote may be left out): one mark
    expect(page.locator("#search-results mark").first).to_have_text("<img src=x onerror")
    assert_inert(watched)


def test_clicking_a_payload_history_link_opens_its_entry(open_page, xss_app):
    watched = open_page(xss_app)
    page = watched.page
    payload = PAYLOADS["img-onerror"]

    page.get_by_role("complementary", name="History").get_by_role(
        "link", name=f"prompt img-onerror: {payload}"
    ).click()

    expect(page).to_have_url(re.compile(rf"/chatlog/{DATE}/{INDEX['img-onerror']}$"))
    expect(page.get_by_role("article")).to_contain_text(payload)
    assert_inert(watched)


# -- generating with a payload -------------------------------------------------------------------


def results(page: Page):
    return page.get_by_role("region", name="Results")


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_generated_code_answer_for_a_payload_prompt_is_inert(open_page, demo_app, name):
    watched = open_page(demo_app)
    page = watched.page
    prompt = f"Write code for {PAYLOADS[name]}"

    page.get_by_role("textbox", name="Prompt").fill(prompt)
    page.get_by_role("button", name="Generate code").click()

    answer = results(page).get_by_role("article")
    expect(answer).to_have_class(re.compile(r"\bstatus-done\b"))
    expect(answer.locator(".prompt-text")).to_contain_text(prompt)
    expect(page.get_by_role("complementary", name="History").get_by_role("link", name=prompt)).to_be_visible()
    assert_inert(watched)


def test_generated_image_for_a_payload_prompt_is_inert(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = f"A fox {PAYLOADS['img-onerror']} {PAYLOADS['script']}"

    page.get_by_role("textbox", name="Prompt").fill(prompt)
    page.get_by_role("button", name="Generate image").click()

    image = results(page).get_by_role("img", name=re.compile("A fox"))
    expect(image).to_be_visible()
    expect(results(page).locator(".prompt-text")).to_contain_text(prompt)
    assert_inert(watched)


def test_streamed_payload_answer_split_across_chunks_is_inert(open_page, make_app, upstream):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    chunks = ["Here: <scr", "ipt>window.__xss=1</scr", "ipt> and <img src=x on", 'error="window.__xss=1">']
    upstream.script("/v1/chat/completions", Reply(chunks=chunks, chunk_delay=0.1))
    watched = open_page(app)
    page = watched.page

    page.get_by_role("textbox", name="Prompt").fill("Stream a payload")
    page.get_by_role("button", name="Generate code").click()

    answer = results(page).get_by_role("article")
    expect(answer).to_have_class(re.compile(r"\bstatus-done\b"))
    expect(answer).to_contain_text('<script>window.__xss=1</script> and <img src=x onerror="window.__xss=1">')
    assert_inert(watched)
