"""Nothing stays pending forever: an answer that a server which died left unfinished is marked
interrupted (failed, prompt kept, Retry offered) at start-up and periodically, in History, the
exports and the API alike; an answer that may still arrive is left alone."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.generation import INTERRUPTED
from app.history import ChatLog, Entry

from ..support.apps import BACKENDS
from ..support.htmx import HX

JSON = {"Accept": "application/json"}


@pytest.fixture(params=BACKENDS)
def history_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def left_pending(app, minutes_ago: float, prompt: str = "asked before the server died") -> Entry:
    """A pending entry made `minutes_ago` by a server that is gone (no claim, no answer)."""
    store = app.extensions["chatlog"]
    created = datetime.now().astimezone() - timedelta(minutes=minutes_ago)
    real_clock, store.clock = store.clock, lambda: created
    try:
        return store.begin("code", prompt, "demo")
    finally:
        store.clock = real_clock


def entry_json(client, entry: Entry) -> dict:
    response = client.get(entry.permalink, headers=JSON)
    assert response.status_code == 200
    return response.get_json()


def test_an_answer_left_pending_by_a_dead_server_is_marked_interrupted(demo_app):
    entry = left_pending(demo_app, minutes_ago=30)

    reaped = demo_app.extensions["generator"].reap_interrupted()

    client = demo_app.test_client()
    data = entry_json(client, entry)
    assert reaped == 1
    assert (data["status"], data["error"], data["prompt"]) == ("failed", INTERRUPTED, entry.prompt)


def test_the_interrupted_answer_shows_as_failed_with_retry_in_history_and_the_exports(demo_app):
    entry = left_pending(demo_app, minutes_ago=30)
    demo_app.extensions["generator"].reap_interrupted()
    client = demo_app.test_client()

    page = client.get(entry.permalink).get_data(as_text=True)
    seed = client.get("/chatlog.json").get_json()
    full = {(r["date"], r["index"]): r for r in client.get("/chatlog.full.json").get_json()}

    assert "Retry" in page and "interrupted" in page
    assert {"prompt": entry.prompt, "response": "", "error": INTERRUPTED} in seed[entry.date]
    assert full[(entry.date, entry.index)]["status"] == "failed"


def test_a_recent_pending_answer_is_left_alone(demo_app):
    entry = left_pending(demo_app, minutes_ago=0.1)

    assert demo_app.extensions["generator"].reap_interrupted() == 0
    assert entry_json(demo_app.test_client(), entry)["status"] == "pending"


def test_an_answer_still_streamed_under_a_live_claim_is_left_alone(demo_app):
    entry = left_pending(demo_app, minutes_ago=30)
    assert demo_app.extensions["chatlog"].claims.claim(entry.id)

    assert demo_app.extensions["generator"].reap_interrupted() == 0
    assert entry_json(demo_app.test_client(), entry)["status"] == "pending"


@pytest.mark.parametrize("history_backend", ["tinydb"])
def test_the_first_request_of_a_started_server_reaps_in_the_background(make_app, data_dir: Path):
    # Left by the previous server on this DATA_DIR.
    before = datetime.now().astimezone() - timedelta(hours=2)
    entry = ChatLog(data_dir, clock=lambda: before).begin("code", "the server died here", "demo")
    app = make_app()
    client = app.test_client()

    assert client.get("/healthz").status_code == 200
    for _ in range(500):  # bounded: the run happens in a background thread
        if entry_json(client, entry)["status"] != "pending":
            break
        time.sleep(0.01)

    assert entry_json(client, entry)["status"] == "failed"
    history = client.get("/chatlog", headers=HX).get_data(as_text=True)
    assert "the server died here" in history
