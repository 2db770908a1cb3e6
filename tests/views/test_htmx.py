"""htmx requests (`HX-Request: true`) get server-rendered HTML fragments; browsers get full pages.

Also: model output and prompts are escaped/sanitized, the page's landmarks and names match the UI
contract, demo mode is labelled, and security headers are on every kind of response.
"""

from __future__ import annotations

import re

import pytest

from ..support.apps import TEST_KEY
from ..support.html import Node, parse
from ..support.htmx import HX, StreamedAnswer, htmx_generate_code
from ..support.upstream import Reply, chat_completion, error_body

PERMALINK_RE = re.compile(r"^/chatlog/\d{4}-\d{2}-\d{2}/\d+$")
IMAGE_URL_RE = re.compile(r"^/images/[0-9a-f]{32}\.png$")


# -- a tiny DOM ------------------------------------------------------------------------------


def unsafe_markup(html: str) -> list[str]:
    """Everything in `html` that would run script: inline/foreign scripts, on* handlers, js: URLs."""
    problems = []
    for node in parse(html).iter():
        if node.tag == "script" and not (node.attrs.get("src") or "").startswith("/static/"):
            problems.append(f"<script> {node.attrs}")
        if node.tag in ("iframe", "object", "embed", "svg", "math", "base"):
            problems.append(f"<{node.tag}>")
        for name, value in node.attrs.items():
            if name.startswith("on"):
                problems.append(f"{node.tag} {name}={value}")
            if name in ("href", "src", "action", "formaction", "xlink:href", "srcdoc") and value:
                squashed = re.sub(r"[\s\x00-\x1f]", "", value).lower()
                if squashed.startswith(("javascript:", "vbscript:", "data:text/html")):
                    problems.append(f"{node.tag} {name}={value}")
    return problems


def body_of(response) -> str:
    return response.get_data(as_text=True)


def streamed(text: str, size: int = 4) -> Reply:
    """A streamed chat answer of `text`, sent in small pieces (htmx code requests stream)."""
    return Reply(chunks=[text[i : i + size] for i in range(0, len(text), size)])


def everything_swapped(answer: StreamedAnswer) -> str:
    """All HTML a streamed htmx answer puts into the page: the POST fragment, every token
    fragment (swapped in as HTML) and the final entry."""
    return answer.html + "\n" + "".join(answer.tokens)


def is_full_page(html: str) -> bool:
    return html.lstrip().lower().startswith("<!doctype html>")


def article(doc: Node) -> Node:
    articles = doc.find_all("article")
    assert len(articles) == 1, [a.attrs for a in articles]
    return articles[0]


def oob_history(doc: Node) -> Node:
    node = doc.by_id("history-days")
    assert node is not None, "no #history-days in the fragment"
    return node


def permalink_of(doc: Node) -> str:
    links = [
        a.attrs["href"] for a in article(doc).find_all("a") if PERMALINK_RE.match(a.attrs.get("href") or "")
    ]
    assert links, "the entry has no permalink"
    return links[0]


# -- POST /generate_code and /generate_image with HX-Request --------------------------------


def test_htmx_generate_code_returns_html_fragment(client):
    response = client.post("/generate_code", data={"prompt": "fragment please"}, headers=HX)

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = body_of(response)
    assert "<html" not in html.lower()
    assert not html.lstrip().startswith("{")


def test_htmx_generate_code_renders_answer_markdown_in_entry_article(client, upstream):
    upstream.script("/v1/chat/completions", streamed("Some **bold** words.\n\n```python\nprint('hi')\n```"))

    doc = parse(htmx_generate_code(client, "markdown").final)

    entry = article(doc)
    assert [s.text for s in entry.find_all("strong")] == ["bold"]
    code_blocks = entry.find_all("pre")
    assert len(code_blocks) == 1
    assert "print" in code_blocks[0].text
    assert "**bold**" not in entry.text


def test_htmx_generate_code_shows_the_prompt_in_the_entry(client):
    doc = parse(body_of(client.post("/generate_code", data={"prompt": "visible prompt"}, headers=HX)))

    assert "visible prompt" in article(doc).text


def test_htmx_generate_code_sends_history_out_of_band(client):
    doc = parse(body_of(client.post("/generate_code", data={"prompt": "oob"}, headers=HX)))

    history = oob_history(doc)
    assert history.attrs.get("hx-swap-oob") == "true"
    assert history not in article(doc).iter()


def test_htmx_oob_history_links_to_the_new_entry(client):
    doc = parse(body_of(client.post("/generate_code", data={"prompt": "linked entry"}, headers=HX)))

    permalink = permalink_of(doc)
    links = [a for a in oob_history(doc).find_all("a") if a.attrs.get("href") == permalink]
    assert len(links) == 1
    assert "linked entry" in links[0].text


def test_htmx_entry_permalink_opens_the_same_entry(client):
    doc = parse(body_of(client.post("/generate_code", data={"prompt": "same entry"}, headers=HX)))

    entry = client.get(permalink_of(doc), headers={"Accept": "application/json"}).get_json()

    assert entry["prompt"] == "same entry"


def test_htmx_generate_image_fragment_has_img_with_own_url(client, upstream):
    doc = parse(body_of(client.post("/generate_image", data={"prompt": "a red square"}, headers=HX)))

    images = article(doc).find_all("img")
    assert len(images) == 1
    src = images[0].attrs.get("src") or ""
    assert IMAGE_URL_RE.match(src), src
    assert images[0].attrs.get("alt")
    assert client.get(src).status_code == 200


def test_htmx_generate_image_adds_history_link(client):
    doc = parse(body_of(client.post("/generate_image", data={"prompt": "pictured"}, headers=HX)))

    permalink = permalink_of(doc)
    assert [a for a in oob_history(doc).find_all("a") if a.attrs.get("href") == permalink]


# -- untrusted model output and prompts -------------------------------------------------------

HOSTILE_OUTPUT = [
    pytest.param("<script>alert(1)</script>", id="script"),
    pytest.param("<img src=x onerror=alert(1)>", id="img-onerror"),
    pytest.param("[x](javascript:alert(1))", id="js-link"),
    pytest.param("[x](JaVaScRiPt:alert(1))", id="js-link-mixed-case"),
    pytest.param('<a href="javascript:alert(1)">x</a>', id="raw-js-anchor"),
    pytest.param("<svg onload=alert(1)></svg>", id="svg-onload"),
    pytest.param("![x](javascript:alert(1))", id="js-image"),
    pytest.param("```html\n<script>alert(1)</script>\n```", id="script-in-code-block"),
    pytest.param("</div></article><script>alert(1)</script>", id="break-out"),
]


@pytest.mark.parametrize("output", HOSTILE_OUTPUT)
def test_hostile_model_output_is_inert_in_fragment(client, upstream, output):
    upstream.script("/v1/chat/completions", streamed(output, size=3))

    answer = htmx_generate_code(client, "be hostile")

    assert answer.final, "the stream ended without a final entry"
    html = everything_swapped(answer)
    assert "<script" not in html.lower()
    assert unsafe_markup(html) == []


@pytest.mark.parametrize("output", HOSTILE_OUTPUT)
def test_hostile_model_output_is_inert_on_entry_page(client, upstream, output):
    upstream.script("/v1/chat/completions", Reply(json=chat_completion(output)))
    permalink = client.post("/generate_code", data={"prompt": "be hostile"}).get_json()["entry"]

    page = client.get(permalink, headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert unsafe_markup(body_of(page)) == []


def test_hostile_model_output_text_stays_readable(client, upstream):
    upstream.script("/v1/chat/completions", streamed("<script>alert(1)</script>"))

    doc = parse(htmx_generate_code(client, "show me").final)

    assert "alert(1)" in article(doc).text


HOSTILE_PROMPT = '<script>alert("p")</script><img src=x onerror=alert(2)>'


def test_hostile_prompt_is_escaped_in_fragment(client):
    answer = htmx_generate_code(client, HOSTILE_PROMPT)
    html = everything_swapped(answer)

    assert "<script" not in html.lower()
    assert unsafe_markup(html) == []
    assert HOSTILE_PROMPT in article(parse(body_of(answer.post))).text
    assert HOSTILE_PROMPT in article(parse(answer.final)).text


def test_hostile_prompt_is_escaped_in_error_fragment(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("boom")))

    answer = htmx_generate_code(client, HOSTILE_PROMPT)

    assert "status-failed" in answer.final
    html = everything_swapped(answer)
    assert "<script" not in html.lower()
    assert unsafe_markup(html) == []


@pytest.mark.parametrize("page", ["entry", "/", "/chatlog"])
def test_hostile_prompt_is_escaped_on_pages(client, page):
    permalink = client.post("/generate_code", data={"prompt": HOSTILE_PROMPT}).get_json()["entry"]

    html = body_of(client.get(permalink if page == "entry" else page, headers={"Accept": "text/html"}))

    assert unsafe_markup(html) == []
    assert 'alert("p")' in parse(html).text


# -- errors with HX-Request ------------------------------------------------------------------
# The seed's 400/500 status codes are for JSON clients. For htmx the app answers errors as a
# swapped fragment (see app.views.generate: 200 so the browser logs no failed request); what matters
# to the user is the visible alert, the kept prompt, and no success signal (which would clear the
# prompt box). A code request streams: the POST answers with the pending entry, the outcome
# arrives as the stream's `final` entry, and static/js/app.js clears the prompt box only when that
# entry is `status-done` (or on `HX-Trigger: generated`, which image answers still send).


def is_success_signal(response) -> bool:
    return "generated" in (response.headers.get("HX-Trigger") or "")


def streamed_success_signal(answer: StreamedAnswer) -> bool:
    """What makes the page clear the prompt box after a streamed code answer."""
    classes = (article(parse(answer.final)).attrs.get("class") or "").split()
    return is_success_signal(answer.post) or "status-done" in classes


@pytest.mark.parametrize("prompt", ["", "   "])
def test_htmx_empty_prompt_is_alert_fragment(client, prompt):
    response = client.post("/generate_code", data={"prompt": prompt}, headers=HX)

    assert response.mimetype == "text/html"
    html = body_of(response)
    assert "<html" not in html.lower()
    alerts = parse(html).find_all(role="alert")
    assert len(alerts) == 1
    assert alerts[0].text.strip()


def test_htmx_empty_prompt_does_not_signal_success(client):
    response = client.post("/generate_code", data={"prompt": ""}, headers=HX)

    assert response.status_code == 200  # an htmx error is a swapped fragment
    assert response.headers["X-Error-Status"] == "400"
    assert parse(body_of(response)).find_all(role="alert")
    assert not is_success_signal(response)
    assert "sse-connect" not in body_of(response)


def test_htmx_code_success_signals_done(client):
    answer = htmx_generate_code(client, "fine")

    assert streamed_success_signal(answer)


def test_htmx_code_request_does_not_signal_success_before_the_answer(client):
    response = client.post("/generate_code", data={"prompt": "fine"}, headers=HX)

    assert response.status_code == 200
    assert "sse-connect" in body_of(response)  # the answer is still to come, over the stream
    assert not is_success_signal(response)


def test_htmx_image_success_signals_generated(client):
    response = client.post("/generate_image", data={"prompt": "fine"}, headers=HX)

    assert is_success_signal(response)


def test_htmx_upstream_500_is_fragment_with_failed_entry(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("upstream exploded")))

    answer = htmx_generate_code(client, "doomed prompt")

    assert answer.post.mimetype == "text/html"
    entry = article(parse(answer.final))
    assert "doomed prompt" in entry.text
    alerts = entry.find_all(role="alert")
    assert len(alerts) == 1
    assert alerts[0].text.strip()


def test_htmx_upstream_500_does_not_signal_success(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("upstream exploded")))

    answer = htmx_generate_code(client, "doomed prompt")

    assert answer.final, "the stream ended without a final entry"
    assert not streamed_success_signal(answer)


def test_htmx_upstream_500_fragment_does_not_show_raw_upstream_text(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("RAW-UPSTREAM-DETAIL")))

    answer = htmx_generate_code(client, "doomed")

    assert "status-failed" in answer.final
    assert "RAW-UPSTREAM-DETAIL" not in everything_swapped(answer)


def test_htmx_upstream_500_lists_failed_entry_in_oob_history(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("upstream exploded")))

    answer = htmx_generate_code(client, "doomed prompt")

    assert "status-failed" in answer.final
    doc = parse(body_of(answer.post))
    permalink = permalink_of(doc)
    history = oob_history(doc)
    assert history.attrs.get("hx-swap-oob") == "true"
    links = [a for a in history.find_all("a") if a.attrs.get("href") == permalink]
    assert len(links) == 1
    assert "doomed prompt" in links[0].text
    assert permalink_of(parse(answer.final)) == permalink


def test_htmx_upstream_image_failure_is_fragment_with_alert_and_no_image(client, upstream):
    upstream.script("/v1/images/generations", Reply(status=500, json=error_body("image exploded")))

    response = client.post("/generate_image", data={"prompt": "doomed picture"}, headers=HX)

    entry = article(parse(body_of(response)))
    assert "doomed picture" in entry.text
    assert entry.find_all(role="alert")
    assert entry.find_all("img") == []


# -- GET /chatlog and entries: fragment or page ----------------------------------------------


def test_htmx_chatlog_is_a_fragment(client):
    client.post("/generate_code", data={"prompt": "in the list"})

    response = client.get("/chatlog", headers=HX)

    html = body_of(response)
    assert response.status_code == 200
    assert "<html" not in html.lower()
    assert "in the list" in parse(html).text


def test_chatlog_without_htmx_is_a_full_page(client):
    client.post("/generate_code", data={"prompt": "in the list"})

    html = body_of(client.get("/chatlog", headers={"Accept": "text/html"}))

    assert is_full_page(html)
    assert "in the list" in parse(html).text


def test_chatlog_page_links_every_entry_under_its_date(client):
    first = client.post("/generate_code", data={"prompt": "first"}).get_json()["entry"]
    second = client.post("/generate_image", data={"prompt": "second"}).get_json()["entry"]

    doc = parse(body_of(client.get("/chatlog", headers={"Accept": "text/html"})))

    hrefs = {a.attrs.get("href") for a in doc.find_all("a")}
    assert {first, second} <= hrefs
    date = first.split("/")[2]
    # The heading shows the date in the reader's locale; its <time> carries the ISO date.
    headings = doc.find_all("h2") + doc.find_all("h3")
    assert any(t.attrs.get("datetime") == date for h in headings for t in h.find_all("time"))


def test_htmx_entry_is_a_fragment(client):
    permalink = client.post("/generate_code", data={"prompt": "one entry"}).get_json()["entry"]

    html = body_of(client.get(permalink, headers=HX))

    assert "<html" not in html.lower()
    assert "one entry" in article(parse(html)).text


def test_entry_without_htmx_is_a_full_page(client):
    permalink = client.post("/generate_code", data={"prompt": "one entry"}).get_json()["entry"]

    html = body_of(client.get(permalink, headers={"Accept": "text/html"}))

    assert is_full_page(html)
    assert "one entry" in article(parse(html)).text


def test_htmx_unknown_entry_is_404_alert_fragment(client):
    response = client.get("/chatlog/1999-01-01/0", headers=HX)

    # 404 itself, or (so the browser logs no failed request) 200 naming the status in a header
    assert 404 in (response.status_code, int(response.headers.get("X-Error-Status", 0)))
    html = body_of(response)
    assert "<html" not in html.lower()
    assert parse(html).find_all(role="alert")


# -- GET /: the UI contract ------------------------------------------------------------------


@pytest.fixture
def index_doc(client) -> Node:
    response = client.get("/")
    assert response.status_code == 200
    assert is_full_page(body_of(response))
    return parse(body_of(response))


def accessible_name(doc: Node, node: Node) -> str:
    if node.attrs.get("aria-label"):
        return node.attrs["aria-label"].strip()
    if node.attrs.get("aria-labelledby"):
        parts = [doc.by_id(i) for i in node.attrs["aria-labelledby"].split()]
        return " ".join(p.text.strip() for p in parts if p is not None)
    if node.attrs.get("id"):
        labels = [lab for lab in doc.find_all("label") if lab.attrs.get("for") == node.attrs["id"]]
        if labels:
            return labels[0].text.strip()
    wrapping = [a for a in node.ancestors() if a.tag == "label"]
    if wrapping:
        return wrapping[0].text.strip()
    if node.tag == "button":
        return " ".join(node.text.split())
    return ""


def test_index_has_prompt_textbox(index_doc):
    textboxes = [
        n
        for n in index_doc.iter()
        if n.tag == "textarea"
        or (n.tag == "input" and n.attrs.get("type", "text") in ("text", "email", "url", "tel"))
    ]
    named = [b for b in textboxes if accessible_name(index_doc, b) == "Prompt"]
    assert len(named) == 1
    assert named[0].attrs.get("name") == "prompt"


@pytest.mark.parametrize("name", ["Generate code", "Generate image"])
def test_index_has_generate_button(index_doc, name):
    buttons = [b for b in index_doc.find_all("button") if accessible_name(index_doc, b) == name]

    assert len(buttons) == 1


def test_index_has_exactly_one_polite_results_region(index_doc):
    regions = [n for n in index_doc.iter() if n.attrs.get("aria-label") == "Results"]

    assert len(regions) == 1
    assert regions[0].attrs.get("aria-live") == "polite"


LANDMARK_TAGS = {"main", "nav", "aside", "header", "footer", "section", "form"}
LANDMARK_ROLES = {"main", "navigation", "complementary", "banner", "contentinfo", "region", "form", "search"}


def test_index_has_exactly_one_history_landmark(index_doc):
    landmarks = [
        n
        for n in index_doc.iter()
        if (n.tag in LANDMARK_TAGS or n.attrs.get("role") in LANDMARK_ROLES)
        and accessible_name(index_doc, n) == "History"
    ]

    assert len(landmarks) == 1


def test_index_history_lists_existing_entries(client):
    permalink = client.post("/generate_code", data={"prompt": "listed on the page"}).get_json()["entry"]

    doc = parse(body_of(client.get("/")))

    history = doc.by_id("history-days")
    assert history is not None
    assert [a.text.strip() for a in history.find_all("a") if a.attrs.get("href") == permalink]


def test_demo_mode_page_says_so(demo_client):
    html = body_of(demo_client.get("/"))

    assert "Demo mode — set OPENAI_API_KEY" in " ".join(parse(html).text.split())


def test_key_configured_page_has_no_demo_banner(client):
    response = client.get("/")
    html = body_of(response)

    assert response.status_code == 200
    assert parse(html).by_id("prompt") is not None  # the real index page
    assert "Demo mode" not in html


def test_index_page_does_not_render_the_key(client):
    response = client.get("/")

    assert response.status_code == 200
    assert parse(body_of(response)).by_id("prompt") is not None  # the real index page
    assert TEST_KEY not in body_of(response)


# -- security headers ------------------------------------------------------------------------


def _page(client, upstream):
    return client.get("/")


def _fragment(client, upstream):
    return client.post("/generate_code", data={"prompt": "x"}, headers=HX)


def _json(client, upstream):
    return client.post("/generate_code", data={"prompt": "x"})


def _json_400(client, upstream):
    return client.post("/generate_code", data={"prompt": ""})


def _fragment_400(client, upstream):
    return client.post("/generate_code", data={"prompt": ""}, headers=HX)


def _page_404(client, upstream):
    return client.get("/chatlog/1999-01-01/0", headers={"Accept": "text/html"})


def _json_404(client, upstream):
    return client.get("/chatlog/1999-01-01/0", headers={"Accept": "application/json"})


def _json_500(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("x")))
    return client.post("/generate_code", data={"prompt": "x"})


def _stream(client, upstream):
    """The event stream an htmx code request connects to (read to its end)."""
    post = client.post("/generate_code", data={"prompt": "x"}, headers=HX)
    url = re.search(r'sse-connect="([^"]+)"', body_of(post)).group(1)
    response = client.get(url, headers={"Accept": "text/event-stream"})
    response.get_data()
    return response


def _stream_500(client, upstream):
    upstream.script("/v1/chat/completions", Reply(status=500, json=error_body("x")))
    response = _stream(client, upstream)
    assert "status-failed" in body_of(response)
    return response


def _image(client, upstream):
    return client.get(client.post("/generate_image", data={"prompt": "x"}).get_json()["image_url"])


def _method_not_allowed(client, upstream):
    return client.get("/generate_code")


RESPONSES = [
    pytest.param(f, id=f.__name__.strip("_"))
    for f in (
        _page,
        _fragment,
        _json,
        _json_400,
        _fragment_400,
        _page_404,
        _json_404,
        _json_500,
        _stream,
        _stream_500,
        _image,
        _method_not_allowed,
    )
]


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


@pytest.mark.parametrize("make_response", RESPONSES)
def test_responses_carry_a_strict_csp(client, upstream, make_response):
    response = make_response(client, upstream)

    csp = response.headers.get("Content-Security-Policy")
    assert csp, "no Content-Security-Policy header"
    directives = csp_directives(csp)
    script_src = directives.get("script-src", directives.get("default-src"))
    assert script_src, csp
    assert "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src
    assert "*" not in script_src


@pytest.mark.parametrize("make_response", RESPONSES)
def test_responses_carry_nosniff(client, upstream, make_response):
    response = make_response(client, upstream)

    assert response.headers.get("X-Content-Type-Options") == "nosniff"


def test_csp_is_a_header_not_a_meta_tag(client):
    response = client.get("/")
    metas = parse(body_of(response)).find_all("meta")

    assert response.status_code == 200
    assert response.headers.get("Content-Security-Policy")
    assert metas  # the page's own meta tags (charset, viewport...) are there
    assert not [m for m in metas if (m.attrs.get("http-equiv") or "").lower() == "content-security-policy"]


@pytest.mark.parametrize("make_response", [_page, _fragment, _stream, _stream_500])
def test_html_has_no_inline_script_or_style(client, upstream, make_response):
    response = make_response(client, upstream)
    doc = parse(body_of(response))

    assert response.status_code == 200
    assert doc.find_all("textarea" if make_response is _page else "article")  # the prompt box; the entry
    inline_scripts = [n for n in doc.find_all("script") if not n.attrs.get("src")]
    styled = [n.tag for n in doc.iter() if "style" in n.attrs]
    assert inline_scripts == []
    assert styled == []
