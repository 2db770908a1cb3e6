"""Conversations: follow-up turns (`parent` / `conversation_id`), their context, and how they show.

Everything goes through the real openai client against the local upstream (tests/support/upstream.py),
so the assertions are on the `messages` the upstream actually received.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ..support.apps import BACKENDS
from ..support.browser import WatchedPage
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
from ..support.upstream import Reply, chat_completion, error_body


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs against the TinyDB files and a real PostgreSQL."""
    return request.param


SEED_FILE = Path(__file__).resolve().parents[1] / "data" / "chatlog.sample.json"
MISSING_PARENT = "The entry to follow up does not exist (any more)."


# -- helpers -------------------------------------------------------------------------------------


# -- context sent upstream (JSON API) ------------------------------------------------------------


def test_third_turn_sends_both_earlier_turns_then_its_prompt(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    e1, e2, e3 = (stored(client, p) for p in (t1, t2, t3))
    assert e1["response"] == "First answer: use a list."
    assert sent_messages(upstream) == [*turn_messages(e1, e2), {"role": "user", "content": e3["prompt"]}]


def test_second_turn_sends_the_first_turn_as_context(client, upstream):
    upstream.script(CHAT, Reply(json=chat_completion("A1")), Reply(json=chat_completion("A2")))
    t1 = post_code(client, "Q1")["entry"]
    post_code(client, "Q2", parent=t1)
    assert sent_messages(upstream) == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]


def test_followup_json_names_parent_conversation_and_turn(client, upstream):
    t1, _t2, t3 = three_turns(client, upstream)
    upstream.script(CHAT, Reply(json=chat_completion("Fourth answer.")))
    body = post_code(client, "Once more", parent=t3)
    assert body["parent"] == t3
    assert body["conversation"] == t1
    assert body["turn"] == 4
    assert body["code"] == "Fourth answer."


def test_system_prompt_comes_first_in_a_followup(openai_app, upstream):
    client = openai_app(system_prompt="Be brief.").test_client()
    upstream.script(CHAT, Reply(json=chat_completion("A1")), Reply(json=chat_completion("A2")))
    t1 = post_code(client, "Q1")["entry"]
    post_code(client, "Q2", parent=t1)
    assert sent_messages(upstream) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]


def test_without_parent_the_upstream_gets_a_single_user_message(client, upstream):
    post_code(client, "Q1")
    post_code(client, "Q2")
    assert sent_messages(upstream) == [{"role": "user", "content": "Q2"}]


def test_without_parent_the_json_keeps_the_seed_shape(client, upstream):
    body = post_code(client, "Q1")
    assert set(body) == {"code", "entry", "model", "demo"}
    assert stored(client, body["entry"]).get("turn") is None


def test_conversation_id_is_an_alias_of_parent(client, upstream):
    upstream.script(CHAT, Reply(json=chat_completion("A1")))
    t1 = post_code(client, "Q1")["entry"]
    body = post_code(client, "Q2", conversation_id=t1)
    assert (body["parent"], body["turn"]) == (t1, 2)
    assert sent_messages(upstream)[:2] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
    ]


def test_parent_in_a_json_body_makes_a_followup(client, upstream):
    upstream.script(CHAT, Reply(json=chat_completion("A1")))
    t1 = post_code(client, "Q1")["entry"]
    response = client.post("/generate_code", json={"prompt": "Q2", "parent": t1})
    assert response.status_code == 200
    assert response.get_json()["turn"] == 2
    assert len(sent_messages(upstream)) == 3


# -- context sent upstream (htmx streaming) ------------------------------------------------------


def test_htmx_stream_sends_the_earlier_turns_as_context(client, upstream):
    upstream.script(CHAT, Reply(json=chat_completion("A1")))
    t1 = post_code(client, "Q1")["entry"]
    answer = htmx_generate_code(client, "Q2", parent=t1)
    assert any(name == "done" for name, _ in answer.events)
    request = upstream.calls(CHAT)[-1]["json"]
    assert request["stream"] is True
    assert request["messages"] == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]


def test_htmx_streamed_followup_is_stored_as_turn_two_and_shows_it(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    answer = htmx_generate_code(client, "Q2", parent=t1)
    assert "turn 2" in answer.final
    permalink = re.search(r'sse-connect="([^"]+)/stream"', answer.post.get_data(as_text=True)).group(1)
    entry = stored(client, permalink)
    assert (entry["parent"], entry["turn"], entry["status"]) == (t1, 2, "done")


def test_htmx_followup_sets_the_form_to_continue_from_the_new_turn(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    answer = htmx_generate_code(client, "Q2", parent=t1)
    permalink = answer.stream_url.removesuffix("/stream")
    chip = only(
        [
            d
            for d in parse(answer.post.get_data(as_text=True)).find_all("div")
            if d.attrs.get("id") == "followup"
        ]
    )
    assert chip.attrs.get("hx-swap-oob") == "true"
    hidden = only([i for i in chip.find_all("input") if i.attrs.get("name") == "parent"])
    assert hidden.attrs["value"] == permalink


# -- the context budget --------------------------------------------------------------------------


def long_conversation(client, upstream, turns: int) -> list[str]:
    """`turns` answered turns of 1,000 characters each (100 prompt + 900 answer)."""
    upstream.script(CHAT, *(Reply(json=chat_completion(f"{n}" * 900)) for n in range(1, turns + 1)))
    permalinks: list[str] = []
    for n in range(1, turns + 1):
        fields = {"parent": permalinks[-1]} if permalinks else {}
        permalinks.append(post_code(client, f"{n}" + "p" * 99, **fields)["entry"])
    return permalinks


def test_budget_drops_the_oldest_turns_and_keeps_the_newest(openai_app, upstream):
    client = openai_app(context_chars=2000).test_client()
    _t1, _t2, t3 = long_conversation(client, upstream, 3)
    body = post_code(client, "short", parent=t3)
    e3 = stored(client, t3)
    assert sent_messages(upstream) == [*turn_messages(e3), {"role": "user", "content": "short"}]
    assert stored(client, body["entry"])["context_dropped"] == 2


def test_budget_never_fails_even_when_no_earlier_turn_fits(openai_app, upstream):
    client = openai_app(context_chars=2000).test_client()
    (t1,) = long_conversation(client, upstream, 1)
    prompt = "x" * 1990
    response = client.post("/generate_code", data={"prompt": prompt, "parent": t1})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert sent_messages(upstream) == [{"role": "user", "content": prompt}]
    assert stored(client, response.get_json()["entry"])["context_dropped"] == 1


def test_entry_page_says_how_many_earlier_turns_were_left_out(openai_app, upstream):
    client = openai_app(context_chars=2000).test_client()
    _t1, _t2, t3 = long_conversation(client, upstream, 3)
    permalink = post_code(client, "short", parent=t3)["entry"]
    html = client.get(permalink).get_data(as_text=True)
    current = only([a for a in conversation_articles(html) if a.attrs.get("aria-current") == "true"])
    assert "2 earlier turns were left out of the context" in " ".join(current.text.split())


def test_entry_within_the_budget_has_no_context_dropped(openai_app, upstream):
    client = openai_app(context_chars=2000).test_client()
    (t1,) = long_conversation(client, upstream, 1)
    entry = stored(client, post_code(client, "short", parent=t1)["entry"])
    assert "context_dropped" not in entry
    assert len(sent_messages(upstream)) == 3


# -- parents that cannot be followed up ----------------------------------------------------------


def test_parent_that_never_existed_is_a_400_and_stores_nothing(app, client, upstream):
    post_code(client, "Q1")
    before, calls = entry_count(app), len(upstream.calls(CHAT))
    response = client.post("/generate_code", data={"prompt": "Q2", "parent": "/chatlog/2020-01-01/7"})
    assert response.status_code == 400
    assert response.get_json() == {"error": MISSING_PARENT}
    assert (entry_count(app), len(upstream.calls(CHAT))) == (before, calls)


def test_deleted_parent_is_a_400_and_stores_nothing(app, client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    assert client.delete(t1).status_code == 200
    before, calls = entry_count(app), len(upstream.calls(CHAT))
    response = client.post("/generate_code", data={"prompt": "Q2", "parent": t1})
    assert response.status_code == 400
    assert response.get_json() == {"error": MISSING_PARENT}
    assert (entry_count(app), len(upstream.calls(CHAT))) == (before, calls)


@pytest.mark.parametrize(
    "parent",
    [
        "not-a-permalink",
        "/chatlog/2024-13-99/x",
        "/chatlog/today/0",
        "/chatlog/2024-01-01/-1",
        123,
        ["/chatlog"],
    ],
    ids=["word", "bad-date-and-index", "no-date", "negative-index", "number", "list"],
)
def test_malformed_parent_is_a_400_and_stores_nothing(app, client, upstream, parent):
    before = entry_count(app)
    response = client.post("/generate_code", json={"prompt": "Q2", "parent": parent})
    assert response.status_code == 400
    assert response.get_json() == {"error": MISSING_PARENT}
    assert entry_count(app) == before
    assert upstream.calls(CHAT) == []


def test_malformed_parent_on_an_image_is_a_400_and_stores_nothing(app, client, upstream):
    response = client.post("/generate_image", data={"prompt": "A fox", "parent": "nonsense"})
    assert response.status_code == 400
    assert response.get_json() == {"error": MISSING_PARENT}
    assert entry_count(app) == 0
    assert upstream.calls(IMAGES) == []


def test_pending_parent_is_a_400_and_stores_nothing(app, client, upstream):
    # An htmx request stores the prompt pending and starts answering it: slowly, here.
    upstream.script(CHAT, Reply(chunks=["slow ", "answer"], chunk_delay=2.0))
    post = client.post("/generate_code", data={"prompt": "Q1"}, headers=HX)
    pending = re.search(r'sse-connect="([^"]+)/stream"', post.get_data(as_text=True)).group(1)
    before = entry_count(app)
    response = client.post("/generate_code", data={"prompt": "Q2", "parent": pending})
    assert response.status_code == 400
    assert response.get_json() == {"error": "The entry to follow up is still being answered."}
    assert entry_count(app) == before


def test_htmx_request_with_a_missing_parent_shows_the_error_and_stores_nothing(app, client, upstream):
    response = client.post(
        "/generate_code", data={"prompt": "Q2", "parent": "/chatlog/2020-01-01/7"}, headers=HX
    )
    assert response.headers["X-Error-Status"] == "400"
    assert MISSING_PARENT in response.get_data(as_text=True)
    assert "sse-connect" not in response.get_data(as_text=True)
    assert entry_count(app) == 0


def test_failed_earlier_turn_is_not_sent_as_context(client, upstream):
    upstream.script(
        CHAT,
        Reply(json=chat_completion("A1")),
        Reply(status=500, json=error_body("boom")),
    )
    t1 = post_code(client, "Q1")["entry"]
    failed = client.post("/generate_code", data={"prompt": "Q2 fails", "parent": t1})
    assert failed.status_code == 500
    t2 = failed.get_json()["entry"]
    assert stored(client, t2)["status"] == "failed"
    post_code(client, "Q3", parent=t2)
    assert sent_messages(upstream) == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q3"},
    ]


def test_failed_earlier_turn_with_a_partial_answer_is_not_sent_as_context(client, upstream):
    upstream.script(
        CHAT, Reply(json=chat_completion("A1")), Reply(chunks=["Half ", "an ", "answer"], cut_after=2)
    )
    t1 = post_code(client, "Q1")["entry"]
    cut = htmx_generate_code(client, "Q2 is cut", parent=t1)
    t2 = cut.stream_url.removesuffix("/stream")
    partial = stored(client, t2)
    assert (partial["status"], partial["response"]) == ("failed", "Half an ")
    post_code(client, "Q3", parent=t2)
    assert sent_messages(upstream) == [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q3"},
    ]


# -- the entry page --------------------------------------------------------------------------------


def test_entry_page_of_the_last_turn_shows_the_conversation_in_turn_order(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    articles = conversation_articles(client.get(t3).get_data(as_text=True))
    assert [permalink_of(a) for a in articles] == [t1, t2, t3]
    assert [a.attrs.get("aria-current") for a in articles] == [None, None, "true"]
    assert "Descending, please." in articles[2].text


def test_entry_page_of_the_first_turn_shows_the_whole_conversation(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    articles = conversation_articles(client.get(t1).get_data(as_text=True))
    assert [permalink_of(a) for a in articles] == [t1, t2, t3]
    assert [a.attrs.get("aria-current") for a in articles] == ["true", None, None]


def test_entry_page_tags_later_turns_with_their_number(client, upstream):
    _t1, t2, _t3 = three_turns(client, upstream)
    articles = conversation_articles(client.get(t2).get_data(as_text=True))
    tags = [[" ".join(s.text.split()) for s in a.find_all("span") if s.has_class("tag")] for a in articles]
    assert "turn 2" not in tags[0] and "turn 3" not in tags[0]
    assert "turn 2" in tags[1]
    assert "turn 3" in tags[2]


def test_single_entry_page_has_no_conversation_section(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    html = client.get(t1).get_data(as_text=True)
    assert not [s for s in parse(html).find_all("section") if s.has_class("conversation")]
    assert len(parse(html).find_all("article")) == 1


# -- History ---------------------------------------------------------------------------------------


def test_history_lists_a_conversation_once_as_its_latest_turn(client, upstream):
    _t1, _t2, t3 = three_turns(client, upstream)
    rows = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert list(rows) == [t3]
    assert "3 turns" in rows[t3]


def test_history_page_lists_a_conversation_once_as_its_latest_turn(client, upstream):
    _t1, _t2, t3 = three_turns(client, upstream)
    rows = history_rows(parse(client.get("/chatlog").get_data(as_text=True)))
    assert list(rows) == [t3]
    assert "3 turns" in rows[t3]


def test_history_fragment_lists_a_conversation_once(client, upstream):
    _t1, _t2, t3 = three_turns(client, upstream)
    rows = history_rows(parse(client.get("/chatlog", headers=HX).get_data(as_text=True)))
    assert list(rows) == [t3]


def test_older_turns_hidden_from_history_still_answer(client, upstream):
    t1, t2, _t3 = three_turns(client, upstream)
    assert [client.get(p).status_code for p in (t1, t2)] == [200, 200]
    assert [stored(client, p)["prompt"] for p in (t1, t2)] == [
        "How do I keep several numbers?",
        "And how do I sort them?",
    ]


def test_history_keeps_unrelated_entries_beside_a_conversation(client, upstream):
    lone = post_code(client, "Unrelated question")["entry"]
    _t1, _t2, t3 = three_turns(client, upstream)
    rows = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert list(rows) == [t3, lone]
    assert "turns" not in rows[lone]


# -- deleting turns --------------------------------------------------------------------------------


def test_deleting_the_middle_turn_keeps_the_first_and_third_readable(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    assert client.delete(t2).status_code == 200
    assert [client.get(p).status_code for p in (t1, t2, t3)] == [200, 410, 200]
    articles = conversation_articles(client.get(t3).get_data(as_text=True))
    assert [permalink_of(a) for a in articles] == [t1, t3]


def test_deleting_the_middle_turn_keeps_the_third_in_history(client, upstream):
    _t1, t2, t3 = three_turns(client, upstream)
    client.delete(t2)
    rows = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert t3 in rows


def test_deleting_the_middle_turn_keeps_the_conversation_listed_once(client, upstream):
    _t1, t2, t3 = three_turns(client, upstream)
    client.delete(t2)
    rows = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    # Turns 1 and 3 are still one conversation (the entry page shows them together).
    assert list(rows) == [t3]


def test_followup_after_deleting_the_middle_turn_sends_turns_one_and_three(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    e1, e3 = stored(client, t1), stored(client, t3)
    client.delete(t2)
    post_code(client, "Fourth question", parent=t3)
    assert sent_messages(upstream) == [*turn_messages(e1, e3), {"role": "user", "content": "Fourth question"}]


def test_deleting_the_last_turn_shows_the_previous_one_in_history_again(client, upstream):
    _t1, t2, t3 = three_turns(client, upstream)
    assert client.delete(t3).status_code == 200
    rows = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert list(rows) == [t2]
    assert "2 turns" in rows[t2]


def test_deleting_the_middle_then_the_last_turn_shows_the_first_in_history_again(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    client.delete(t2)
    client.delete(t3)
    rows = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert list(rows) == [t1]


# -- export and import -----------------------------------------------------------------------------


def test_full_export_carries_parent_root_and_turn(client, upstream):
    t1, t2, t3 = three_turns(client, upstream)
    rows = {f"/chatlog/{r['date']}/{r['index']}": r for r in client.get("/chatlog.full.json").get_json()}
    assert [(rows[p]["parent"], rows[p]["root"], rows[p]["turn"]) for p in (t1, t2, t3)] == [
        (None, None, 1),
        (t1, t1, 2),
        (t2, t1, 3),
    ]


def test_markdown_export_shows_followups_under_their_first_turn_in_order(client, upstream):
    lone = post_code(client, "Unrelated question")["entry"]
    t1, t2, t3 = three_turns(client, upstream)
    text = client.get("/chatlog.md").get_data(as_text=True)
    headings = [line for line in text.splitlines() if line.startswith("###")]
    date = t1.split("/")[2]
    assert [h.split(" — ")[0] for h in headings] == [
        f"### {date} #{index_of(lone)}",
        f"### {date} #{index_of(t1)}",
        f"#### ↳ {date} #{index_of(t2)}",
        f"#### ↳ {date} #{index_of(t3)}",
    ]
    assert headings[2].endswith(f"follow-up to {t1}")
    assert headings[3].endswith(f"follow-up to {t2}")


def test_seed_json_export_has_no_conversation_keys(client, upstream):
    three_turns(client, upstream)
    data = client.get("/chatlog.json").get_json()
    rows = [row for day in data.values() for row in day]
    assert len(rows) == 3
    assert all(set(row) == {"prompt", "response"} for row in rows)


def test_imported_seed_entries_are_single_turns(demo_app):
    client = demo_app.test_client()
    upload = {"file": (SEED_FILE.open("rb"), "chatlog.json")}
    response = client.post("/chatlog/import", data=upload, content_type="multipart/form-data")
    assert response.get_json()["imported"] == 7
    rows = client.get("/chatlog.full.json").get_json()
    assert len(rows) == 7
    assert all((r["turn"], r["parent"], r["root"], r["followups"]) == (1, None, None, 0) for r in rows)
    history = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert len(history) == 7
    assert not any("turns" in text for text in history.values())


# -- image variations ------------------------------------------------------------------------------


def test_image_variation_is_linked_as_turn_two(client, upstream):
    first = post_image(client, "A red fox in the snow")
    body = post_image(client, "A red fox in the snow at night", parent=first["entry"])
    assert (body["parent"], body["conversation"], body["turn"]) == (first["entry"], first["entry"], 2)
    assert body["image_url"] != first["image_url"]


def test_image_variation_sends_only_the_new_prompt_upstream(client, upstream):
    first = post_image(client, "A red fox in the snow")
    post_image(client, "A red fox in the snow at night", parent=first["entry"])
    assert upstream.calls(IMAGES)[-1]["json"]["prompt"] == "A red fox in the snow at night"
    assert upstream.calls(CHAT) == []


def test_followup_chip_for_an_image_notes_a_variation_and_refills_the_prompt(client, upstream):
    first = post_image(client, "A red fox & a <b>owl</b>")
    response = client.get("/followup", query_string={"parent": first["entry"]}, headers=HX)
    assert response.status_code == 200
    root = parse(response.get_data(as_text=True))
    chip = only([d for d in root.find_all("div") if d.attrs.get("id") == "followup"])
    assert "Variation of" in chip.text
    hidden = only([i for i in chip.find_all("input") if i.attrs.get("name") == "parent"])
    assert hidden.attrs["value"] == first["entry"]
    textarea = only(root.find_all("textarea"))
    assert (textarea.attrs["id"], textarea.attrs.get("hx-swap-oob")) == ("prompt", "true")
    assert textarea.text == "A red fox & a <b>owl</b>"


def test_followup_chip_for_a_code_answer_does_not_touch_the_prompt(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    root = parse(client.get("/followup", query_string={"parent": t1}, headers=HX).get_data(as_text=True))
    chip = only([d for d in root.find_all("div") if d.attrs.get("id") == "followup"])
    assert "Follow-up (turn 2)" in " ".join(chip.text.split())
    assert root.find_all("textarea") == []


def test_followup_chip_for_a_missing_parent_is_an_error(client, upstream):
    response = client.get("/followup", query_string={"parent": "/chatlog/2020-01-01/7"}, headers=HX)
    assert MISSING_PARENT in response.get_data(as_text=True)
    assert 'name="parent"' not in response.get_data(as_text=True)


def test_start_page_with_an_image_parent_prefills_the_prompt(client, upstream):
    first = post_image(client, "A lighthouse at sunset")
    root = parse(client.get("/", query_string={"parent": first["entry"]}).get_data(as_text=True))
    textarea = only([t for t in root.find_all("textarea") if t.attrs.get("id") == "prompt"])
    assert textarea.text == "A lighthouse at sunset"
    chip = only([d for d in root.find_all("div") if d.attrs.get("id") == "followup"])
    hidden = only([i for i in chip.find_all("input") if i.attrs.get("name") == "parent"])
    assert hidden.attrs["value"] == first["entry"]


def test_start_page_with_a_code_parent_sets_the_followup_but_leaves_the_prompt_empty(client, upstream):
    t1 = post_code(client, "Q1")["entry"]
    root = parse(client.get("/", query_string={"parent": t1}).get_data(as_text=True))
    textarea = only([t for t in root.find_all("textarea") if t.attrs.get("id") == "prompt"])
    assert textarea.text == ""
    chip = only([d for d in root.find_all("div") if d.attrs.get("id") == "followup"])
    assert [i.attrs["value"] for i in chip.find_all("input") if i.attrs.get("name") == "parent"] == [t1]


# -- in a real browser -----------------------------------------------------------------------------


@pytest.mark.browser
def test_keyboard_only_followup_sends_the_context_and_shows_turn_two(open_page, openai_app, upstream):
    app = openai_app()
    watched: WatchedPage = open_page(app)
    page = watched.page
    results = page.get_by_role("region", name="Results")
    prompt = page.get_by_role("textbox", name="Prompt")

    prompt.fill("How do I read a CSV file?")
    prompt.press("Control+Enter")
    first = results.locator("article.status-done")
    expect(first).to_have_count(1)
    first_link = first.locator("a.permalink").get_attribute("href")

    page.keyboard.press("Escape")
    expect(prompt).not_to_be_focused()
    page.keyboard.press("f")
    note = page.locator("#followup .followup-note")
    expect(note).to_contain_text("Follow-up (turn 2)")
    expect(prompt).to_be_focused()

    page.keyboard.type("And with a semicolon separator?")
    page.keyboard.press("Control+Enter")
    done = results.locator("article.status-done")
    expect(done).to_have_count(2)
    expect(done.first).to_contain_text("turn 2")
    expect(done.first).to_contain_text("And with a semicolon separator?")

    second_link = done.first.locator("a.permalink").get_attribute("href")
    check = app.test_client()
    first_entry = stored(check, first_link)
    assert stored(check, second_link)["parent"] == first_link
    assert sent_messages(upstream) == [
        *turn_messages(first_entry),
        {"role": "user", "content": "And with a semicolon separator?"},
    ]
    watched.assert_clean()
