"""Upstream faults, each scripted on the local OpenAI-compatible server and reached over real HTTP.

For every fault: JSON 500 with a short human `{"error"}` (never the upstream's raw text), the
prompt kept in the history marked failed, no half-written image file, and the app keeps serving.
Each fault has its own message. htmx code requests stream, so each chat fault also has a streamed
form (the same fault as the upstream shows it to a `"stream": true` request).
"""

from __future__ import annotations

import base64
import email.utils
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from ..support.apps import TEST_KEY
from ..support.htmx import HX, StreamedAnswer, htmx_generate_code
from ..support.ports import free_port
from ..support.upstream import FakeUpstream, Reply, chat_completion, error_body, png_bytes

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
RAW = "RAW-UPSTREAM-TEXT-91c2"  # planted in every upstream body; must never reach the user
# Model text that arrived before a fault is the user's partial answer (kept and shown, marked
# incomplete), so it is not RAW.
PARTIAL = "partial answer text"
RAW_MARKERS = (RAW, "Error code", "Traceback", "{'error'", "httpx", "openai.", "Exception")
SMALL_TIMEOUT = 0.5
SLOW = 2.0  # well beyond SMALL_TIMEOUT


def image_reply(item: dict[str, Any]) -> Reply:
    return Reply(json={"created": 1, "data": [item]})


# -- the faults ------------------------------------------------------------------------------


@dataclass
class Fault:
    """A fault: which route, how to script the upstream (returns make_app overrides), and a
    pattern the human message must match to say what happened."""

    route: str
    setup: Callable[[FakeUpstream], dict[str, Any]]
    says: str
    reachable: bool = True  # False: the upstream cannot be reached at all afterwards either
    extra: dict[str, Any] = field(default_factory=dict)
    # The fault as a streamed request meets it (htmx code requests); None: same as `setup`.
    stream_setup: Callable[[FakeUpstream], dict[str, Any]] | None = None


def _chat_500(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(status=500, json=error_body(RAW)))
    return {}


def _chat_503(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(status=503, body=f"<html><h1>{RAW}</h1></html>".encode(), content_type="text/html"))
    return {}


def _chat_401(up: FakeUpstream) -> dict:
    up.script(
        CHAT,
        Reply(status=401, json=error_body(f"Incorrect API key provided. {RAW}", "invalid_request_error")),
    )
    return {}


def _chat_429(up: FakeUpstream) -> dict:
    up.script(
        CHAT,
        Reply(status=429, json=error_body(RAW, "rate_limit_exceeded"), headers={"Retry-After": "7"}),
    )
    return {}


def _chat_timeout(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(delay=SLOW, json=chat_completion(RAW)))
    return {"upstream_timeout": SMALL_TIMEOUT}


def _chat_refused(up: FakeUpstream) -> dict:
    return {"openai_base_url": f"http://127.0.0.1:{free_port()}/v1", "upstream_timeout": SMALL_TIMEOUT}


def _chat_dropped(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(drop_after=5, json=chat_completion(RAW)))
    return {}


def _chat_empty(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(json=chat_completion("")))
    return {}


def _chat_content_filter(up: FakeUpstream) -> dict:
    filtered = chat_completion(PARTIAL, finish_reason="content_filter")
    filtered["id"] = RAW
    up.script(CHAT, Reply(json=filtered))
    return {}


def _chat_malformed(up: FakeUpstream) -> dict:
    malformed = chat_completion(RAW)
    malformed["choices"][0]["message"] = None
    up.script(CHAT, Reply(json=malformed))
    return {}


def _stream_dropped(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=[PARTIAL, " and more", " and the rest"], cut_after=1))
    return {}


def _stream_empty(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=[]))
    return {}


def _stream_content_filter(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=[PARTIAL], finish_reason="content_filter"))
    return {}


def _stream_malformed(up: FakeUpstream) -> dict:
    body = f"data: {{{RAW} is not a chunk\n\ndata: [DONE]\n\n".encode()
    up.script(CHAT, Reply(body=body, content_type="text/event-stream"))
    return {}


def _image_no_data(up: FakeUpstream) -> dict:
    up.script(IMAGES, Reply(json={"created": 1, "data": []}))
    return {}


def _image_not_an_image(up: FakeUpstream) -> dict:
    url = up.serve_file("/files/page.html", f"<html>{RAW}</html>".encode(), "text/html")
    up.script(IMAGES, image_reply({"url": url}))
    return {}


def _image_truncated_b64(up: FakeUpstream) -> dict:
    truncated = png_bytes((256, 256))[:60]
    up.script(IMAGES, image_reply({"b64_json": base64.b64encode(truncated).decode()}))
    return {}


def _image_download_timeout(up: FakeUpstream) -> dict:
    up.script("/files/slow.png", Reply(delay=SLOW, body=png_bytes(), content_type="image/png"))
    up.script(IMAGES, image_reply({"url": up.origin + "/files/slow.png"}))
    return {"upstream_timeout": SMALL_TIMEOUT}


def _image_download_dropped(up: FakeUpstream) -> dict:
    up.script("/files/cut.png", Reply(drop_after=20, body=png_bytes((256, 256)), content_type="image/png"))
    up.script(IMAGES, image_reply({"url": up.origin + "/files/cut.png"}))
    return {}


FAULTS: dict[str, Fault] = {
    "chat-500": Fault("/generate_code", _chat_500, r"server|unavailable|\b500\b"),
    "chat-503": Fault("/generate_code", _chat_503, r"server|unavailable|\b503\b"),
    "chat-401": Fault("/generate_code", _chat_401, r"\bkey\b|auth"),
    "chat-429": Fault("/generate_code", _chat_429, r"\b7 seconds?\b"),
    "chat-timeout": Fault("/generate_code", _chat_timeout, r"\btime"),
    "chat-refused": Fault("/generate_code", _chat_refused, r"connect|reach", reachable=False),
    "chat-dropped": Fault(
        "/generate_code", _chat_dropped, r"interrupt|incomplete|cut off", stream_setup=_stream_dropped
    ),
    "chat-empty": Fault("/generate_code", _chat_empty, r"empty|no answer", stream_setup=_stream_empty),
    "chat-content-filter": Fault(
        "/generate_code",
        _chat_content_filter,
        r"filter|declin|refus|policy",
        stream_setup=_stream_content_filter,
    ),
    "chat-malformed": Fault(
        "/generate_code",
        _chat_malformed,
        r"went wrong|cannot read|malformed|unexpected",
        stream_setup=_stream_malformed,
    ),
    "image-no-data": Fault("/generate_image", _image_no_data, r"no image"),
    "image-not-an-image": Fault("/generate_image", _image_not_an_image, r"not (return )?an image"),
    "image-truncated-b64": Fault("/generate_image", _image_truncated_b64, r"damaged|truncated|incomplete"),
    "image-download-timeout": Fault("/generate_image", _image_download_timeout, r"\btime"),
    "image-download-dropped": Fault(
        "/generate_image", _image_download_dropped, r"interrupt|incomplete|could not be downloaded"
    ),
}
FAULT_IDS = list(FAULTS)


@dataclass
class Outcome:
    client: Any
    response: Any
    prompt: str


def provoke(name: str, make_app, upstream: FakeUpstream, headers: dict[str, str] | None = None) -> Outcome:
    fault = FAULTS[name]
    overrides = {"openai_api_key": TEST_KEY, "openai_base_url": upstream.url, **fault.setup(upstream)}
    client = make_app(**overrides).test_client()
    prompt = f"prompt that meets {name}"
    response = client.post(fault.route, data={"prompt": prompt}, headers=headers or {})
    return Outcome(client, response, prompt)


def provoke_streamed(name: str, make_app, upstream: FakeUpstream) -> tuple[Any, StreamedAnswer, str]:
    """The fault met by an htmx code request: the POST, then its event stream to the end."""
    fault = FAULTS[name]
    setup = fault.stream_setup or fault.setup
    overrides = {"openai_api_key": TEST_KEY, "openai_base_url": upstream.url, **setup(upstream)}
    client = make_app(**overrides).test_client()
    prompt = f"prompt that meets {name}"
    return client, htmx_generate_code(client, prompt), prompt


def error_of(outcome: Outcome) -> str:
    body = outcome.response.get_json(silent=True)
    assert isinstance(body, dict), outcome.response.get_data(as_text=True)[:300]
    return body.get("error")


# -- every fault -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_is_json_500_with_error(make_app, upstream, name):
    outcome = provoke(name, make_app, upstream)

    assert outcome.response.status_code == 500
    assert outcome.response.mimetype == "application/json"
    error = error_of(outcome)
    assert isinstance(error, str) and error.strip()


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_message_is_short_and_one_line(make_app, upstream, name):
    error = error_of(provoke(name, make_app, upstream))

    assert len(error) <= 200, error
    assert "\n" not in error


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_message_hides_raw_upstream_text(make_app, upstream, name):
    outcome = provoke(name, make_app, upstream)

    assert outcome.response.status_code == 500
    body = outcome.response.get_data(as_text=True)
    assert RAW not in body
    error = error_of(outcome)
    assert [m for m in RAW_MARKERS if m in error] == [], error


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_message_says_what_happened(make_app, upstream, name):
    error = error_of(provoke(name, make_app, upstream))

    assert re.search(FAULTS[name].says, error, re.IGNORECASE), error


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_keeps_prompt_in_history_marked_failed(make_app, upstream, name):
    outcome = provoke(name, make_app, upstream)

    rows = [row for day in outcome.client.get("/chatlog.json").get_json().values() for row in day]
    assert len(rows) == 1
    assert rows[0]["prompt"] == outcome.prompt
    assert rows[0].get("error") == error_of(outcome)
    assert RAW not in rows[0]["response"]


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_entry_permalink_shows_failed_status(make_app, upstream, name):
    outcome = provoke(name, make_app, upstream)

    permalink = outcome.response.get_json()["entry"]
    entry = outcome.client.get(permalink, headers={"Accept": "application/json"}).get_json()
    assert entry["status"] == "failed"
    assert entry["prompt"] == outcome.prompt


@pytest.mark.parametrize("name", FAULT_IDS)
def test_fault_leaves_no_image_or_temp_file(make_app, upstream, data_dir, name):
    outcome = provoke(name, make_app, upstream)

    assert outcome.response.status_code == 500
    assert error_of(outcome).strip()  # the fault was met, and answered with its message
    assert list(data_dir.rglob("*.tmp")) == []
    assert [p.name for p in (data_dir / "images").iterdir()] == []


@pytest.mark.parametrize("name", [n for n in FAULT_IDS if FAULTS[n].reachable])
def test_app_keeps_serving_after_fault(make_app, upstream, name):
    outcome = provoke(name, make_app, upstream)

    again = outcome.client.post(FAULTS[name].route, data={"prompt": "and now a normal request"})

    assert again.status_code == 200, again.get_data(as_text=True)
    assert set(again.get_json()) & {"code", "image_url"}


def test_app_keeps_serving_after_connection_refused(make_app, upstream):
    outcome = provoke("chat-refused", make_app, upstream)

    assert outcome.client.get("/healthz").status_code == 200
    assert outcome.client.get("/").status_code == 200
    assert outcome.client.get("/chatlog.json").status_code == 200
    assert outcome.client.post("/generate_code", data={"prompt": ""}).status_code == 400


CHAT_FAULT_IDS = [n for n in FAULT_IDS if FAULTS[n].route == "/generate_code"]
IMAGE_FAULT_IDS = [n for n in FAULT_IDS if FAULTS[n].route == "/generate_image"]


@pytest.mark.parametrize("name", CHAT_FAULT_IDS)
def test_fault_for_htmx_code_stream_shows_alert_and_keeps_prompt(make_app, upstream, name):
    _, answer, prompt = provoke_streamed(name, make_app, upstream)

    assert answer.post.mimetype == "text/html"
    final = answer.final
    assert 'role="alert"' in final
    assert prompt in final
    assert RAW not in answer.html
    assert RAW not in "".join(answer.tokens)


@pytest.mark.parametrize("name", IMAGE_FAULT_IDS)
def test_fault_for_htmx_image_shows_alert_and_keeps_prompt(make_app, upstream, name):
    outcome = provoke(name, make_app, upstream, headers=HX)

    html = outcome.response.get_data(as_text=True)
    assert outcome.response.mimetype == "text/html"
    assert 'role="alert"' in html
    assert outcome.prompt in html
    assert RAW not in html


def test_each_fault_has_its_own_message(make_app, upstream):
    messages = {name: error_of(provoke(name, make_app, upstream)) for name in FAULT_IDS}

    by_message: dict[str, list[str]] = {}
    for name, message in messages.items():
        by_message.setdefault(message, []).append(name)
    assert [names for names in by_message.values() if len(names) > 1] == []


def test_dropped_connection_is_not_reported_as_refused(make_app, upstream):
    dropped = error_of(provoke("chat-dropped", make_app, upstream))
    refused = error_of(provoke("chat-refused", make_app, upstream))

    assert dropped != refused


# -- rate limits -----------------------------------------------------------------------------


def test_rate_limit_sends_retry_after_header(make_app, upstream):
    outcome = provoke("chat-429", make_app, upstream)

    assert outcome.response.headers.get("Retry-After") == "7"


def test_rate_limit_is_not_retried_while_the_user_waits(make_app, upstream):
    provoke("chat-429", make_app, upstream)

    assert len(upstream.calls(CHAT)) == 1


def test_rate_limit_with_http_date_retry_after_passes_it_on(make_app, upstream):
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(minutes=10), usegmt=True)
    upstream.script(
        CHAT, Reply(status=429, json=error_body(RAW, "rate_limit_exceeded"), headers={"Retry-After": later})
    )
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_code", data={"prompt": "busy"})

    assert response.status_code == 500
    assert response.headers.get("Retry-After")


def test_long_retry_after_is_passed_on_not_sat_out(make_app, upstream):
    upstream.script(
        CHAT, Reply(status=429, json=error_body(RAW, "rate_limit_exceeded"), headers={"Retry-After": "3600"})
    )
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_code", data={"prompt": "busy"})

    assert response.status_code == 500
    assert response.headers.get("Retry-After") == "3600"
    assert len(upstream.calls(CHAT)) == 1


def test_rate_limit_without_retry_after_still_says_to_wait(make_app, upstream):
    upstream.script(CHAT, Reply(status=429, json=error_body(RAW, "rate_limit_exceeded")))
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_code", data={"prompt": "busy"})

    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert re.search(r"rate|too many|wait|later|shortly", response.get_json()["error"], re.IGNORECASE)


# -- images ----------------------------------------------------------------------------------


def test_image_without_data_logs_kein_bild(make_app, upstream, data_dir):
    provoke("image-no-data", make_app, upstream)

    assert "Kein Bild in der Antwort gefunden." in (data_dir / "app.log").read_text(encoding="utf-8")


def test_image_by_b64_json_works(make_app, upstream, data_dir):
    upstream.image_mode = "b64"
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_image", data={"prompt": "inline image"})

    assert response.status_code == 200
    served = client.get(response.get_json()["image_url"])
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.data)).size == (64, 48)


def test_image_b64_that_is_not_base64_is_a_failure(make_app, upstream):
    upstream.script(IMAGES, image_reply({"b64_json": "!!! not base64 !!!"}))
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_image", data={"prompt": "garbled"})

    assert response.status_code == 500
    assert response.get_json()["error"]


def test_image_url_returning_404_is_a_failure(make_app, upstream, data_dir):
    upstream.script(IMAGES, image_reply({"url": upstream.origin + "/files/missing.png"}))
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = client.post("/generate_image", data={"prompt": "gone"})

    assert response.status_code == 500
    assert [p.name for p in (data_dir / "images").iterdir()] == []


def test_failed_image_does_not_disturb_earlier_image(make_app, upstream):
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    first = client.post("/generate_image", data={"prompt": "good"}).get_json()["image_url"]
    before = client.get(first).data

    _image_truncated_b64(upstream)
    assert client.post("/generate_image", data={"prompt": "bad"}).status_code == 500

    assert client.get(first).data == before
