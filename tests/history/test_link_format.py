"""Links between entries stored as values: an entry's `parent`, `root` and `sibling_of` are
`{"date", "index"}` objects in the TinyDB files and (day, idx) column pairs in PostgreSQL. A
history an older version wrote with permalink text (`/chatlog/<date>/<index>`) moves forward when
the app starts (TinyDB: once, then its folder is marked; PostgreSQL: migration 0006), and its
conversations, versions and exports work as before: the JSON API and the exports still show
permalink text.

An old history here is one conversation over two days with another version of its second turn,
the second half of it in a journal the older version had not folded yet, and a lone entry whose
links name no entry there can be.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.history import ChatLog
from app.history.sql import sqlalchemy_url
from app.history.tinydb.journal import encode_record

from ..support.clock import CEST, Clock
from ..support.conversations import (
    CHAT,
    conversation_articles,
    history_aside,
    history_rows,
    only,
    permalink_of,
    post_code,
    sent_messages,
    stored,
    turn_messages,
)
from ..support.disk import journal_records, stored_entries
from ..support.html import parse
from ..support.migrations import alembic
from ..support.upstream import Reply, chat_completion

D1, D2 = "2026-11-20", "2026-11-21"


def link(date: str, index: int) -> str:
    return f"/chatlog/{date}/{index}"


def at(date: str, index: int) -> dict[str, Any]:
    """A link as the history stores it now."""
    return {"date": date, "index": index}


T0, T1, T2, T3 = (link(D1, n) for n in range(4))  # T3: another version of T1
LATER, LONE = link(D2, 0), link(D2, 1)  # LATER follows up T3


def old_entry(date: str, index: int, prompt: str, **fields: Any) -> dict[str, Any]:
    """An entry as the older version stored it: every field, links as permalink text."""
    return {
        "id": uuid.uuid4().hex,
        "date": date,
        "index": index,
        "created_at": f"{date}T10:{index:02d}:00+00:00",
        "kind": "code",
        "prompt": prompt,
        "response": f"Answer to: {prompt}",
        "model": "m",
        "status": "done",
        "error": None,
        "demo": False,
        "image_file": None,
        "usage": {},
        "options": {},
        "dimensions": [],
        "parent": None,
        "root": None,
        "turn": 1,
        "followups": 0,
        "context_dropped": 0,
        "deleted": False,
        "sibling_of": None,
        "branched": False,
        "input_image": None,
        "error_kind": None,
        "error_params": {},
        **fields,
    }


def old_entries() -> dict[str, dict[str, Any]]:
    """The old history's entries by permalink, as they finally are (the journal applied)."""
    return {
        T0: old_entry(D1, 0, "How do I read a CSV file?", followups=2, branched=True),
        T1: old_entry(D1, 1, "And write one?", parent=T0, root=T0, turn=2, followups=1),
        T2: old_entry(D1, 2, "With a header row?", parent=T1, root=T0, turn=3),
        T3: old_entry(D1, 3, "And append to one?", parent=T0, root=T0, turn=2, sibling_of=T1, followups=1),
        LATER: old_entry(D2, 0, "Only new rows, please.", parent=T3, root=T0, turn=3),
        # Links that name no entry there can be: read as no link.
        LONE: old_entry(D2, 1, "Something else", parent="/chatlog/2026-13-xx/1", root="garbage"),
    }


def write_document(history: Path, date: str, rows: list[dict[str, Any]]) -> None:
    """A day document as the older version wrote it (compact, its journal table first)."""
    coverage = {"id": uuid.uuid4().hex, "parent": None, "gen": 0, "sizes": "", "floor": 0}
    document = {"_journal": {"1": coverage}, "entries": {str(raw["index"] + 1): raw for raw in rows}}
    (history / f"{date}.json").write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")


def append_records(journal: Path, records: list[dict[str, Any]]) -> None:
    with journal.open("ab") as fh:
        for record in records:
            fh.write(encode_record(record)[0])


def write_old_history(data_dir: Path) -> None:
    """The old history in DATA_DIR: T0-T2 and LATER, LONE in documents; T3 and the mark on T0
    that its conversation has branches in D1's journal, not folded yet; no format mark."""
    history = data_dir / "history"
    history.mkdir(parents=True, exist_ok=True)
    rows = old_entries()
    write_document(history, D1, [{**rows[T0], "branched": False}, rows[T1], rows[T2]])
    write_document(history, D2, [rows[LATER], rows[LONE]])
    records = [
        {"put": rows[T3]},
        {"set": 0, "id": rows[T0]["id"], "c": {"branched": True}},
    ]
    append_records(history / f"{D1}.1.journal", records)


def history_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "history").iterdir() if p.suffix in (".json", ".journal"))


def versions_label(html: str, permalink: str) -> str | None:
    """The accessible name of the "‹ n / m ›" navigation of the turn `permalink` on a page."""
    article = only([a for a in parse(html).find_all("article") if permalink_of(a) == permalink])
    navs = [n for n in article.find_all("nav") if n.has_class("versions")]
    return navs[0].attrs["aria-label"] if navs else None


def check_the_old_conversation(client, upstream) -> dict[str, Any]:
    """The old conversation works as it did: JSON, the entry page with its branch and versions,
    History, the exports, and a follow-up with its context. Returns the follow-up's JSON."""
    second = stored(client, T1)
    assert (second["parent"], second["conversation"], second["turn"]) == (T0, T0, 2)
    assert second["siblings"] == [T1, T3]
    later = stored(client, LATER)
    assert (later["parent"], later["conversation"], later["turn"]) == (T3, T0, 3)
    assert not {"parent", "conversation", "siblings"} & set(stored(client, LONE))

    html = client.get(T3).get_data(as_text=True)
    assert [permalink_of(a) for a in conversation_articles(html)] == [T0, T3, LATER]
    assert versions_label(html, T3) == "Turn 2, version 2 of 2"
    html = client.get(T2).get_data(as_text=True)
    assert [permalink_of(a) for a in conversation_articles(html)] == [T0, T1, T2]
    assert versions_label(html, T1) == "Turn 2, version 1 of 2"
    listed = history_rows(history_aside(client.get("/").get_data(as_text=True)))
    assert set(listed) == {LATER, LONE}  # the conversation once, as its newest turn

    full = {link(r["date"], r["index"]): r for r in client.get("/chatlog.full.json").get_json()}
    assert (full[T3]["parent"], full[T3]["root"], full[T3]["sibling_of"]) == (T0, T0, T1)
    assert (full[LATER]["parent"], full[LATER]["root"], full[LATER]["sibling_of"]) == (T3, T0, None)
    assert (full[LONE]["parent"], full[LONE]["root"]) == (None, None)
    markdown = client.get("/chatlog.md").get_data(as_text=True)
    assert f"follow-up to {T0} · another version of {T1}" in markdown
    assert f"follow-up to {T3}" in markdown

    upstream.script(CHAT, Reply(json=chat_completion("Open it with mode 'a'.")))
    body = post_code(client, "In one line?", parent=LATER)
    assert (body["parent"], body["conversation"], body["turn"]) == (LATER, T0, 4)
    earlier = [stored(client, permalink) for permalink in (T0, T3, LATER)]
    assert sent_messages(upstream) == [*turn_messages(*earlier), {"role": "user", "content": "In one line?"}]
    return body


# -- TinyDB -------------------------------------------------------------------------------------


def test_an_old_tinydb_history_moves_forward_when_the_app_starts(data_dir, openai_app, upstream):
    write_old_history(data_dir)

    app = openai_app()

    history = data_dir / "history"
    assert json.loads((history / "format.json").read_text(encoding="utf-8")) == {"format": 2}
    assert [p.name for p in history_files(data_dir) if "/chatlog/" in p.read_text(encoding="utf-8")] == []
    assert not list(history.glob(f"{D1}.1.journal"))  # folded into the day's new document
    rows = {link(r["date"], r["index"]): r for r in stored_entries(data_dir)}
    assert (rows[T3]["parent"], rows[T3]["root"], rows[T3]["sibling_of"]) == (at(D1, 0), at(D1, 0), at(D1, 1))
    assert (rows[LATER]["parent"], rows[LATER]["root"]) == (at(D1, 3), at(D1, 0))
    assert (rows[LONE]["parent"], rows[LONE]["root"], rows[T0]["branched"]) == (None, None, True)
    assert [r["prompt"] for r in rows.values()] == [r["prompt"] for r in old_entries().values()]

    check_the_old_conversation(app.test_client(), upstream)


def test_a_new_follow_up_is_stored_with_its_links_as_dates_and_indexes(data_dir, openai_app, upstream):
    write_old_history(data_dir)
    body = check_the_old_conversation(openai_app().test_client(), upstream)

    new = only([r for r in stored_entries(data_dir) if link(r["date"], r["index"]) == body["entry"]])
    assert (new["parent"], new["root"], new["sibling_of"]) == (at(D2, 0), at(D1, 0), None)
    assert [p.name for p in history_files(data_dir) if "/chatlog/" in p.read_text(encoding="utf-8")] == []


def test_a_record_an_older_process_appends_with_links_as_text_is_understood(data_dir, make_app):
    write_old_history(data_dir)
    client = make_app().test_client()  # moves the history forward
    # An older server still running (a rolling upgrade) appends a follow-up the old way.
    journal = max((data_dir / "history").glob(f"{D2}.*.journal"), key=lambda p: int(p.name.split(".")[1]))
    added = old_entry(D2, 2, "And skip blank lines?", parent=LATER, root=T0, turn=4)
    append_records(journal, [{"put": added}])

    body = stored(client, link(D2, 2))
    assert (body["parent"], body["conversation"], body["turn"]) == (LATER, T0, 4)
    html = client.get(T0).get_data(as_text=True)
    assert [permalink_of(a) for a in conversation_articles(html)] == [T0, T3, LATER, link(D2, 2)]


def test_a_history_moved_forward_is_not_read_again_at_the_next_start(data_dir, make_app, monkeypatch):
    write_old_history(data_dir)
    make_app()
    before = {p.name: p.stat().st_mtime_ns for p in history_files(data_dir)}

    store = ChatLog(data_dir)
    monkeypatch.setattr(ChatLog, "_day", lambda self, date: pytest.fail(f"{date} was read"))
    assert store.upgrade_format() == 0
    monkeypatch.undo()
    make_app()

    assert {p.name: p.stat().st_mtime_ns for p in history_files(data_dir)} == before


def test_a_new_history_folder_starts_in_the_newest_format_and_stores_links_as_values(data_dir):
    store = ChatLog(data_dir, clock=Clock(datetime(2026, 11, 20, 9, 0, tzinfo=CEST)))
    first = store.finish(store.begin("code", "Q1", "m"), "A1")
    second = store.finish(store.begin("code", "Q2", "m", parent=first), "A2")
    store.finish(store.begin("code", "Q2 again", "m", parent=first, replaces=second), "A2 again")
    history = data_dir / "history"
    journal = [r["put"] for r in journal_records(history / f"{D1}.1.journal") if "put" in r]
    store.checkpoint(D1)
    document = json.loads((history / f"{D1}.json").read_text(encoding="utf-8"))["entries"]

    assert json.loads((history / "format.json").read_text(encoding="utf-8")) == {"format": 2}
    for rows in (journal, [document[key] for key in sorted(document)]):
        assert [(r["parent"], r["root"], r["sibling_of"]) for r in rows] == [
            (None, None, None),
            (at(D1, 0), at(D1, 0), None),
            (at(D1, 0), at(D1, 0), at(D1, 1)),
        ]
    assert store.get(D1, 2).sibling_of == second.address


# -- PostgreSQL ---------------------------------------------------------------------------------

COLUMNS = ("parent", "root", "sibling_of")
OLD_ROW = (
    "INSERT INTO entries (day, idx, id, created_at, kind, prompt, response, model, status, parent,"
    " root, turn, followups, sibling_of, branched) VALUES (:date, :index, :id, :created_at, 'code',"
    " :prompt, :response, 'm', 'done', :parent, :root, :turn, :followups, :sibling_of, :branched)"
)


def old_rows() -> list[tuple[str, dict[str, Any]]]:
    """The old history as revision 0005 held it: links as text."""
    rows = [(OLD_ROW, raw) for raw in old_entries().values()]
    return [*rows, ("INSERT INTO days (day, next_idx) VALUES (:d1, 4), (:d2, 2)", {"d1": D1, "d2": D2})]


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_migration_0006_moves_text_links_into_column_pairs(pg_at_revision, openai_app, upstream):
    pg_url = pg_at_revision("0005", *old_rows())

    app = openai_app(history_url=pg_url)  # the app upgrades the schema as it starts

    assert query(pg_url, "SELECT version_num FROM alembic_version") == [("0006",)]
    pairs = ", ".join(f"{name}_day, {name}_idx" for name in COLUMNS)
    assert query(pg_url, f"SELECT day, idx, {pairs} FROM entries ORDER BY day, idx") == [
        (D1, 0, None, None, None, None, None, None),
        (D1, 1, D1, 0, D1, 0, None, None),
        (D1, 2, D1, 1, D1, 0, None, None),
        (D1, 3, D1, 0, D1, 0, D1, 1),
        (D2, 0, D1, 3, D1, 0, None, None),
        (D2, 1, None, None, None, None, None, None),
    ]
    columns = query(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'entries'")
    assert not {(name,) for name in COLUMNS} & set(columns)
    [(definition,)] = query(pg_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'entries_root'")
    assert "(root_day, root_idx)" in definition

    body = check_the_old_conversation(app.test_client(), upstream)
    day, index = body["entry"].split("/")[2:]
    assert query(pg_url, f"SELECT {pairs} FROM entries WHERE day = '{day}' AND idx = {int(index)}") == [
        (D2, 0, D1, 0, None, None)
    ]


def test_migration_0006_goes_back_to_text_links(pg_at_revision):
    # An index past the integer column's range names no entry there can be.
    beyond = old_entry(D2, 2, "Beyond", parent=link(D1, 2**31), root=T0, turn=2)
    pg_url = pg_at_revision("0005", *old_rows(), (OLD_ROW, beyond))
    alembic(pg_url, "upgrade", "0006")
    assert query(
        pg_url, f"SELECT parent_day, parent_idx, root_day FROM entries WHERE idx = 2 AND day = '{D2}'"
    ) == [(None, None, D1)]

    alembic(pg_url, "downgrade", "0005")

    texts = query(pg_url, f"SELECT {', '.join(COLUMNS)} FROM entries ORDER BY day, idx")
    expected = [tuple(raw[name] for name in COLUMNS) for raw in old_entries().values()]
    # The links that named no entry were dropped on the way up.
    expected[-1] = (None, None, None)
    assert texts == [*expected, (None, T0, None)]
    [(definition,)] = query(pg_url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'entries_root'")
    assert "(root)" in definition
