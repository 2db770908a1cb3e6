"""Branches, pictures in and pictures edited in a real browser (Debian's chromium through
Playwright, against a live server): Edit and Regenerate a turn, switch versions, paste a picture
from the clipboard, attach one with the file input or by dropping it, edit an image; by keyboard
where the UI promises it, with no console error, and nothing axe objects to.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from ..support.browser import assert_no_axe_violations_light_and_dark, results
from ..support.conversations import CHAT, sent_messages, stored, turn_messages
from ..support.upstream import Reply, png_bytes

pytestmark = pytest.mark.browser

WRITE_CLIPBOARD = """async b64 => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  await navigator.clipboard.write([new ClipboardItem({"image/png": new Blob([bytes], {type: "image/png"})})]);
}"""

DROP_FILE = """([selector, b64]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
  const target = document.querySelector(selector);
  for (const type of ["dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
  }
}"""


def prompt_of(page: Page):
    return page.get_by_role("textbox", name="Prompt")


def newest(page: Page):
    return results(page).locator("article.entry").first


def wait_done(page: Page, count: int) -> None:
    expect(results(page).locator("article.status-done")).to_have_count(count, timeout=15_000)


def answered(open_page, app, prompt: str = "Write a Python function that adds two numbers"):
    """The generator in a browser with one code answer in Results; (watched page, page, prompt box)."""
    watched = open_page(app)
    page = watched.page
    box = prompt_of(page)
    box.fill(prompt)
    box.press("Control+Enter")
    wait_done(page, 1)
    return watched, page, box


def permalink(article) -> str:
    return article.locator("a.permalink").get_attribute("href")


def picture_file(tmp_path: Path, size=(64, 48)) -> Path:
    path = tmp_path / "screenshot.png"
    path.write_bytes(png_bytes(size))
    return path


# -- branches --------------------------------------------------------------------------------------


def test_edit_a_turn_by_keyboard_then_switch_between_its_versions(open_page, openai_app, upstream):
    app = openai_app()
    upstream.script(CHAT, *(Reply(chunks=[f"Answer {n}"]) for n in (1, 2, 3)))
    watched, page, prompt = answered(open_page, app, "How do I read a CSV file?")
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    expect(page.locator("#followup")).to_contain_text("Follow-up (turn 2)")
    expect(prompt).to_be_focused()
    page.keyboard.type("With a semicolon separator?")
    page.keyboard.press("Control+Enter")
    wait_done(page, 2)
    second = permalink(newest(page))

    page.keyboard.press("Escape")
    expect(prompt).not_to_be_focused()
    page.keyboard.press("e")
    chip = page.locator("#followup")
    expect(chip).to_contain_text("Editing turn 2")
    expect(prompt).to_have_value("With a semicolon separator?")
    expect(prompt).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("With a tab separator?")
    page.keyboard.press("Control+Enter")
    wait_done(page, 3)

    version = newest(page)
    expect(version).to_contain_text("With a tab separator?")
    expect(version.get_by_role("navigation", name="Turn 2, version 2 of 2")).to_contain_text("2 / 2")
    check = app.test_client()
    first = stored(check, stored(check, second)["parent"])
    assert sent_messages(upstream) == [
        *turn_messages(first),
        {"role": "user", "content": "With a tab separator?"},
    ]
    expect(chip).to_contain_text("Follow-up (turn 3)")  # the form goes on from the new version

    version.get_by_role("link", name="Previous version").click()
    expect(page).to_have_url(re.compile(re.escape(second) + "$"))
    current = page.locator("article[aria-current=true]")
    expect(current).to_contain_text("With a semicolon separator?")
    expect(current.get_by_role("navigation", name="Turn 2, version 1 of 2")).to_be_visible()
    current.get_by_role("link", name="Next version").click()
    expect(page.locator("article[aria-current=true]")).to_contain_text("With a tab separator?")
    page.go_back()
    expect(page).to_have_url(re.compile(re.escape(second) + "$"))
    watched.assert_clean()


def test_escape_cancels_editing_and_gives_back_the_draft(open_page, demo_app):
    watched, page, prompt = answered(open_page, demo_app)
    prompt.fill("my unfinished draft")
    newest(page).get_by_role("link", name="Edit", exact=True).click()
    expect(page.locator("#followup")).to_contain_text("Editing turn 1")
    expect(prompt).to_have_value("Write a Python function that adds two numbers")
    page.keyboard.press("Escape")
    expect(page.locator("#followup")).not_to_contain_text("Editing")
    expect(prompt).to_have_value("my unfinished draft")
    expect(prompt).to_be_focused()
    watched.assert_clean()


def test_r_regenerates_the_newest_answer_and_leaves_the_prompt_alone(open_page, demo_app):
    watched, page, prompt = answered(open_page, demo_app)
    prompt.fill("something I am still typing")
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    wait_done(page, 2)
    expect(newest(page).get_by_role("navigation", name=re.compile("version 2 of 2"))).to_be_visible()
    expect(prompt).to_have_value("something I am still typing")
    assert page.evaluate("window.__noReload") is True
    watched.assert_clean()


def test_regenerate_on_an_entry_page_opens_the_new_version(open_page, demo_app):
    client = demo_app.test_client()
    first = client.post("/generate_code", json={"prompt": "Write a shell one-liner"}).get_json()["entry"]
    watched = open_page(demo_app)
    page = watched.page
    page.goto(page.url.rstrip("/") + first)
    page.get_by_role("button", name="Regenerate").click()
    expect(page).not_to_have_url(re.compile(re.escape(first) + "$"))
    shown = page.get_by_role("article")  # a first turn's version: a conversation of its own line
    expect(shown).to_have_class(re.compile(r"\bstatus-done\b"), timeout=15_000)
    expect(shown.get_by_role("navigation", name="Turn 1, version 2 of 2")).to_be_visible()
    watched.assert_clean()


# -- pictures in -----------------------------------------------------------------------------------


def test_paste_a_picture_into_the_prompt_and_send_it(open_page, openai_app, upstream):
    app = openai_app()
    watched = open_page(app)
    page = watched.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    prompt = prompt_of(page)
    prompt.fill("Turn this screenshot into HTML")
    page.evaluate(WRITE_CLIPBOARD, base64.b64encode(png_bytes((64, 48))).decode())
    prompt.focus()
    page.keyboard.press("Control+V")
    chip = page.locator("#attachment")
    expect(chip).to_be_visible()
    expect(chip.get_by_role("img", name="The attached image")).to_have_attribute(
        "src", re.compile("^data:image/png")
    )
    expect(prompt).to_have_value("Turn this screenshot into HTML")  # the picture pasted no text
    prompt.press("Control+Enter")
    wait_done(page, 1)
    parts = upstream.calls(CHAT)[-1]["json"]["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[0]["text"] == "Turn this screenshot into HTML"
    expect(newest(page).get_by_role("img", name="Image sent with the prompt")).to_be_visible()
    expect(chip).to_be_hidden()  # sent and answered: the form is ready for the next prompt
    expect(prompt).to_have_value("")
    watched.assert_clean()


def test_attach_a_picture_with_the_keyboard_reachable_file_input(open_page, demo_app, tmp_path):
    watched = open_page(demo_app)
    page = watched.page
    prompt = prompt_of(page)
    prompt.fill("What is in this picture?")
    attach = page.get_by_label("Attach image")
    for _ in range(10):  # Tab from the prompt reaches the file input
        page.keyboard.press("Tab")
        if attach.evaluate("el => el === document.activeElement"):
            break
    expect(attach).to_be_focused()
    attach.set_input_files(picture_file(tmp_path))
    chip = page.locator("#attachment")
    expect(chip).to_contain_text("screenshot.png")
    page.get_by_role("button", name="Remove image").click()
    expect(chip).to_be_hidden()
    attach.set_input_files(picture_file(tmp_path))
    prompt.press("Control+Enter")
    wait_done(page, 1)
    expect(newest(page)).to_contain_text("The attached image is 64×48 pixels.")
    expect(newest(page).get_by_role("img", name="Image sent with the prompt")).to_be_visible()
    watched.assert_clean()


def test_drop_a_picture_on_the_form(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    page.evaluate(DROP_FILE, ["#prompt-form", base64.b64encode(png_bytes((20, 10))).decode()])
    expect(page.locator("#attachment")).to_contain_text("dropped.png")
    prompt_of(page).fill("Describe it")
    prompt_of(page).press("Control+Enter")
    wait_done(page, 1)
    expect(newest(page)).to_contain_text("The attached image is 20×10 pixels.")
    watched.assert_clean()


def test_a_refused_picture_keeps_the_prompt_and_the_picture(open_page, demo_app, tmp_path):
    watched = open_page(demo_app)
    page = watched.page
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"these are words, not pixels")
    prompt = prompt_of(page)
    prompt.fill("Keep this prompt")
    page.get_by_label("Attach image").set_input_files(fake)
    page.get_by_role("button", name="Generate code").click()
    expect(results(page).get_by_role("alert")).to_have_text(
        "The attached file is not a PNG, JPEG, WEBP or GIF image."
    )
    expect(prompt).to_have_value("Keep this prompt")
    expect(page.locator("#attachment")).to_contain_text("notes.png")
    watched.assert_clean()


def test_a_picture_too_large_to_send_is_refused_before_it_is_sent(open_page, demo_app, tmp_path):
    watched = open_page(demo_app)
    page = watched.page
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_bytes() + b"\0" * (20 * 1024 * 1024))
    page.get_by_label("Attach image").set_input_files(huge)
    expect(page.locator("#attachment-error")).to_have_text("The attached image is larger than 20 MB.")
    expect(page.locator("#attachment")).to_be_hidden()
    expect(page.get_by_label("Attach image")).to_have_value("")
    watched.assert_clean()


# -- pictures edited -------------------------------------------------------------------------------


def test_edit_an_image_by_keyboard(open_page, demo_app):
    watched = open_page(demo_app)
    page = watched.page
    prompt = prompt_of(page)
    prompt.fill("A red fox in the snow")
    prompt.press("Control+Shift+Enter")
    expect(results(page).get_by_role("img", name=re.compile("red fox"))).to_be_visible(timeout=15_000)
    page.keyboard.press("Escape")
    page.keyboard.press("f")  # on an image of a model that edits: Edit image
    chip = page.locator("#followup")
    expect(chip).to_contain_text("Editing the image")
    expect(chip.get_by_role("img", name="The image to edit")).to_be_visible()
    expect(prompt).to_be_focused()
    page.keyboard.type("at night")
    page.keyboard.press("Control+Shift+Enter")
    edited = newest(page)
    expect(edited).to_contain_text("at night", timeout=15_000)
    expect(edited.get_by_role("img", name="Image sent with the prompt")).to_be_visible()
    expect(edited.get_by_role("img", name=re.compile("Generated image: at night"))).to_be_visible()
    expect(chip).to_contain_text("Editing the image “at night”")  # the next edit starts from it
    page.keyboard.press("Escape")
    expect(chip).not_to_contain_text("Editing")
    watched.assert_clean()


def test_edit_image_from_the_gallery_opens_the_generator_in_edit_mode(open_page, demo_app):
    client = demo_app.test_client()
    first = client.post("/generate_image", json={"prompt": "A lighthouse"}).get_json()
    watched = open_page(demo_app)
    page = watched.page
    page.goto(page.url.rstrip("/") + "/images")
    page.get_by_role("link", name=re.compile("Edit image")).click()
    expect(page.locator("#followup")).to_contain_text("Editing the image “A lighthouse”")
    expect(page.locator("#followup input[name=source]")).to_have_value(first["entry"])
    watched.assert_clean()


# -- help and accessibility ------------------------------------------------------------------------


def test_the_help_dialog_lists_e_and_r(new_tab, demo_app):
    page = new_tab(demo_app).page
    prompt_of(page).press("Escape")
    page.keyboard.press("?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    assert {"e", "r"} <= {k.strip() for k in dialog.locator("kbd").all_inner_texts()}
    text = dialog.inner_text().lower()
    assert "edit the focused or newest entry" in text and "regenerate the focused or newest entry" in text


def branched_demo_page(new_tab, demo_app, tmp_path):
    """The generator with a picture attached, a turn being edited and versions in Results."""
    tab = new_tab(demo_app)
    page = tab.page
    prompt = prompt_of(page)
    prompt.fill("Write a Python function that adds two numbers")
    prompt.press("Control+Enter")
    wait_done(page, 1)
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    wait_done(page, 2)
    page.get_by_label("Attach image").set_input_files(picture_file(tmp_path))
    expect(page.locator("#attachment img")).to_have_attribute("src", re.compile("^data:"))
    newest(page).get_by_role("link", name="Edit", exact=True).click()
    expect(page.locator("#followup")).to_contain_text("Editing turn 1")
    return tab


def test_no_axe_violations_while_editing_with_a_picture_and_versions(new_tab, demo_app, axe_source, tmp_path):
    tab = branched_demo_page(new_tab, demo_app, tmp_path)
    assert_no_axe_violations_light_and_dark(tab.page, axe_source, tab.page.url)
    tab.goto(permalink(newest(tab.page)))
    expect(tab.page.get_by_role("navigation", name=re.compile("version"))).to_be_visible()
    assert_no_axe_violations_light_and_dark(tab.page, axe_source, tab.page.url)


def test_no_axe_violations_on_an_edited_image_and_the_gallery(new_tab, demo_app, axe_source):
    client = demo_app.test_client()
    first = client.post("/generate_image", json={"prompt": "A lighthouse"}).get_json()
    edit = client.post("/generate_image", json={"prompt": "At night", "source": first["entry"]}).get_json()
    tab = new_tab(demo_app, edit["entry"])
    expect(tab.page.get_by_role("img", name="Image sent with the prompt")).to_be_visible()
    assert_no_axe_violations_light_and_dark(tab.page, axe_source, tab.page.url)
    tab.goto(f"/?source={first['entry']}")
    expect(tab.page.locator("#followup")).to_contain_text("Editing the image")
    assert_no_axe_violations_light_and_dark(tab.page, axe_source, tab.page.url)
    tab.goto("/images")
    expect(tab.page.get_by_role("link", name=re.compile("Edit image")).first).to_be_visible()
    assert_no_axe_violations_light_and_dark(tab.page, axe_source, tab.page.url)
    assert tab.console_errors == []
