"""A failed entry stores its failure as a kind and values (app.messages.FAILURES), so its page says
it in the reader's language; the English sentence stays in `error` for the exports and the API.
Entries stored before kinds existed (only an English sentence, in TinyDB day documents or
PostgreSQL rows from revision 0004) keep showing it, translated where the catalogue knows it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.messages import failure

from ..support.apps import BACKENDS, TEST_KEY
from ..support.upstream import Reply, error_body

CHAT = "/v1/chat/completions"
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
ENGLISH = {"Accept-Language": "en"}
SERVER_ERROR_EN = "The upstream had a server error (503). Try again in a moment."
SERVER_ERROR_DE = "Beim Anbieter ist ein Serverfehler aufgetreten (503). Versuche es gleich noch einmal."


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    """Both engines store and read the failure's kind and values."""
    return request.param


@pytest.fixture
def failing_app(make_app, upstream):
    """An app whose upstream answers the next chat request with a 503."""
    upstream.script(CHAT, Reply(status=503, json=error_body("overloaded")))
    return make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)


def page_text(client, permalink: str, headers: dict[str, str]) -> str:
    response = client.get(permalink, headers=headers)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_an_upstream_failure_is_stored_as_its_kind_and_values_beside_the_english_sentence(failing_app):
    response = failing_app.test_client().post("/generate_code", data={"prompt": "Sort a list"})

    assert response.status_code == 500
    assert response.get_json()["error"] == SERVER_ERROR_EN
    date, index = response.get_json()["entry"].split("/")[-2:]
    stored = failing_app.extensions["chatlog"].get(date, int(index))
    assert (stored.status, stored.error_kind, stored.error_params, stored.error) == (
        "failed",
        "server_error",
        {"status": 503},
        SERVER_ERROR_EN,
    )


def test_the_entry_page_says_the_failure_in_the_readers_language(failing_app):
    client = failing_app.test_client()
    permalink = client.post("/generate_code", data={"prompt": "Sort a list"}).get_json()["entry"]

    german = page_text(client, permalink, GERMAN)
    english = page_text(client, permalink, ENGLISH)

    assert "Erzeugen fehlgeschlagen." in german and SERVER_ERROR_DE in german
    assert SERVER_ERROR_EN not in german
    assert "Generation failed." in english and SERVER_ERROR_EN in english


def test_the_api_and_the_exports_keep_the_english_sentence_whatever_the_reader_asks(failing_app):
    client = failing_app.test_client()
    permalink = client.post("/generate_code", data={"prompt": "Sort a list"}).get_json()["entry"]
    date = permalink.split("/")[-2]

    api = client.get(permalink, headers={**GERMAN, "Accept": "application/json"})
    seed = client.get("/chatlog.json", headers=GERMAN)
    full = client.get("/chatlog.full.json", headers=GERMAN)

    assert (api.status_code, api.get_json()["error"]) == (200, SERVER_ERROR_EN)
    assert seed.status_code == 200
    assert seed.get_json()[date] == [{"prompt": "Sort a list", "response": "", "error": SERVER_ERROR_EN}]
    assert full.status_code == 200
    [row] = full.get_json()
    assert (row["error"], row["error_kind"], row["error_params"]) == (
        SERVER_ERROR_EN,
        "server_error",
        {"status": 503},
    )


def test_a_rate_limit_with_retry_after_stores_the_wait_as_a_value(make_app, upstream):
    upstream.script(
        CHAT,
        Reply(status=429, json=error_body("slow down", "rate_limit_exceeded"), headers={"Retry-After": "7"}),
    )
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_code", data={"prompt": "Sort a list"})

    assert response.status_code == 500
    assert (
        response.get_json()["error"]
        == "The upstream is rate limiting requests (429). Try again in 7 seconds."
    )
    german = page_text(client, response.get_json()["entry"], GERMAN)
    assert "Der Anbieter begrenzt die Anfragen (429). Versuche es in 7 Sekunden noch einmal." in german


def test_a_stored_failure_is_said_in_german_after_the_store_is_opened_again(make_app):
    first = make_app()
    store = first.extensions["chatlog"]
    entry = store.fail(store.begin("code", "Sort a list", "m"), failure("server_error", status=503))
    store.close()

    client = make_app().test_client()  # the same DATA_DIR or database, read afresh

    assert SERVER_ERROR_DE in page_text(client, entry.permalink, GERMAN)


# -- entries stored before kinds existed -------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "german"),
    [
        # a fixed sentence: the catalogue has it as it is
        ("The upstream returned an empty answer.", "Der Anbieter hat eine leere Antwort geliefert."),
        # a sentence with a value, as the versions before kinds wrote it: recognised, then translated
        (
            "The upstream had a server error (502). Try again in a moment.",
            "Beim Anbieter ist ein Serverfehler aufgetreten (502). Versuche es gleich noch einmal.",
        ),
        # a sentence the app does not know: shown as it was written
        ("A failure worded by some older version.", "A failure worded by some older version."),
    ],
)
def test_an_entry_with_only_an_english_sentence_keeps_being_shown(make_app, sentence, german):
    app = make_app()
    store = app.extensions["chatlog"]
    entry = store.fail(store.begin("code", "Sort a list", "m"), sentence)  # a plain string: no kind

    assert (entry.error_kind, entry.error_params, entry.error) == (None, {}, sentence)
    text = page_text(app.test_client(), entry.permalink, GERMAN)
    assert "Erzeugen fehlgeschlagen." in text and german in text


def _drop_kind_fields(history: Path) -> int:
    """Rewrite the TinyDB day documents as a version before kinds wrote them: entries without
    `error_kind` and `error_params`. Returns how many entries were rewritten."""
    rewritten = 0
    for path in sorted(history.glob("????-??-??.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for raw in document["entries"].values():
            raw.pop("error_kind")
            raw.pop("error_params")
            rewritten += 1
        path.write_text(json.dumps(document), encoding="utf-8")
    return rewritten


@pytest.mark.parametrize("history_backend", ["tinydb"])
def test_a_tinydb_day_document_from_before_kinds_is_read_and_shown_in_german(make_app, data_dir):
    old = make_app()
    store = old.extensions["chatlog"]
    entry = store.fail(store.begin("code", "Sort a list", "m"), "The upstream returned no answer.")
    assert store.checkpoint(entry.date)  # the journal folded into the day's document
    store.close()
    assert _drop_kind_fields(data_dir / "history") == 1

    app = make_app()
    stored = app.extensions["chatlog"].get(entry.date, entry.index)

    assert (stored.status, stored.error, stored.error_kind, stored.error_params) == (
        "failed",
        "The upstream returned no answer.",
        None,
        {},
    )
    assert "Der Anbieter hat keine Antwort geliefert." in page_text(
        app.test_client(), entry.permalink, GERMAN
    )


@pytest.mark.parametrize("history_backend", ["tinydb"])
def test_a_postgresql_row_from_revision_0004_gains_the_columns_and_is_shown_in_german(
    make_app, pg_at_revision
):
    url = pg_at_revision(
        "0004",
        (
            "INSERT INTO entries (day, idx, id, created_at, kind, prompt, response, model, status,"
            " error, turn) VALUES ('2026-11-30', 0, :id, '2026-11-30T09:00:00+00:00', 'code',"
            " 'Sort a list', '', 'm', 'failed', :error, 1)",
            {"id": "a" * 32, "error": "The upstream had a server error (500). Try again in a moment."},
        ),
        ("INSERT INTO days (day, next_idx) VALUES ('2026-11-30', 1)", {}),
    )

    app = make_app(history_url=url)  # the app upgrades the schema to 0005 (and on) as it starts
    stored = app.extensions["chatlog"].get("2026-11-30", 0)

    assert (stored.error_kind, stored.error_params) == (None, {})
    with app.extensions["chatlog"].engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() >= "0005"
    text = page_text(app.test_client(), "/chatlog/2026-11-30/0", GERMAN)
    assert "Beim Anbieter ist ein Serverfehler aufgetreten (500). Versuche es gleich noch einmal." in text
