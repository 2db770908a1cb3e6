"""English by default, German when the browser asks for it or the user switches."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po
from playwright.sync_api import expect

from . import test_browser
from .conftest import HX

browser = test_browser.browser
open_page = test_browser.open_page

GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}
CATALOGUE = Path(__file__).resolve().parent.parent / "translations" / "de" / "LC_MESSAGES" / "messages.po"


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


def test_every_message_of_the_german_catalogue_is_translated():
    with CATALOGUE.open("rb") as fh:
        catalogue = read_po(fh, locale="de")

    untranslated = [
        m.id for m in catalogue if m.id and not all(m.string if isinstance(m.string, tuple) else [m.string])
    ]
    assert untranslated == []


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
