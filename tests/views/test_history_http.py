"""The history over HTTP: delete, search, lazy loading, exports, upload import, damaged files, retry.

Everything goes through Flask's test client against a real DATA_DIR. Entries with chosen answers
are written with a second ChatLog on the same DATA_DIR (as another worker process would); the
app's store sees them because every write replaces its day file.
"""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from app.history import ChatLog

from ..support.apps import BACKENDS, TEST_KEY
from ..support.html import Node, parse
from ..support.htmx import HX
from ..support.upstream import Reply, error_body

SAMPLE = Path(__file__).parents[1] / "data" / "chatlog.sample.json"
PERMALINK_RE = re.compile(r"/chatlog/(\d{4}-\d{2}-\d{2})/(\d+)")
HREF_RE = re.compile(r'href="(/chatlog/\d{4}-\d{2}-\d{2}/\d+)"')
JSON = {"Accept": "application/json"}
OTHER_DAY = "2024-05-01"


# -- helpers -------------------------------------------------------------------------------------


def text_of(response) -> str:
    return response.get_data(as_text=True)


def history_aside(html: str) -> Node:
    asides = [a for a in parse(html).find_all("aside") if a.attrs.get("id") == "history"]
    assert len(asides) == 1
    return asides[0]


def entry_links(node: Node) -> list[str]:
    """Permalinks linked from `node`, in document order (a search hit's `?hl=…#match` left out)."""
    hrefs = [a.attrs.get("href", "").partition("?")[0] for a in node.find_all("a")]
    return [href for href in hrefs if PERMALINK_RE.fullmatch(href)]


def load_more_buttons(node: Node) -> list[Node]:
    return [b for b in node.find_all("button") if b.has_class("load-more")]


def generate(client, prompt: str, kind: str = "code") -> dict:
    response = client.post(f"/generate_{kind}", data={"prompt": prompt})
    assert response.status_code == 200, text_of(response)
    return response.get_json()


def date_of(permalink: str) -> str:
    match = PERMALINK_RE.fullmatch(permalink)
    assert match
    return match.group(1)


def store(data_dir: Path, date: str, prompt: str, response: str) -> str:
    """Write a finished code entry on `date` with a chosen answer; returns its permalink."""
    noon = datetime.fromisoformat(f"{date}T12:00:00").astimezone()
    chatlog = ChatLog(data_dir, clock=lambda: noon)
    entry = chatlog.begin("code", prompt, "test-model")
    return chatlog.finish(entry, response).permalink


def image_file_of(data_dir: Path, image_url: str) -> Path:
    assert image_url.startswith("/images/")
    return data_dir / "images" / image_url.removeprefix("/images/")


# -- DELETE /chatlog/<date>/<index> ----------------------------------------------------------------


def test_delete_entry_answers_json_with_the_deleted_permalink(demo_client):
    permalink = generate(demo_client, "delete me")["entry"]

    response = demo_client.delete(permalink)

    assert response.status_code == 200
    assert response.get_json() == {"deleted": [permalink]}


def test_deleted_entry_answers_410_json_error_for_api_clients(demo_client):
    permalink = generate(demo_client, "delete me")["entry"]
    demo_client.delete(permalink)

    response = demo_client.get(permalink, headers=JSON)

    assert response.status_code == 410
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]


def test_deleted_entry_answers_410_html_page_for_browsers(demo_client):
    permalink = generate(demo_client, "delete me")["entry"]
    demo_client.delete(permalink)

    response = demo_client.get(permalink)

    assert response.status_code == 410
    assert response.mimetype == "text/html"
    assert "<html" in text_of(response)
    assert "delete me" not in text_of(response)


def test_deleting_the_middle_entry_keeps_the_other_permalinks(demo_client):
    links = [generate(demo_client, f"entry number {n}")["entry"] for n in range(3)]

    demo_client.delete(links[1])

    first = demo_client.get(links[0], headers=JSON)
    last = demo_client.get(links[2], headers=JSON)
    assert (first.status_code, first.get_json()["prompt"]) == (200, "entry number 0")
    assert (last.status_code, last.get_json()["prompt"]) == (200, "entry number 2")


def test_deleting_an_entry_twice_answers_410(demo_client):
    permalink = generate(demo_client, "delete me")["entry"]
    demo_client.delete(permalink)

    response = demo_client.delete(permalink)

    assert response.status_code == 410
    assert response.get_json()["error"]


@pytest.mark.parametrize("path", ["/chatlog/{date}/99", "/chatlog/2001-01-01/0"])
def test_deleting_an_unknown_entry_answers_404(demo_client, path):
    date = date_of(generate(demo_client, "existing entry")["entry"])

    response = demo_client.delete(path.format(date=date))

    assert response.status_code == 404
    assert response.get_json()["error"]


def test_deleting_an_image_entry_removes_its_file(demo_client, data_dir):
    answer = generate(demo_client, "a red square", kind="image")
    image = image_file_of(data_dir, answer["image_url"])
    assert image.is_file()

    demo_client.delete(answer["entry"])

    assert not image.exists()


def test_htmx_delete_answers_a_status_notice(demo_client):
    permalink = generate(demo_client, "delete me")["entry"]

    response = demo_client.delete(permalink, headers=HX)

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    notices = parse(text_of(response)).find_all(role="status")
    assert len(notices) == 1
    assert notices[0].text.strip()


def test_htmx_delete_triggers_history_changed(demo_client):
    permalink = generate(demo_client, "delete me")["entry"]

    response = demo_client.delete(permalink, headers=HX)

    assert response.headers.get("HX-Trigger") == "history-changed"


def test_htmx_delete_of_an_unknown_entry_is_an_alert_fragment_with_status_404(demo_client):
    response = demo_client.delete("/chatlog/2001-01-01/0", headers=HX)

    assert response.status_code == 200
    assert response.headers.get("X-Error-Status") == "404"
    assert "HX-Trigger" not in response.headers
    alerts = parse(text_of(response)).find_all(role="alert")
    assert len(alerts) == 1
    assert alerts[0].text.strip()


# -- DELETE /chatlog/<date> ----------------------------------------------------------------------


@pytest.fixture
def two_days(demo_client, data_dir):
    """Today: a code and an image entry made over HTTP; OTHER_DAY: two stored entries."""
    code = generate(demo_client, "today's code")
    image = generate(demo_client, "today's picture", kind="image")
    others = [store(data_dir, OTHER_DAY, f"older prompt {n}", f"older answer {n}") for n in range(2)]
    return {
        "today": date_of(code["entry"]),
        "today_links": [code["entry"], image["entry"]],
        "image": image_file_of(data_dir, image["image_url"]),
        "other_links": others,
    }


def test_delete_day_answers_every_deleted_permalink(demo_client, two_days):
    response = demo_client.delete(f"/chatlog/{two_days['today']}")

    assert response.status_code == 200
    assert sorted(response.get_json()["deleted"]) == sorted(two_days["today_links"])


def test_delete_day_makes_every_entry_of_the_day_gone(demo_client, two_days):
    demo_client.delete(f"/chatlog/{two_days['today']}")

    assert [demo_client.get(link, headers=JSON).status_code for link in two_days["today_links"]] == [410, 410]


def test_delete_day_removes_the_days_images(demo_client, two_days):
    assert two_days["image"].is_file()

    demo_client.delete(f"/chatlog/{two_days['today']}")

    assert not two_days["image"].exists()


def test_delete_day_leaves_other_days_untouched(demo_client, two_days):
    demo_client.delete(f"/chatlog/{two_days['today']}")

    prompts = [
        demo_client.get(link, headers=JSON).get_json().get("prompt") for link in two_days["other_links"]
    ]
    assert prompts == ["older prompt 0", "older prompt 1"]
    assert demo_client.get("/chatlog.json").get_json() == {
        OTHER_DAY: [
            {"prompt": "older prompt 0", "response": "older answer 0"},
            {"prompt": "older prompt 1", "response": "older answer 1"},
        ]
    }


@pytest.mark.parametrize("date", ["2001-01-01", "not-a-date"])
def test_delete_of_an_unknown_day_answers_404(demo_client, two_days, date):
    response = demo_client.delete(f"/chatlog/{date}")

    assert response.status_code == 404
    assert response.get_json()["error"]


# -- a deleted entry's content is gone everywhere ------------------------------------------------

SECRET_PROMPT = "confidential prompt kiwi-7731"
SECRET_ANSWER = "confidential answer mango-4410"


@pytest.fixture
def deleted_secret(demo_client, data_dir):
    """A kept entry and a deleted one on the same day; returns the deleted one's permalink."""
    store(data_dir, OTHER_DAY, "kept prompt", "kept answer")
    permalink = store(data_dir, OTHER_DAY, SECRET_PROMPT, SECRET_ANSWER)
    assert demo_client.delete(permalink).status_code == 200
    return permalink


def test_deleted_entry_content_is_gone_from_the_day_file(deleted_secret, data_dir):
    text = (data_dir / "history" / f"{OTHER_DAY}.json").read_text(encoding="utf-8")

    assert "kept prompt" in text
    assert SECRET_PROMPT not in text
    assert SECRET_ANSWER not in text


def test_deleted_entry_content_is_gone_from_every_file_in_data_dir(deleted_secret, data_dir):
    leaks = [
        str(path.relative_to(data_dir))
        for path in data_dir.rglob("*")
        if path.is_file()
        and (SECRET_PROMPT.encode() in path.read_bytes() or SECRET_ANSWER.encode() in path.read_bytes())
    ]

    assert leaks == []


@pytest.mark.parametrize("path", ["/chatlog.json", "/chatlog.full.json", "/chatlog.md"])
def test_deleted_entry_content_is_gone_from_exports(demo_client, deleted_secret, path):
    body = text_of(demo_client.get(path))

    assert "kept prompt" in body
    assert SECRET_PROMPT not in body
    assert SECRET_ANSWER not in body


@pytest.mark.parametrize("term", ["kiwi-7731", "mango-4410"])
def test_deleted_entry_is_not_found_by_search(demo_client, deleted_secret, term):
    body = text_of(demo_client.get("/chatlog", query_string={"q": term}, headers=HX))

    assert "0 entries match" in body
    assert deleted_secret not in body


# -- search ---------------------------------------------------------------------------------------


@pytest.fixture
def searchable(data_dir):
    """Four entries on one day: permalinks by a short name."""
    return {
        "fox": store(data_dir, OTHER_DAY, "the quick brown fox jumps", "a sentence with every letter"),
        "answer": store(data_dir, OTHER_DAY, "write a sorting function", "use a heap for the zebra case"),
        "script": store(
            data_dir,
            OTHER_DAY,
            "<img src=x onerror=alert(1)> <script>alert(1)</script>",
            "a <b>bold</b> <script> tag",
        ),
        "other": store(data_dir, OTHER_DAY, "nothing relevant here", "nor here"),
    }


def search_fragment(client, term: str) -> str:
    response = client.get("/chatlog", query_string={"q": term}, headers=HX)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    return text_of(response)


def test_search_finds_a_match_in_the_prompt(demo_client, searchable):
    links = entry_links(parse(search_fragment(demo_client, "brown fox")))

    assert links == [searchable["fox"]]


def test_search_finds_a_match_only_in_the_answer(demo_client, searchable):
    links = entry_links(parse(search_fragment(demo_client, "zebra")))

    assert links == [searchable["answer"]]


def test_search_is_case_insensitive(demo_client, searchable):
    links = entry_links(parse(search_fragment(demo_client, "FOX")))

    assert links == [searchable["fox"]]


def test_search_lists_only_matching_entries(demo_client, searchable):
    links = entry_links(parse(search_fragment(demo_client, "here")))

    assert links == [searchable["other"]]


def test_search_fragment_is_not_a_full_page(demo_client, searchable):
    html = search_fragment(demo_client, "fox")

    assert entry_links(parse(html)) == [searchable["fox"]]
    assert "<html" not in html
    assert "<aside" not in html


def test_search_wraps_matches_in_mark(demo_client, searchable):
    doc = parse(search_fragment(demo_client, "FOX"))

    marks = [m.text for m in doc.find_all("mark")]
    assert marks
    assert all(m.lower() == "fox" for m in marks)


def test_search_escapes_the_query_and_the_entries(demo_client, searchable):
    html = search_fragment(demo_client, "<script>")

    assert entry_links(parse(html)) == [searchable["script"]]
    assert "<script" not in html.lower()
    assert "</script" not in html.lower()
    assert "<img" not in html.lower()
    assert "<b>" not in html.lower()
    assert "<mark>&lt;script&gt;</mark>" in html


def test_search_without_htmx_is_a_full_page_with_the_query_filled_in(demo_client, searchable):
    response = demo_client.get("/chatlog", query_string={"q": "fox"})

    assert response.status_code == 200
    doc = parse(text_of(response))
    boxes = [i for i in doc.find_all("input") if i.attrs.get("name") == "q"]
    assert [b.attrs.get("value") for b in boxes] == ["fox"]
    assert doc.find_all("html")
    assert searchable["fox"] in entry_links(doc)
    assert searchable["other"] not in entry_links(doc)


def test_empty_search_is_the_normal_history_page(demo_client, searchable):
    response = demo_client.get("/chatlog", query_string={"q": ""})

    assert response.status_code == 200
    html = text_of(response)
    assert "entries match" not in html
    assert set(searchable.values()) <= set(entry_links(parse(html)))


def test_search_without_matches_says_0_entries_match(demo_client, searchable):
    html = search_fragment(demo_client, "no-such-term-anywhere")

    assert "0 entries match" in html
    assert entry_links(parse(html)) == []


# -- lazy history ---------------------------------------------------------------------------------


@pytest.fixture
def lazy_client(make_app, data_dir):
    """A demo app showing 3 history entries per page, with 7 entries on three days."""
    for date, count in (("2024-05-01", 3), ("2024-05-02", 2), ("2024-05-03", 2)):
        for n in range(count):
            store(data_dir, date, f"prompt {date} {n}", f"answer {n}")
    return make_app(history_sidebar_limit=3).test_client()


NEWEST_FIRST = [
    "/chatlog/2024-05-03/1",
    "/chatlog/2024-05-03/0",
    "/chatlog/2024-05-02/1",
    "/chatlog/2024-05-02/0",
    "/chatlog/2024-05-01/2",
    "/chatlog/2024-05-01/1",
    "/chatlog/2024-05-01/0",
]


def cursor_of(button: Node) -> str:
    url = urlsplit(button.attrs["hx-get"])
    assert url.path == "/chatlog"
    return parse_qs(url.query)["before"][0]


def test_index_history_shows_exactly_the_newest_page(lazy_client):
    aside = history_aside(text_of(lazy_client.get("/")))

    assert entry_links(aside) == NEWEST_FIRST[:3]


def test_index_history_has_a_load_older_button_after_the_last_shown_entry(lazy_client):
    aside = history_aside(text_of(lazy_client.get("/")))

    buttons = load_more_buttons(aside)
    assert len(buttons) == 1
    assert "Load older entries" in buttons[0].text
    assert cursor_of(buttons[0]) == "2024-05-02/1"


def test_load_older_returns_the_next_older_page_and_another_button(lazy_client):
    button = load_more_buttons(history_aside(text_of(lazy_client.get("/"))))[0]

    response = lazy_client.get(button.attrs["hx-get"], headers=HX)

    assert response.status_code == 200
    doc = parse(text_of(response))
    assert entry_links(doc) == NEWEST_FIRST[3:6]
    assert [cursor_of(b) for b in load_more_buttons(doc)] == ["2024-05-01/1"]


def test_last_history_page_has_no_load_older_button(lazy_client):
    response = lazy_client.get("/chatlog", query_string={"before": "2024-05-01/1"}, headers=HX)

    doc = parse(text_of(response))
    assert entry_links(doc) == NEWEST_FIRST[6:]
    assert load_more_buttons(doc) == []


def test_history_pages_together_list_every_entry_exactly_once(lazy_client):
    aside = history_aside(text_of(lazy_client.get("/")))
    seen = entry_links(aside)
    buttons = load_more_buttons(aside)
    for _ in range(10):  # bounded: 7 entries need 2 more pages
        if not buttons:
            break
        doc = parse(text_of(lazy_client.get(buttons[0].attrs["hx-get"], headers=HX)))
        seen += entry_links(doc)
        buttons = load_more_buttons(doc)

    assert buttons == []
    assert seen == NEWEST_FIRST


# -- exports --------------------------------------------------------------------------------------

SEED = json.loads(SAMPLE.read_text(encoding="utf-8"))


@pytest.fixture
def imported_client(demo_client):
    response = demo_client.post("/chatlog/import", data={"file": (SAMPLE.open("rb"), "chatlog.json")})
    assert response.get_json() == {"imported": 7, "skipped": 0}
    return demo_client


def test_markdown_export_is_text_markdown(imported_client):
    response = imported_client.get("/chatlog.md")

    assert response.status_code == 200
    assert response.mimetype == "text/markdown"


def test_markdown_export_contains_every_prompt(imported_client):
    body = text_of(imported_client.get("/chatlog.md"))

    missing = [row["prompt"] for rows in SEED.values() for row in rows if row["prompt"] not in body]
    assert missing == []


def test_markdown_export_has_one_heading_per_date(imported_client):
    body = text_of(imported_client.get("/chatlog.md"))

    headings = re.findall(r"^## (.+)$", body, flags=re.MULTILINE)
    assert headings == sorted(SEED)


def test_markdown_export_contains_the_code_answers(imported_client):
    body = text_of(imported_client.get("/chatlog.md"))

    code_answers = [row["response"] for rows in SEED.values() for row in rows if "```" in row["response"]]
    assert len(code_answers) == 4
    assert [answer for answer in code_answers if answer not in body] == []


def test_full_json_export_lists_every_entry_with_all_fields(imported_client):
    entries = imported_client.get("/chatlog.full.json").get_json()

    assert isinstance(entries, list)
    assert len(entries) == 7
    required = {"id", "date", "index", "kind", "status", "model", "created_at", "prompt", "response"}
    assert [sorted(required - set(e)) for e in entries if not required <= set(e)] == []
    assert {(e["date"], e["index"]) for e in entries} == {
        (date, n) for date, rows in SEED.items() for n in range(len(rows))
    }


def test_full_json_export_is_an_attachment(imported_client):
    response = imported_client.get("/chatlog.full.json")

    assert response.headers.get("Content-Disposition", "").startswith("attachment")


def test_chatlog_json_export_stays_in_the_seed_format(demo_client):
    code = generate(demo_client, "format check code")
    image = generate(demo_client, "format check image", kind="image")

    exported = demo_client.get("/chatlog.json").get_json()

    assert exported == {
        date_of(code["entry"]): [
            {"prompt": "format check code", "response": code["code"]},
            {"prompt": "format check image", "response": image["image_url"]},
        ]
    }


# -- import upload --------------------------------------------------------------------------------


def upload(client, content: bytes | None, headers: dict | None = None, name: str = "chatlog.json"):
    data = {} if content is None else {"file": (io.BytesIO(content), name)}
    return client.post("/chatlog/import", data=data, headers=headers or {})


def test_import_upload_imports_the_sample(demo_client):
    response = upload(demo_client, SAMPLE.read_bytes())

    assert response.status_code == 200
    assert response.get_json() == {"imported": 7, "skipped": 0}
    assert demo_client.get("/chatlog.json").get_json() == SEED


def test_import_upload_twice_skips_every_entry_the_second_time(demo_client):
    upload(demo_client, SAMPLE.read_bytes())

    response = upload(demo_client, SAMPLE.read_bytes())

    assert response.get_json() == {"imported": 0, "skipped": 7}
    assert len(demo_client.get("/chatlog.full.json").get_json()) == 7


def test_htmx_import_answers_a_status_notice(demo_client):
    response = upload(demo_client, SAMPLE.read_bytes(), headers=HX)

    assert response.status_code == 200
    notices = parse(text_of(response)).find_all(role="status")
    assert len(notices) == 1
    assert "7" in notices[0].text


def test_htmx_import_triggers_history_changed(demo_client):
    response = upload(demo_client, SAMPLE.read_bytes(), headers=HX)

    assert response.headers.get("HX-Trigger") == "history-changed"


@pytest.mark.parametrize("content", [b"this is not json", b"\xff\xfe\x00garbage", b"[1, 2, 3]"])
def test_import_of_a_non_json_upload_answers_400_with_an_error(demo_client, content):
    response = upload(demo_client, content)

    assert response.status_code == 400
    assert response.get_json()["error"]


def test_import_of_a_non_json_upload_imports_nothing(demo_client):
    response = upload(demo_client, b'{"2024-08-30": [{"prompt": "half a file", "resp')

    assert response.status_code == 400
    assert response.get_json()["error"]
    assert demo_client.get("/chatlog.json").get_json() == {}


def test_import_without_a_file_answers_400(demo_client):
    response = upload(demo_client, None)

    assert response.status_code == 400
    assert response.get_json()["error"]


# -- a damaged day file ---------------------------------------------------------------------------


@pytest.fixture
def damaged_today(demo_client, data_dir):
    """An entry today (then its day file overwritten with garbage) and one on OTHER_DAY."""
    today = date_of(generate(demo_client, "lost to corruption")["entry"])
    store(data_dir, OTHER_DAY, "safe older prompt", "safe older answer")
    (data_dir / "history" / f"{today}.json").write_bytes(b"\x00\xff garbage {{{ not json")
    return today


def test_damaged_day_file_still_serves_the_index_page(demo_client, damaged_today):
    response = demo_client.get("/")

    assert response.status_code == 200


def test_damaged_day_file_is_named_in_an_alert_banner(demo_client, damaged_today, data_dir):
    doc = parse(text_of(demo_client.get("/")))

    moved = [p.name for p in (data_dir / "history").iterdir() if ".json.corrupt-" in p.name]
    assert len(moved) == 1
    assert moved[0].startswith(f"{damaged_today}.json")
    assert [a for a in doc.find_all(role="alert") if moved[0] in a.text]


def test_damaged_day_file_keeps_other_days_listed(demo_client, damaged_today):
    aside = history_aside(text_of(demo_client.get("/")))

    assert f"/chatlog/{OTHER_DAY}/0" in entry_links(aside)


def test_generation_after_a_damaged_day_file_succeeds(demo_client, damaged_today):
    demo_client.get("/")

    response = demo_client.post("/generate_code", data={"prompt": "after the damage"})

    assert response.status_code == 200
    permalink = response.get_json()["entry"]
    assert demo_client.get(permalink, headers=JSON).get_json()["prompt"] == "after the damage"


def test_generation_after_a_destroyed_day_file_does_not_reuse_the_lost_permalink(demo_client, data_dir):
    lost = generate(demo_client, "lost with its day file")["entry"]
    (data_dir / "history" / f"{date_of(lost)}.json").write_bytes(b"\x00\xff garbage {{{ not json")
    demo_client.get("/")

    permalink = generate(demo_client, "written after the damage")["entry"]

    # The lost entry's bookmarked link must not silently open a different entry now.
    assert permalink != lost


def test_generation_after_a_torn_day_file_does_not_reuse_its_permalinks(demo_client, data_dir):
    links = [generate(demo_client, f"before the tear {n}")["entry"] for n in range(2)]
    # Fold the journal first, so the entries are in the day file alone when it is torn.
    demo_client.application.extensions["chatlog"].checkpoint(date_of(links[0]))
    path = data_dir / "history" / f"{date_of(links[0])}.json"
    path.write_bytes(path.read_bytes() + b"\x00 torn tail")

    permalink = generate(demo_client, "after the tear")["entry"]

    assert permalink not in links
    assert demo_client.get(links[1], headers=JSON).status_code in (404, 410)


# -- failed generation and retry ------------------------------------------------------------------

RETRY_PROMPT = 'sort <b>rows</b> & keep "order" + 100% ü'


@pytest.fixture
def client(make_app, upstream):
    """The app on the local upstream, with a short UPSTREAM_TIMEOUT so retries give up quickly."""
    return make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, upstream_timeout=2.0).test_client()


@pytest.fixture
def failed(client, upstream):
    """A code generation that failed with upstream 500s (enough of them to outlast any retries)."""
    upstream.script("/v1/chat/completions", *[Reply(status=500, json=error_body("x")) for _ in range(5)])
    response = client.post("/generate_code", data={"prompt": RETRY_PROMPT})
    assert response.status_code == 500
    return response.get_json()


def test_failed_entry_page_shows_the_error(client, failed):
    doc = parse(text_of(client.get(failed["entry"])))

    alerts = [a for a in doc.find_all(role="alert") if failed["error"] in a.text]
    assert len(alerts) == 1


def test_failed_entry_page_links_retry_with_the_prompt(client, failed):
    doc = parse(text_of(client.get(failed["entry"])))

    retries = [a for a in doc.find_all("a") if a.text.strip() == "Retry"]
    assert len(retries) == 1
    url = urlsplit(retries[0].attrs["href"])
    assert url.path == "/"
    assert parse_qs(url.query) == {"prompt": [RETRY_PROMPT]}


def test_retry_link_prefills_the_prompt(client, failed):
    doc = parse(text_of(client.get(failed["entry"])))
    retry = next(a for a in doc.find_all("a") if a.text.strip() == "Retry")

    page = parse(text_of(client.get(retry.attrs["href"])))

    boxes = [t for t in page.find_all("textarea") if t.attrs.get("name") == "prompt"]
    assert [t.text for t in boxes] == [RETRY_PROMPT]


def test_prompt_prefill_is_escaped(demo_client):
    hostile = "</textarea><script>alert(1)</script>"

    html = text_of(demo_client.get("/", query_string={"prompt": hostile}))

    assert "<script>alert(1)" not in html
    boxes = [t for t in parse(html).find_all("textarea") if t.attrs.get("name") == "prompt"]
    assert [t.text for t in boxes] == [hostile]


# -- exports stream, on either backend ----------------------------------------------------------


@pytest.mark.parametrize("history_backend", BACKENDS)
@pytest.mark.parametrize("path", ["/chatlog.json", "/chatlog.full.json"])
def test_exports_are_streamed_and_equal_the_whole_history(make_app, path, history_backend):
    app = make_app()
    store = app.extensions["chatlog"]
    seed = {
        f"2024-01-{d:02d}": [{"prompt": f'p{d}.{i} "ü" </script>', "response": f"r{i}"} for i in range(300)]
        for d in range(1, 5)
    }
    store.import_seed(seed)
    store.begin("code", "never answered", "m")
    store.delete("2024-01-02", 0)

    response = app.test_client().get(path)

    assert response.status_code == 200
    assert response.is_streamed
    exported = json.loads(response.get_data(as_text=True))
    assert exported == (store.export_seed() if path == "/chatlog.json" else store.export_full())
    assert len(exported) == (5 if path == "/chatlog.json" else 4 * 300 - 1 + 1)
    assert "never answered" in response.get_data(as_text=True)
    assert "p2.0 " not in response.get_data(as_text=True)  # deleted


@pytest.mark.parametrize("history_backend", BACKENDS)
def test_an_empty_history_exports_empty_json(make_app, history_backend):
    client = make_app().test_client()

    assert client.get("/chatlog.json").get_json() == {}
    assert client.get("/chatlog.full.json").get_json() == []
