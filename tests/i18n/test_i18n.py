"""English by default, German when the browser asks for it or the user switches."""

from __future__ import annotations

import io
import re
from datetime import date

from playwright.sync_api import expect

from ..support.apps import TEST_KEY
from ..support.htmx import HX
from ..support.upstream import Reply, error_body

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def test_the_page_is_english_without_a_language_preference(demo_client):
    html = demo_client.get("/").get_data(as_text=True)

    assert '<html lang="en">' in html
    assert "Generate code" in html


def test_accept_language_de_gives_the_german_page(demo_client):
    html = demo_client.get("/", headers=GERMAN).get_data(as_text=True)

    assert '<html lang="de">' in html
    assert "Code erzeugen" in html and "Bild erzeugen" in html
    assert ">Verlauf<" in html


def test_the_language_link_remembers_german_and_returns_to_the_same_page(demo_client):
    response = demo_client.get("/chatlog?q=fox&lang=de")

    assert response.status_code == 302
    assert response.headers["Location"] == "/chatlog?q=fox"
    assert "lang=de" in response.headers["Set-Cookie"]
    assert '<html lang="de">' in demo_client.get("/").get_data(as_text=True)


def test_dates_are_written_in_the_readers_language(demo_client):
    demo_client.post("/generate_code", data={"prompt": "hallo"})

    html = demo_client.get("/", headers=GERMAN).get_data(as_text=True)

    heading = re.search(r'<time datetime="(\d{4})-\d{2}-\d{2}">([^<]+)</time>', html)
    assert heading is not None
    months = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September")
    months += ("Oktober", "November", "Dezember")
    assert any(month in heading.group(2) for month in months)


def test_errors_shown_in_the_page_are_german(demo_client):
    html = demo_client.post("/generate_code", data={"prompt": " "}, headers={**HX, **GERMAN}).get_data(
        as_text=True
    )

    assert "Bitte gib einen Prompt ein." in html


def test_the_json_api_stays_english_whatever_the_browser_asks(demo_client):
    response = demo_client.post("/generate_code", data={"prompt": " "}, headers=GERMAN)

    assert response.get_json() == {"error": "Please enter a prompt."}


def test_a_german_browser_gets_german_controls(browser, demo_app, live_server):
    server = live_server(demo_app)
    context = browser.new_context(locale="de-DE")
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        expect(page.get_by_role("button", name="Code erzeugen")).to_be_visible()
        expect(page.get_by_role("complementary", name="Verlauf")).to_be_visible()
        page.get_by_role("textbox", name="Prompt").press("Escape")  # leave the (autofocused) prompt
        page.keyboard.press("?")
        expect(page.get_by_role("dialog", name="Tastenkürzel")).to_contain_text(
            "Ein Bild aus dem Prompt erzeugen"
        )
    finally:
        context.close()


# -- messages with values, in the German UI ------------------------------------------------------


def test_the_import_notice_is_german(demo_client):
    upload = {"file": (io.BytesIO(b'{"2024-08-29": [{"prompt": "p", "response": "r"}]}'), "chatlog.json")}

    response = demo_client.post("/chatlog/import", data=upload, headers={**HX, **GERMAN})

    assert response.status_code == 200
    assert "1 Einträge importiert, 0 bereits vorhandene übersprungen." in response.get_data(as_text=True)


def test_a_too_long_prompt_is_refused_in_german_in_the_page_and_in_english_in_json(make_app):
    client = make_app(max_prompt_chars=10).test_client()

    page = client.post("/generate_code", data={"prompt": "x" * 12}, headers={**HX, **GERMAN})
    api = client.post("/generate_code", data={"prompt": "x" * 12}, headers=GERMAN)

    assert (page.status_code, page.headers["X-Error-Status"]) == (200, "400")
    assert "Der Prompt ist zu lang (12 Zeichen; die Grenze ist 10)." in page.get_data(as_text=True)
    assert api.status_code == 400
    assert api.get_json() == {"error": "The prompt is too long (12 characters; the limit is 10)."}


def test_the_day_delete_notice_is_german(demo_client):
    for prompt in ("one", "two"):
        assert demo_client.post("/generate_code", data={"prompt": prompt}).status_code == 200
    today = date.today().isoformat()

    response = demo_client.delete(f"/chatlog/{today}", headers={**HX, **GERMAN})

    assert response.status_code == 200
    assert f"2 Einträge vom {today} gelöscht." in response.get_data(as_text=True)


def test_the_rate_limit_message_is_german_in_the_page(make_app):
    client = make_app(rate_limit="1 per minute").test_client()
    assert client.post("/generate_code", data={"prompt": "one"}).status_code == 200

    response = client.post("/generate_code", data={"prompt": "two"}, headers={**HX, **GERMAN})

    assert (response.status_code, response.headers["X-Error-Status"]) == (200, "429")
    text = response.get_data(as_text=True)
    wait = response.headers["Retry-After"]
    assert f"Zu viele Anfragen (die Grenze ist 1 per 1 minute). Bitte versuche es in {wait} Sekunden" in text


def test_an_unknown_entry_is_a_german_404_page(demo_client):
    response = demo_client.get("/chatlog/2024-01-31/5", headers=GERMAN)

    assert response.status_code == 404
    text = response.get_data(as_text=True)
    assert "Nicht gefunden" in text and "Am 2024-01-31 gibt es keinen Verlaufseintrag 5." in text


def test_an_upstream_failure_stored_on_an_entry_is_shown_in_german_on_its_page(make_app, upstream):
    upstream.script("/v1/chat/completions", Reply(status=502, json=error_body("bad gateway")))
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    failed = client.post("/generate_code", data={"prompt": "Sort a list"}, headers=GERMAN)
    assert failed.status_code == 500
    assert failed.get_json()["error"] == "The upstream had a server error (502). Try again in a moment."

    response = client.get(failed.get_json()["entry"], headers=GERMAN)

    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "Beim Anbieter ist ein Serverfehler aufgetreten (502). Versuche es gleich noch einmal." in text
    assert "The upstream had a server error" not in text
