"""Every page on a 360 px phone (Chromium's mobile emulation): laid out at the phone's width.

A page wider than the screen makes the phone zoom the whole page out (window.innerWidth grows
past 360) or scroll sideways. The history holds what stretches pages: 300-character prompts
without a break, an answer with a long word, a long URL, long inline code, a table and a code
block with a long line. Checked in English and German, light and dark.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from playwright.sync_api import Browser

from ..support.apps import TEST_KEY
from ..support.browser import WatchedPage
from ..support.upstream import Reply, chat_completion

pytestmark = pytest.mark.browser

PHONE = {
    "viewport": {"width": 360, "height": 740},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}
LONG_WORD = "Donaudampfschifffahrtsgesellschaftskapitaensmuetzenabzeichen" * 5  # 300 characters
CODE_PROMPT = "Explain" + "Pneumonoultramicroscopicsilicovolcanoconiosis" * 6 + "please"
IMAGE_PROMPT = "Draw" + "Hippopotomonstrosesquippedaliophobia" * 8 + "now"
LONG_URL = "https://example.com/" + "/".join(f"segment{n:03d}" for n in range(30)) + "?query=" + "z" * 80
LONG_CODE_LINE = "result = compute(" + ", ".join(f"argument_number_{n}" for n in range(30)) + ")"
ANSWER = f"""Here is {LONG_WORD}, see {LONG_URL} and `{"inline_code_" * 20}`.

| first column | second column | third column | fourth column |
|---|---|---|---|
| {LONG_WORD[:80]} | value | another value | yet another value |

```python
{LONG_CODE_LINE}
```
"""

# Elements reaching past the phone's width, except inside an element that scrolls or clips its own
# content (a code block): that element is checked itself. <html> and <body> do not count as such
# containers, so hiding the page's overflow cannot pass the check.
OVERFLOWING = """(width) => {
  const contained = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return true;
    }
    return false;
  };
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= width + 0.5 || contained(el)) continue;
    const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + [...el.classList].join(".");
    wide.push(`${name} right=${Math.round(box.right)}`);
  }
  return wide;
}"""


def seed(client, upstream) -> dict[str, str]:
    """Entries with long unbroken text, made through the app; their pages by name."""
    upstream.script("/v1/chat/completions", Reply(json=chat_completion(ANSWER)))
    code = client.post("/generate_code", data={"prompt": CODE_PROMPT})
    image = client.post("/generate_image", data={"prompt": IMAGE_PROMPT})
    assert code.status_code == 200, code.get_data(as_text=True)
    assert image.status_code == 200, image.get_data(as_text=True)
    return {
        "index": "/",
        "history": "/chatlog",
        "gallery": "/images",
        "code entry": code.get_json()["entry"],
        "image entry": image.get_json()["entry"],
        "search": "/chatlog?q=" + quote(LONG_WORD[:40]),
    }


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("de-DE", "de")], ids=["en", "de"])
def test_every_page_fits_a_360px_phone_without_sideways_scrolling(
    browser: Browser,
    make_app,
    upstream,
    live_server,
    locale,
    lang,
):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    pages = seed(app.test_client(), upstream)
    server = live_server(app)
    context = browser.new_context(**PHONE, locale=locale)
    try:
        watched = WatchedPage(context.new_page(), server.url)
        page = watched.page
        problems = {}
        for name, path in pages.items():
            page.emulate_media(color_scheme="light")
            response = page.goto(server.url + path)
            assert response is not None and response.status == 200, (name, path)
            page.wait_for_load_state("networkidle")
            assert page.evaluate("document.documentElement.lang") == lang
            for scheme in ("light", "dark"):  # the stylesheet follows the switch at once
                page.emulate_media(color_scheme=scheme)
                dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
                assert dark is (scheme == "dark")
                layout = page.evaluate(
                    "() => ({inner: window.innerWidth, scroll: document.documentElement.scrollWidth})"
                )
                wide = page.evaluate(OVERFLOWING, PHONE["viewport"]["width"])
                if name == "code entry":  # the long code line is there, and scrolls inside its block
                    block = page.locator("pre", has_text=LONG_CODE_LINE[:40])
                    assert block.evaluate("pre => pre.scrollWidth > pre.clientWidth") is True
                if layout != {"inner": 360, "scroll": 360} or wide:
                    problems[f"{name} ({scheme})"] = (layout, wide[:5])
        assert problems == {}
        watched.assert_clean()
    finally:
        context.close()
