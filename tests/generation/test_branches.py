"""Branches: another version of a turn (`replaces`, Edit, Regenerate), the context it sends, its
`siblings`, how History, the entry page and the exports show a conversation with branches.

Through the real openai client against the local upstream (tests/support/upstream.py), so assertions
are on the `messages` it received; every test runs on TinyDB files and a real PostgreSQL.
"""

from __future__ import annotations

import re

import pytest

from app.history import Entry, Permalink
from app.history.branches import branch_path, live_parents, versions

from ..support.apps import BACKENDS
from ..support.conversations import (
    CHAT,
    IMAGES,
    conversation_articles,
    entry_count,
    history_aside,
    history_rows,
    index_of,
    only,
    permalink_of,
    post_code,
    post_image,
    sent_messages,
    stored,
    three_turns,
    turn_messages,
)
from ..support.html import parse
from ..support.htmx import HX, htmx_generate_code
from ..support.upstream import Reply, chat_completion


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the TinyDB files and a real PostgreSQL."""
    return request.param


def versions_nav(html: str, turn_permalink: str):
    """The "‹ n / m ›" navigation of the article whose permalink is `turn_permalink`."""
    article = only([a for a in parse(html).find_all("article") if permalink_of(a) == turn_permalink])
    navs = [n for n in article.find_all("nav") if n.has_class("versions")]
    return navs[0] if navs else None


# -- the new version and what goes upstream --------------------------------------------------


def test_replacing_a_turn_makes_a_sibling_with_its_parent_and_turn_number(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    body = post_code(client, "And how do I sort them in place?", replaces=t2)
    assert body["entry"] not in (t1, t2)
    assert (body["parent"], body["conversation"], body["turn"]) == (t1, t1, 2)
    assert body["siblings"] == [t2, body["entry"]]


def test_upstream_gets_the_turns_before_the_replaced_one_then_the_new_prompt(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    e1 = stored(client, t1)
    post_code(client, "And how do I sort them in place?", replaces=t2)
    # Never the replaced turn (t2) nor what came after it (t3).
    assert sent_messages(upstream) == [
        *turn_messages(e1),
        {"role": "user", "content": "And how do I sort them in place?"},
    ]


def test_replacing_a_later_turn_sends_everything_before_it(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    e1, e2 = stored(client, t1), stored(client, t2)
    body = post_code(client, "Descending, and keep duplicates.", replaces=t3)
    assert sent_messages(upstream) == [
        *turn_messages(e1, e2),
        {"role": "user", "content": "Descending, and keep duplicates."},
    ]
    assert (body["parent"], body["turn"], body["siblings"]) == (t2, 3, [t3, body["entry"]])


def test_replacing_a_first_turn_sends_only_the_new_prompt_and_stays_in_the_conversation(client, upstream):
    t1, _t2, _t3 = three_turns(client, upstream)
    body = post_code(client, "How do I keep several strings?", replaces=t1)
    assert sent_messages(upstream) == [{"role": "user", "content": "How do I keep several strings?"}]
    assert (body["parent"], body["conversation"], body["turn"]) == (None, t1, 1)
    assert body["siblings"] == [t1, body["entry"]]


def test_replaced_turn_and_its_branch_keep_their_permalinks_and_content(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    before = [stored(client, p) for p in (t1, t2, t3)]
    post_code(client, "Something else", replaces=t2)
    after = [stored(client, p) for p in (t1, t2, t3)]
    for old, new in zip(before, after, strict=True):
        assert (new["entry"], new["prompt"], new["response"]) == (
            old["entry"],
            old["prompt"],
            old["response"],
        )
    assert [client.get(p).status_code for p in (t1, t2, t3)] == [200, 200, 200]


def test_replacing_a_version_adds_to_the_same_versions_oldest_first(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    second = post_code(client, "Version two", replaces=t2)["entry"]
    third = post_code(client, "Version three", replaces=second)["entry"]
    expected = [t2, second, third]
    assert [stored(client, p)["siblings"] for p in expected] == [expected] * 3


def test_entry_json_of_a_turn_without_versions_has_no_siblings(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    assert "siblings" not in stored(client, t1)
    assert "siblings" not in post_code(client, "Alone")
    post_code(client, "Other", replaces=t2)
    assert "siblings" not in stored(client, t1)  # the turn above the versions has none itself


def test_replaces_in_a_json_body(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    response = client.post("/generate_code", json={"prompt": "Q1 again", "replaces": t1})
    assert response.status_code == 200
    assert response.get_json()["siblings"] == [t1, response.get_json()["entry"]]


def test_htmx_version_streams_with_the_context_before_the_replaced_turn(client, upstream):
    upstream.script(CHAT, Reply(json=chat_completion("A1")), Reply(json=chat_completion("A2")))
    t1 = post_code(client, "Q1")["entry"]
    t2 = post_code(client, "Q2", parent=t1)["entry"]
    answer = htmx_generate_code(client, "Q2, said better", replaces=t2)
    assert any(name == "done" for name, _ in answer.events)
    assert upstream.calls(CHAT)[-1]["json"]["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2, said better"},
    ]
    new = answer.stream_url.removesuffix("/stream")
    assert stored(client, new)["siblings"] == [t2, new]
    # The form goes on from the new version: its follow-up chip replaces the edit chip.
    chip = parse(answer.post.get_data(as_text=True)).by_id("followup")
    assert [i.attrs["value"] for i in chip.find_all("input") if i.attrs.get("name") == "parent"] == [new]


def test_an_image_turn_gets_an_image_version(client, upstream):
    first = post_image(client, "A red fox in the snow")
    body = post_image(client, "A red fox in the snow, at dawn", replaces=first["entry"])
    assert body["siblings"] == [first["entry"], body["entry"]]
    assert body["image_url"] != first["image_url"]
    assert upstream.calls(IMAGES)[-1]["json"]["prompt"] == "A red fox in the snow, at dawn"


# -- what cannot be replaced ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replaces", "status", "message"),
    [
        ("/chatlog/2020-01-01/7", 404, "The turn to replace does not exist."),
        ("not-a-permalink", 404, "The turn to replace does not exist."),
        ("/chatlog/2024-13-99/x", 404, "The turn to replace does not exist."),
    ],
    ids=["unknown", "word", "malformed"],
)
def test_unknown_replaces_is_a_json_error_and_asks_nothing(app, client, upstream, replaces, status, message):
    post_code(client, "Q1")
    before, calls = entry_count(app), len(upstream.calls(CHAT))
    response = client.post("/generate_code", json={"prompt": "Q2", "replaces": replaces})
    assert response.status_code == status
    assert response.get_json() == {"error": message}
    assert (entry_count(app), len(upstream.calls(CHAT))) == (before, calls)


def test_deleted_replaces_is_a_410_and_asks_nothing(app, client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    assert client.delete(t1).status_code == 200
    before, calls = entry_count(app), len(upstream.calls(CHAT))
    response = client.post("/generate_code", data={"prompt": "Q2", "replaces": t1})
    assert response.status_code == 410
    assert response.get_json() == {"error": "The turn to replace was deleted."}
    assert (entry_count(app), len(upstream.calls(CHAT))) == (before, calls)


def test_unknown_replaces_on_an_image_is_a_404(app, client, upstream):
    response = client.post("/generate_image", data={"prompt": "A fox", "replaces": "/chatlog/2020-01-01/0"})
    assert response.status_code == 404
    assert response.get_json() == {"error": "The turn to replace does not exist."}
    assert upstream.calls(IMAGES) == []


def test_pending_replaces_is_a_409(app, client, upstream):
    upstream.script(CHAT, Reply(chunks=["slow ", "answer"], chunk_delay=2.0))
    post = client.post("/generate_code", data={"prompt": "Q1"}, headers=HX)
    pending = re.search(r'sse-connect="([^"]+)/stream"', post.get_data(as_text=True)).group(1)
    response = client.post("/generate_code", data={"prompt": "Q1 again", "replaces": pending})
    assert response.status_code == 409
    assert response.get_json() == {"error": "The turn to replace is still being answered."}


def test_parent_and_replaces_together_are_a_400(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    t2 = post_code(client, "Q2", parent=t1)["entry"]
    response = client.post("/generate_code", data={"prompt": "Q3", "parent": t1, "replaces": t2})
    assert response.status_code == 400
    assert response.get_json() == {"error": "Send either parent or replaces, not both."}


def test_htmx_with_an_unknown_replaces_shows_the_error_and_keeps_the_form(app, client, upstream):
    response = client.post(
        "/generate_code", data={"prompt": "Keep me", "replaces": "/chatlog/2020-01-01/7"}, headers=HX
    )
    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "404"
    alert = only(parse(response.get_data(as_text=True)).find_all("div"))
    assert (alert.attrs["role"], alert.text) == ("alert", "The turn to replace does not exist.")
    assert "HX-Trigger" not in response.headers
    assert entry_count(app) == 0


# -- History ---------------------------------------------------------------------------------------


def test_history_lists_a_branched_conversation_once_as_its_newest_turn(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    assert list(history_rows(history_aside(client.get("/").get_data(as_text=True)))) == [new]
    assert list(history_rows(parse(client.get("/chatlog").get_data(as_text=True)))) == [new]


def test_a_followup_on_the_older_branch_makes_it_the_newest(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    e1, e2, e3 = (stored(client, p) for p in (t1, t2, t3))
    post_code(client, "Sort them another way", replaces=t2)
    t4 = post_code(client, "And now only the first three.", parent=t3)["entry"]
    # A follow-up continues the branch it is made from.
    assert sent_messages(upstream) == [
        *turn_messages(e1, e2, e3),
        {"role": "user", "content": "And now only the first three."},
    ]
    assert list(history_rows(history_aside(client.get("/").get_data(as_text=True)))) == [t4]


def test_deleting_the_newest_version_lists_the_other_branch_again(client, upstream):
    _t1, t2, t3 = three_turns(client, upstream)
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    assert client.delete(new).status_code == 200
    assert list(history_rows(history_aside(client.get("/").get_data(as_text=True)))) == [t3]
    assert "siblings" not in stored(client, t2)


def test_history_lists_a_new_first_turn_version_once(client, upstream):
    lone = post_code(client, "Unrelated")["entry"]
    t1 = post_code(client, "Q1")["entry"]
    new = post_code(client, "Q1, better", replaces=t1)["entry"]
    assert list(history_rows(history_aside(client.get("/").get_data(as_text=True)))) == [new, lone]


def test_history_pages_never_list_an_older_branch(make_app, upstream):
    from ..support.apps import TEST_KEY

    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, history_sidebar_limit=1
    ).test_client()
    _t1, t2, _t3 = three_turns(client, upstream)
    lone = post_code(client, "Unrelated")["entry"]
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    listed, cursor = [], None
    for _ in range(10):
        html = client.get("/chatlog", query_string={"before": cursor} if cursor else {}, headers=HX)
        root = parse(html.get_data(as_text=True))
        listed += list(history_rows(root))
        more = [b for b in root.find_all("button") if b.has_class("load-more")]
        if not more:
            break
        cursor = re.search(r"before=([^&\"]+)", more[0].attrs["hx-get"]).group(1).replace("%2F", "/")
    assert listed == [new, lone]


# -- the entry page ------------------------------------------------------------------------------


def test_entry_page_shows_the_branch_through_the_entry(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    assert [permalink_of(a) for a in conversation_articles(client.get(t2).get_data(as_text=True))] == [
        t1,
        t2,
        t3,
    ]
    assert [permalink_of(a) for a in conversation_articles(client.get(new).get_data(as_text=True))] == [
        t1,
        new,
    ]
    # From the first turn: the newest branch.
    assert [permalink_of(a) for a in conversation_articles(client.get(t1).get_data(as_text=True))] == [
        t1,
        new,
    ]


def test_a_turn_with_versions_links_to_them_as_n_of_m(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    second = post_code(client, "Version two", replaces=t2)["entry"]
    third = post_code(client, "Version three", replaces=second)["entry"]
    html = client.get(second).get_data(as_text=True)
    nav = versions_nav(html, second)
    assert nav.attrs["aria-label"] == "Turn 2, version 2 of 3"
    assert "2 / 3" in nav.text
    links = {a.attrs["aria-label"]: a.attrs["href"] for a in nav.find_all("a")}
    assert links == {"Previous version": t2, "Next version": third}
    assert versions_nav(html, t1) is None
    first_nav = versions_nav(client.get(t2).get_data(as_text=True), t2)
    assert {a.attrs["aria-label"]: a.attrs["href"] for a in first_nav.find_all("a")} == {
        "Next version": second
    }


def test_every_turn_offers_edit_and_regenerate(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    article = only(
        [a for a in conversation_articles(client.get(t2).get_data(as_text=True)) if permalink_of(a) == t2]
    )
    edit = only([a for a in article.find_all("a") if a.has_class("edit-link")])
    assert (edit.text, edit.attrs["href"]) == ("Edit", f"/?replaces={t2}")
    form = only([f for f in article.find_all("form") if f.has_class("regenerate-form")])
    assert (form.attrs["method"], form.attrs["action"]) == ("post", f"{t2}/regenerate")
    assert only(form.find_all("button")).text == "Regenerate"


def test_edit_chip_fills_in_the_turns_prompt_and_says_which_turn(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    root = parse(client.get("/followup", query_string={"replaces": t2}, headers=HX).get_data(as_text=True))
    chip = root.by_id("followup")
    assert [i.attrs["value"] for i in chip.find_all("input") if i.attrs.get("name") == "replaces"] == [t2]
    assert "Editing turn 2" in " ".join(chip.text.split())
    assert [b.text.split()[0] for b in chip.find_all("button")] == ["Cancel"]
    textarea = only(root.find_all("textarea"))
    assert (textarea.attrs["hx-swap-oob"], textarea.text) == ("true", "And how do I sort them?")


def test_start_page_with_replaces_opens_in_edit_mode(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    root = parse(client.get("/", query_string={"replaces": t2}).get_data(as_text=True))
    assert root.by_id("prompt").text == "And how do I sort them?"
    assert "Editing turn 2" in " ".join(root.by_id("followup").text.split())


# -- Regenerate ------------------------------------------------------------------------------------


def test_regenerate_asks_again_with_the_same_prompt_and_goes_to_the_new_version(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    e1 = stored(client, t1)
    response = client.post(f"{t2}/regenerate")
    assert response.status_code == 303
    new = response.headers["Location"]
    assert new not in (t1, t2)
    page = client.get(new)  # a code answer streams in on the new version's page
    assert page.status_code == 200
    stream = client.get(f"{new}/stream")
    assert "event: done" in stream.get_data(as_text=True)
    entry = stored(client, new)
    assert (entry["prompt"], entry["parent"], entry["siblings"]) == ("And how do I sort them?", t1, [t2, new])
    assert sent_messages(upstream) == [
        *turn_messages(e1),
        {"role": "user", "content": "And how do I sort them?"},
    ]


def test_regenerate_for_htmx_adds_the_version_to_results_and_leaves_the_form(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    response = client.post(f"{t2}/regenerate", headers=HX)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'sse-connect="' in html
    assert parse(html).by_id("followup") is None  # the user's form is not touched
    assert "HX-Trigger" not in response.headers


def test_regenerate_an_image_uses_its_options(make_app, upstream):
    from ..support.apps import TEST_KEY

    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    first = post_image(client, "A red fox", size="1792x1024", quality="hd")
    response = client.post(f"{first['entry']}/regenerate", headers=HX)
    assert response.status_code == 200
    sent = upstream.calls(IMAGES)[-1]["json"]
    assert (sent["prompt"], sent["size"], sent["quality"]) == ("A red fox", "1792x1024", "hd")
    assert "HX-Trigger" not in response.headers  # the prompt box keeps what the user typed


def test_regenerate_an_unknown_entry_is_a_404(client, upstream):
    assert client.post("/chatlog/2020-01-01/3/regenerate").status_code == 404


# -- exports ---------------------------------------------------------------------------------------


def test_full_export_carries_the_versions(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    rows = {f"/chatlog/{r['date']}/{r['index']}": r for r in client.get("/chatlog.full.json").get_json()}
    assert (rows[new]["sibling_of"], rows[new]["parent"], rows[new]["turn"]) == (t2, t1, 2)
    assert rows[t2]["sibling_of"] is None
    assert rows[t1]["branched"] is True


def test_markdown_export_shows_each_version_under_its_conversation(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    text = client.get("/chatlog.md").get_data(as_text=True)
    headings = [line for line in text.splitlines() if line.startswith("###")]
    date = t1.split("/")[2]
    assert [h.split(" — ")[0] for h in headings] == [
        f"### {date} #{index_of(t1)}",
        f"#### ↳ {date} #{index_of(t2)}",
        f"#### ↳ {date} #{index_of(t3)}",
        f"#### ↳ {date} #{index_of(new)}",
    ]
    assert headings[3].endswith(f"follow-up to {t1} · another version of {t2}")
    assert "**Prompt:**\n\n> Sort them another way" in text


def test_seed_export_keeps_two_fields_with_branches(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    post_code(client, "Sort them another way", replaces=t2)
    rows = [row for day in client.get("/chatlog.json").get_json().values() for row in day]
    assert len(rows) == 4
    assert all(set(row) == {"prompt", "response"} for row in rows)


# -- the tree, without a store -----------------------------------------------------------------------


def turn(index: int, parent: int | None = None, sibling_of: int | None = None) -> Entry:
    link = lambda n: None if n is None else Permalink("2024-01-01", n)  # noqa: E731
    return Entry(
        id=f"{index:032x}",
        date="2024-01-01",
        index=index,
        created_at="",
        kind="code",
        prompt=f"p{index}",
        parent=link(parent),
        root=None if index == 0 else link(0),
        sibling_of=link(sibling_of),
    )


def test_branch_path_follows_the_branch_with_the_newest_turn():
    # 0 ─ 1 ─ 2 ─ 4        (4 follows up 2, made after the version 3 of turn 1)
    #   └ 3 (version of 1)
    turns = [turn(0), turn(1, 0), turn(2, 1), turn(3, 0, sibling_of=1), turn(4, 2)]
    path = [t.index for t in branch_path(turns, turns[0], lambda link: None)]
    assert path == [0, 1, 2, 4]
    assert [t.index for t in branch_path(turns, turns[3], lambda link: None)] == [0, 3]
    assert [t.index for t in versions(turns, turns[3])] == [1, 3]


def test_branch_path_hangs_the_children_of_a_deleted_turn_below_its_parent():
    # 1 was deleted: 2 hangs below 0.
    turns = [turn(0), turn(2, 1)]
    first, second = Permalink("2024-01-01", 0), Permalink("2024-01-01", 2)
    parents = live_parents(turns, lambda link: first if link.index == 1 else None)
    assert parents == {first: None, second: first}
    assert [t.index for t in branch_path(turns, turns[0], lambda link: first)] == [0, 2]


def test_the_new_controls_speak_german(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    new = post_code(client, "Sort them another way", replaces=t2)["entry"]
    german = {"Accept-Language": "de"}
    page = " ".join(client.get(new, headers=german).get_data(as_text=True).split())
    for text in ("Bearbeiten", "Neu erzeugen", "Runde 2, Version 2 von 2", "Vorige Version"):
        assert text in page, text
    chip = client.get("/followup", query_string={"replaces": t2}, headers={**HX, **german})
    assert "Runde 2 wird bearbeitet" in chip.get_data(as_text=True)
    start = " ".join(client.get("/", headers=german).get_data(as_text=True).split())
    assert "Bild anhängen" in start and "Bild entfernen" in start
    refused = client.post(
        "/generate_code", data={"prompt": "x", "replaces": "/chatlog/2020-01-01/1"}, headers={**HX, **german}
    )
    assert "Die Runde, die ersetzt werden soll, gibt es nicht." in refused.get_data(as_text=True)
