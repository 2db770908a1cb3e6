"""Regression tests for faults found in review: each names the behaviour it guards."""

from __future__ import annotations

import base64
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from app.history import ChatLog

from .support.apps import TEST_KEY
from .support.htmx import HX
from .support.upstream import Reply, png_bytes

JSON = {"Accept": "application/json"}


def test_language_switch_never_redirects_off_site(demo_client):
    response = demo_client.get("/%09/evil.example?lang=de")

    location = response.headers.get("Location", "")
    assert response.status_code == 404 or (location.startswith("/") and not location.startswith("//"))
    assert "evil.example" not in location


def test_login_next_with_a_control_character_stays_on_site(make_app):
    client = make_app(app_password="correct horse battery").test_client()

    response = client.post("/login", data={"password": "correct horse battery", "next": "/\t/evil.example"})

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_the_stream_of_an_image_entry_is_not_served(demo_app):
    entry = demo_app.extensions["chatlog"].begin("image", "a red fox", "demo")

    response = demo_app.test_client().get(f"{entry.permalink}/stream")

    assert response.status_code == 404
    assert demo_app.extensions["chatlog"].get(entry.date, entry.index).status == "pending"


def test_deleting_a_day_keeps_an_earlier_days_turn_in_history(data_dir):
    day_one = datetime(2025, 3, 1, 9, tzinfo=UTC)
    clock = {"now": day_one}
    chatlog = ChatLog(data_dir, clock=lambda: clock["now"])
    first = chatlog.begin("code", "first", "m")
    first = chatlog.finish(first, "answer")
    clock["now"] = day_one + timedelta(days=1)
    second = chatlog.finish(chatlog.begin("code", "second", "m", parent=first), "answer")
    chatlog.finish(chatlog.begin("code", "third", "m", parent=second), "answer")

    chatlog.delete_day(second.date)

    listed = [e.permalink for day in chatlog.page(10).days for e in day.entries]
    assert listed == [first.permalink]


def test_imported_indexes_are_never_handed_out_again_after_the_day_is_destroyed(data_dir):
    chatlog = ChatLog(data_dir, clock=lambda: datetime(2025, 3, 1, 9, tzinfo=UTC))
    chatlog.import_seed({"2025-03-01": [{"prompt": f"p{n}", "response": "r"} for n in range(20)]})
    for n in range(5):
        chatlog.begin("code", f"new {n}", "m")
    (data_dir / "history" / "2025-03-01.json").write_bytes(b"\x00")

    entry = chatlog.begin("code", "after the damage", "m")

    assert entry.index >= 25


def test_an_unfinished_entry_exports_with_an_error(data_dir):
    chatlog = ChatLog(data_dir)
    chatlog.begin("code", "never answered", "m")

    [row] = next(iter(chatlog.export_seed().values()))

    assert row["error"]


def test_an_image_request_to_a_silent_upstream_ends_at_the_timeout(make_app):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    try:
        app = make_app(
            openai_api_key=TEST_KEY,
            openai_base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/v1",
            upstream_timeout=1.0,
        )
        response = app.test_client().post("/generate_image", data={"prompt": "a fox"})
    finally:
        stop.set()
        for conn in accepted:
            conn.close()
        silent.close()

    assert response.status_code == 500
    assert "time" in response.get_json()["error"].lower()


def test_an_image_deleted_while_it_is_generated_leaves_no_file(make_app, upstream, data_dir):
    image = {"created": 0, "data": [{"b64_json": base64.b64encode(png_bytes()).decode()}]}
    upstream.script("/v1/images/generations", Reply(delay=1.0, json=image))
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url)
    results: dict = {}

    def generate() -> None:
        results["response"] = app.test_client().post("/generate_image", data={"prompt": "a fox"})

    worker = threading.Thread(target=generate)
    worker.start()
    chatlog = app.extensions["chatlog"]
    for _ in range(100):  # bounded: until the pending entry exists
        entries = [e for day in chatlog.days() for e in day.entries]
        if entries:
            break
        time.sleep(0.02)
    app.test_client().delete(entries[0].permalink)
    worker.join(timeout=10)

    assert results["response"].status_code == 410
    assert list((data_dir / "images").glob("*.png")) == []
    assert list((data_dir / "images").glob("*.webp")) == []


def test_a_long_prompt_within_the_limit_is_not_refused_as_too_large(make_app):
    client = make_app(max_prompt_chars=400_000).test_client()
    prompt = "ü" * 350_000  # 700 KB of UTF-8, about 2.1 MB form-encoded

    response = client.post("/generate_code", data={"prompt": prompt})

    assert response.status_code == 200


def test_htmx_error_for_a_stream_of_a_missing_entry_is_a_fragment(demo_client):
    response = demo_client.get("/chatlog/2025-01-01/0/stream", headers=HX)

    assert response.headers.get("X-Error-Status") == "404"
