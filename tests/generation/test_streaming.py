"""Streamed code answers for htmx: POST /generate_code stores the prompt and answers with a
fragment that connects to GET /chatlog/<date>/<index>/stream, an SSE stream of `token` events
(escaped text), one `final` event (the rendered entry) and `done`.

The app reaches the local upstream (tests/support/upstream.py) with the real openai client over HTTP.
Where incremental delivery matters, a live server is read with `requests(stream=True)`. The tests
of what a stream leaves in the history (the stored answer, its usage, a failure, a stop, a second
listener, a browser that left) run on TinyDB files and a real PostgreSQL; the rest on TinyDB.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest
import requests

from app.config import Settings

from ..support.apps import ON_EVERY_ENGINE, TEST_KEY
from ..support.htmx import HX, StreamedAnswer, htmx_generate_code, parse_sse, sse_events
from ..support.ports import free_port
from ..support.serving import LiveServer
from ..support.upstream import FakeUpstream, Reply, chat_completion, error_body

CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
JSON = {"Accept": "application/json"}
DEFAULT_MODEL = Settings.chat_model  # make_app sets no CHAT_MODEL
SLOW_CHUNK = 0.2  # seconds between chunks of a deliberately slow answer
POLL = 0.05
POLL_LIMIT = 200  # polls of POLL seconds: 10 s at most


@pytest.fixture
def fresh_upstream():
    """An upstream of the test's own, for counting finished and abandoned streams exactly."""
    server = FakeUpstream().start()
    yield server
    server.stop()


def app_on(make_app, upstream: FakeUpstream, **overrides: Any):
    return make_app(**{"openai_api_key": TEST_KEY, "openai_base_url": upstream.url, **overrides})


def slow_words(count: int) -> list[str]:
    return [f"word{n} " for n in range(count)]


def chat_calls(upstream: FakeUpstream) -> int:
    return len(upstream.calls(CHAT))


def entry_url(stream_url: str) -> str:
    return stream_url.removesuffix("/stream")


def stored(client, stream_url: str) -> dict[str, Any]:
    return client.get(entry_url(stream_url), headers=JSON).get_json()


def wait_until(condition: Callable[[], bool]) -> bool:
    """Poll `condition` (bounded); True as soon as it holds."""
    for _ in range(POLL_LIMIT):
        if condition():
            return True
        time.sleep(POLL)
    return condition()


# -- reading a live stream ---------------------------------------------------------------------


def start_stream(server: LiveServer, prompt: str, **fields: str) -> str:
    """POST an htmx code request to the live server; returns the stream URL it connects to."""
    post = requests.post(
        server.url + "/generate_code", data={"prompt": prompt, **fields}, headers=HX, timeout=10
    )
    post.raise_for_status()
    match = re.search(r'sse-connect="([^"]+)"', post.text)
    assert match, post.text[:300]
    return match.group(1)


def open_stream(server: LiveServer, stream_url: str) -> requests.Response:
    return requests.get(
        server.url + stream_url, headers={"Accept": "text/event-stream"}, stream=True, timeout=10
    )


def final_of(events: list[tuple[str, str]]) -> str:
    return next((data for name, data in events if name == "final"), "")


# -- incremental delivery ------------------------------------------------------------------------


def test_tokens_arrive_before_the_upstream_has_finished(make_app, fresh_upstream, live_server):
    fresh_upstream.script(CHAT, Reply(chunks=slow_words(10), chunk_delay=SLOW_CHUNK))
    server = live_server(app_on(make_app, fresh_upstream))
    stream_url = start_stream(server, "stream slowly")

    with open_stream(server, stream_url) as response:
        events = sse_events(response)
        first = next(events)
        finished_when_first_read = fresh_upstream.streams_finished
        rest = list(events)

    assert first == ("token", "word0 ")
    assert finished_when_first_read == 0
    assert [name for name, _ in rest][-2:] == ["final", "done"]
    assert fresh_upstream.streams_finished == 1


def test_stream_sends_every_chunk_as_a_token_then_final_and_done(client, upstream):
    upstream.script(CHAT, Reply(chunks=["one ", "two ", "three"]))

    answer = htmx_generate_code(client, "count")

    assert [name for name, _ in answer.events] == ["token", "token", "token", "final", "done"]
    assert answer.tokens == ["one ", "two ", "three"]


def test_stream_response_is_event_stream_not_cached(client):
    post = client.post("/generate_code", data={"prompt": "headers"}, headers=HX)
    stream_url = re.search(r'sse-connect="([^"]+)"', post.get_data(as_text=True)).group(1)

    response = client.get(stream_url, headers={"Accept": "text/event-stream"})
    response.get_data()

    assert response.mimetype == "text/event-stream"
    assert "no-store" in response.headers.get("Cache-Control", "")


# -- untrusted model text ------------------------------------------------------------------------

HOSTILE = "<script>alert(1)</script>"


def test_token_data_is_html_escaped(client, upstream):
    upstream.script(CHAT, Reply(chunks=[HOSTILE]))

    answer = htmx_generate_code(client, "hostile tokens")

    assert "".join(answer.tokens) == "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_token_split_inside_a_tag_is_still_escaped(client, upstream):
    upstream.script(CHAT, Reply(chunks=["<scr", "ipt>alert(1)</", "script>"]))

    answer = htmx_generate_code(client, "split tag")

    assert answer.tokens == ["&lt;scr", "ipt&gt;alert(1)&lt;/", "script&gt;"]


def event_names_per_spec(body: str) -> list[str]:
    """The events an EventSource dispatches for `body`: CRLF, a lone CR and a lone LF all end a
    line, and a blank line dispatches the event if it had data."""
    names, name, has_data = [], "message", False
    for line in re.split(r"\r\n|\r|\n", body):
        if line == "":
            if has_data:
                names.append(name)
            name, has_data = "message", False
        elif line.startswith("event:"):
            name = line[6:].removeprefix(" ")
        elif line.startswith("data:"):
            has_data = True
    return names


def test_carriage_returns_in_model_text_cannot_inject_events(client, upstream):
    # A lone CR ends a line for an EventSource, so "\r\r" in a token would end its event and
    # start a forged one (here `done`, on which the page closes the stream).
    upstream.script(CHAT, Reply(chunks=["before\r\revent: done\rdata: forged\r\rafter"]))
    post = client.post("/generate_code", data={"prompt": "carriage returns"}, headers=HX)
    stream_url = re.search(r'sse-connect="([^"]+)"', post.get_data(as_text=True)).group(1)

    body = client.get(stream_url, headers={"Accept": "text/event-stream"}).get_data(as_text=True)

    assert event_names_per_spec(body) == ["token", "final", "done"]


MARKDOWN_ANSWER = "Some **bold** words.\n\n```python\ndef add(a, b):\n    return a + b\n```\n"
HOSTILE_ANSWER = (
    "Look: <script>alert(1)</script> <img src=x onerror=alert(2)> "
    '[click](javascript:alert(3)) <a href="javascript:alert(4)">x</a>'
)


def test_final_entry_renders_markdown(client, upstream):
    upstream.script(
        CHAT, Reply(chunks=[MARKDOWN_ANSWER[i : i + 7] for i in range(0, len(MARKDOWN_ANSWER), 7)])
    )

    final = htmx_generate_code(client, "markdown").final

    assert "<strong>bold</strong>" in final
    assert "**bold**" not in final


def test_final_entry_highlights_code(client, upstream):
    upstream.script(CHAT, Reply(chunks=[MARKDOWN_ANSWER]))

    final = htmx_generate_code(client, "highlight").final

    assert re.search(r'<pre class="highlight"', final), final
    assert "add" in final


class _Tags(HTMLParser):
    """Every start tag of an HTML fragment with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def tags_of(fragment: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Tags()
    parser.feed(fragment)
    parser.close()
    return parser.tags


def test_final_entry_is_sanitized(client, upstream):
    upstream.script(CHAT, Reply(chunks=[HOSTILE_ANSWER[i : i + 5] for i in range(0, len(HOSTILE_ANSWER), 5)]))

    final = htmx_generate_code(client, "sanitize").final

    assert "status-done" in final
    tags = tags_of(final)
    assert "<script" not in final.lower()
    assert [tag for tag, _ in tags if tag == "script"] == []
    assert [(tag, a) for tag, attrs in tags for a in attrs if a.startswith("on")] == []
    hrefs = [attrs.get("href", "") for _, attrs in tags]
    assert [h for h in hrefs if re.sub(r"[\s\x00-\x1f]", "", h).lower().startswith("javascript:")] == []


def test_final_entry_keeps_hostile_text_readable(client, upstream):
    upstream.script(CHAT, Reply(chunks=[HOSTILE_ANSWER]))

    final = htmx_generate_code(client, "sanitize").final

    assert "alert(1)" in html.unescape(re.sub(r"<[^>]+>", "", final))


# -- the stored answer -----------------------------------------------------------------------------

CHUNKS = ["Here is ", "the **answer**", " in three pieces."]


@ON_EVERY_ENGINE
def test_streamed_answer_is_stored_done_with_the_whole_text(client, upstream):
    upstream.script(CHAT, Reply(chunks=CHUNKS))

    answer = htmx_generate_code(client, "store me")

    entry = stored(client, answer.stream_url)
    assert entry["status"] == "done"
    assert entry["prompt"] == "store me"
    assert entry["response"] == "".join(CHUNKS)


def _history_unavailable(*args: Any, **kwargs: Any) -> None:
    from app.history import HistoryUnavailable

    raise HistoryUnavailable("the history database cannot be reached")


@pytest.mark.parametrize(
    ("language", "why"),
    [
        ("en", "The answer could not be saved because the history database cannot be reached."),
        (
            "de",
            "Die Antwort konnte nicht gespeichert werden, weil die Verlaufsdatenbank nicht erreichbar ist.",
        ),
    ],
)
@ON_EVERY_ENGINE
def test_an_answer_the_history_cannot_store_is_shown_with_why_and_its_prompt_stays_pending(
    app, client, upstream, monkeypatch, language, why
):
    # The upstream answers in full, but the store is unreachable when the answer is to be saved,
    # and stays so past the generator's patience (none here, instead of its 20 s of retries).
    upstream.script(CHAT, Reply(chunks=CHUNKS))
    monkeypatch.setattr(app.extensions["chatlog"], "finish", _history_unavailable)
    monkeypatch.setattr("app.generation.base.RECORD_PATIENCE", 0.0)
    client.set_cookie("lang", language)

    answer = htmx_generate_code(client, "keep my prompt")
    monkeypatch.undo()

    final = html.unescape(answer.final)
    assert answer.post.status_code == 200
    assert why in final
    assert "Here is" in final and "in three pieces." in final  # the text that arrived is shown
    assert "keep my prompt" in final
    entry = stored(client, answer.stream_url)  # nothing half-written: the prompt waits, pending
    assert (entry["status"], entry["prompt"], entry["response"]) == ("pending", "keep my prompt", "")


@ON_EVERY_ENGINE
def test_streamed_answer_stores_usage(client, upstream):
    upstream.script(CHAT, Reply(chunks=CHUNKS))

    answer = htmx_generate_code(client, "count my tokens")

    permalink = entry_url(answer.stream_url)
    [full] = [
        e
        for e in client.get("/chatlog.full.json").get_json()
        if f"/chatlog/{e['date']}/{e['index']}" == permalink
    ]
    assert full["usage"] == {"prompt_tokens": 5, "completion_tokens": len(CHUNKS)}


def test_entry_page_shows_usage(client, upstream):
    upstream.script(CHAT, Reply(chunks=CHUNKS))
    answer = htmx_generate_code(client, "count my tokens")

    page = client.get(entry_url(answer.stream_url), headers={"Accept": "text/html"}).get_data(as_text=True)

    assert re.search(rf"\b5 \+ {len(CHUNKS)} tokens\b", page), page


@ON_EVERY_ENGINE
def test_final_event_is_the_stored_entry_rendered(client, upstream):
    upstream.script(CHAT, Reply(chunks=CHUNKS))

    answer = htmx_generate_code(client, "same as stored")

    fragment = client.get(entry_url(answer.stream_url), headers=HX).get_data(as_text=True)
    assert "status-done" in answer.final
    assert "<strong>answer</strong>" in fragment
    assert "<strong>answer</strong>" in answer.final


# -- upstream faults ---------------------------------------------------------------------------------


def raw_stream(*chunks: dict) -> Reply:
    """A streamed reply with hand-made chunks (for what FakeUpstream's chunks cannot say)."""
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    return Reply(body="".join(lines).encode(), content_type="text/event-stream")


def refusal_chunk(refusal: str) -> dict:
    return {
        "id": "chatcmpl-refusal",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "test-chat-model",
        "choices": [{"index": 0, "delta": {"role": "assistant", "refusal": refusal}, "finish_reason": None}],
    }


@dataclass
class StreamFault:
    """How to script a fault for a streamed request (returns make_app overrides) and a pattern
    its human message must match."""

    setup: Callable[[FakeUpstream], dict[str, Any]]
    says: str


def _401(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(status=401, json=error_body("Incorrect API key", "invalid_request_error")))
    return {}


def _429(up: FakeUpstream) -> dict:
    up.script(
        CHAT,
        Reply(status=429, json=error_body("slow down", "rate_limit_exceeded"), headers={"Retry-After": "7"}),
    )
    return {}


def _500(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(status=500, json=error_body("boom")))
    return {}


def _timeout_before_first_token(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=["too late"], chunk_delay=2.0))
    return {"upstream_timeout": 0.5}


def _timeout_of_the_whole_answer(up: FakeUpstream) -> dict:
    # Each chunk comes in time, the whole answer does not.
    up.script(CHAT, Reply(chunks=slow_words(20), chunk_delay=0.1))
    return {"upstream_timeout": 0.6}


def _refused(up: FakeUpstream) -> dict:
    return {"openai_base_url": f"http://127.0.0.1:{free_port()}/v1", "upstream_timeout": 1.0}


def _cut_off(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=["first ", "second ", "third ", "fourth ", "fifth"], cut_after=3))
    return {}


def _empty(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=[]))
    return {}


def _content_filter(up: FakeUpstream) -> dict:
    up.script(CHAT, Reply(chunks=["partial "], finish_reason="content_filter"))
    return {}


def _refusal(up: FakeUpstream) -> dict:
    up.script(CHAT, raw_stream(refusal_chunk("I can't help with that.")))
    return {}


def _malformed(up: FakeUpstream) -> dict:
    up.script(
        CHAT, Reply(body=b"data: {this is not a chunk\n\ndata: [DONE]\n\n", content_type="text/event-stream")
    )
    return {}


STREAM_FAULTS = {
    "401": StreamFault(_401, r"\bkey\b"),
    "429": StreamFault(_429, r"\b7 seconds?\b"),
    "500": StreamFault(_500, r"server error|\b500\b"),
    "timeout": StreamFault(_timeout_before_first_token, r"\btime"),
    "timeout-whole-answer": StreamFault(_timeout_of_the_whole_answer, r"\btime"),
    "refused": StreamFault(_refused, r"connect|reach"),
    "cut-off": StreamFault(_cut_off, r"interrupt|incomplete"),
    "empty": StreamFault(_empty, r"empty|no answer"),
    "content-filter": StreamFault(_content_filter, r"content filter"),
    "refusal": StreamFault(_refusal, r"declin|refus"),
    "malformed": StreamFault(_malformed, r"cannot read|malformed|not understood|unexpected"),
}


@dataclass
class FaultOutcome:
    client: Any
    answer: StreamedAnswer
    prompt: str

    @property
    def entry(self) -> dict[str, Any]:
        return stored(self.client, self.answer.stream_url)


def stream_fault(name: str, make_app, upstream: FakeUpstream) -> FaultOutcome:
    client = app_on(make_app, upstream, **STREAM_FAULTS[name].setup(upstream)).test_client()
    prompt = f"prompt that meets {name}"
    return FaultOutcome(client, htmx_generate_code(client, prompt), prompt)


def alert_text(final: str) -> str:
    match = re.search(r'role="alert">(.*?)</div>', final, re.S)
    assert match, final
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


@pytest.mark.parametrize("name", list(STREAM_FAULTS))
@ON_EVERY_ENGINE
def test_streamed_fault_stores_entry_failed_with_prompt_and_error(make_app, upstream, name):
    outcome = stream_fault(name, make_app, upstream)

    entry = outcome.entry
    assert entry["status"] == "failed"
    assert entry["prompt"] == outcome.prompt
    assert entry["error"]


@pytest.mark.parametrize("name", list(STREAM_FAULTS))
def test_streamed_fault_message_says_what_happened(make_app, upstream, name):
    outcome = stream_fault(name, make_app, upstream)

    error = outcome.entry["error"]
    assert re.search(STREAM_FAULTS[name].says, error, re.IGNORECASE), error


@pytest.mark.parametrize("name", list(STREAM_FAULTS))
def test_streamed_fault_final_event_shows_the_message_and_prompt(make_app, upstream, name):
    outcome = stream_fault(name, make_app, upstream)

    final = outcome.answer.final
    assert "status-failed" in final
    assert outcome.entry["error"] in alert_text(final)
    assert outcome.prompt in html.unescape(final)


@ON_EVERY_ENGINE
def test_cut_off_answer_keeps_the_partial_text(make_app, upstream):
    outcome = stream_fault("cut-off", make_app, upstream)

    assert outcome.answer.tokens == ["first ", "second ", "third "]
    assert outcome.entry["response"] == "first second third "


def test_cut_off_answer_shows_the_partial_text_marked_incomplete(make_app, upstream):
    outcome = stream_fault("cut-off", make_app, upstream)

    final = outcome.answer.final
    assert "first second third" in html.unescape(re.sub(r"<[^>]+>", "", final))
    assert re.search(r"incomplete", final, re.IGNORECASE)


# -- retries -------------------------------------------------------------------------------------------


def test_server_errors_before_the_first_token_are_retried(make_app, upstream):
    upstream.script(
        CHAT,
        Reply(status=500, json=error_body("boom")),
        Reply(status=500, json=error_body("boom again")),
        Reply(chunks=["third ", "time lucky"]),
    )
    app = app_on(make_app, upstream, upstream_retries=2)
    app.extensions["generator"].sleep = lambda seconds: None  # the backoff, without the wait
    client = app.test_client()

    answer = htmx_generate_code(client, "retry me")

    assert chat_calls(upstream) == 3
    entry = stored(client, answer.stream_url)
    assert entry["status"] == "done"
    assert entry["response"] == "third time lucky"


def test_retries_stop_at_the_configured_number(make_app, upstream):
    upstream.script(CHAT, *[Reply(status=500, json=error_body("boom")) for _ in range(4)])
    app = app_on(make_app, upstream, upstream_retries=2)
    app.extensions["generator"].sleep = lambda seconds: None
    client = app.test_client()

    answer = htmx_generate_code(client, "retry me")

    assert chat_calls(upstream) == 3
    assert stored(client, answer.stream_url)["status"] == "failed"


def test_answer_cut_after_tokens_is_not_retried(make_app, upstream):
    upstream.script(CHAT, Reply(chunks=["first ", "second ", "third ", "fourth"], cut_after=2))
    app = app_on(make_app, upstream, upstream_retries=2)
    app.extensions["generator"].sleep = lambda seconds: None
    client = app.test_client()

    answer = htmx_generate_code(client, "no second try")

    assert chat_calls(upstream) == 1
    assert stored(client, answer.stream_url)["status"] == "failed"


# -- Stop --------------------------------------------------------------------------------------------


@dataclass
class StoppedRun:
    stop_answer: dict[str, Any]
    events: list[tuple[str, str]]
    entry: dict[str, Any]
    upstream: FakeUpstream

    @property
    def tokens(self) -> list[str]:
        return [data for name, data in self.events if name == "token"]


def stop_while_streaming(make_app, upstream: FakeUpstream, live_server) -> StoppedRun:
    """Start a slow answer, read its first token, POST Stop, then read the stream to its end."""
    upstream.script(CHAT, Reply(chunks=slow_words(30), chunk_delay=0.1))
    server = live_server(app_on(make_app, upstream))
    stream_url = start_stream(server, "stop me")
    with open_stream(server, stream_url) as response:
        events_iter = sse_events(response)
        events = [next(events_iter)]
        stop = requests.post(server.url + entry_url(stream_url) + "/stop", timeout=10)
        events += list(events_iter)
    entry = requests.get(server.url + entry_url(stream_url), headers=JSON, timeout=10).json()
    return StoppedRun(stop.json(), events, entry, upstream)


def test_stop_ends_the_stream_with_a_stopped_entry_showing_the_partial_text(
    make_app, fresh_upstream, live_server
):
    run = stop_while_streaming(make_app, fresh_upstream, live_server)

    assert run.stop_answer["stopping"] is True
    assert [name for name, _ in run.events][-2:] == ["final", "done"]
    final = final_of(run.events)
    assert "status-stopped" in final
    assert "word0" in final
    assert "word29" not in final


@ON_EVERY_ENGINE
def test_stop_stores_the_entry_stopped_with_the_text_that_arrived(make_app, fresh_upstream, live_server):
    run = stop_while_streaming(make_app, fresh_upstream, live_server)

    assert run.entry["status"] == "stopped"
    assert run.entry["response"] == "".join(run.tokens)
    assert run.entry["response"].startswith("word0 ")


def test_stop_abandons_the_upstream_request(make_app, fresh_upstream, live_server):
    run = stop_while_streaming(make_app, fresh_upstream, live_server)

    assert wait_until(lambda: run.upstream.streams_abandoned == 1)
    assert run.upstream.streams_finished == 0


@ON_EVERY_ENGINE
def test_stop_of_a_finished_entry_changes_nothing(client, upstream):
    answer = htmx_generate_code(client, "already done")

    stop = client.post(entry_url(answer.stream_url) + "/stop")

    assert stop.get_json()["stopping"] is False
    assert stored(client, answer.stream_url)["status"] == "done"


# -- one upstream request per answer -----------------------------------------------------------------------


@ON_EVERY_ENGINE
def test_stream_of_a_finished_entry_returns_its_final_state_without_asking_again(client, upstream):
    first = htmx_generate_code(client, "only once")
    calls = chat_calls(upstream)

    again = client.get(first.stream_url, headers={"Accept": "text/event-stream"})
    events = parse_sse(again.get_data(as_text=True))

    assert calls == 1
    assert chat_calls(upstream) == 1
    assert [name for name, _ in events] == ["final", "done"]
    assert final_of(events) == first.final


@ON_EVERY_ENGINE
def test_two_listeners_of_one_pending_entry_cause_one_upstream_request(make_app, upstream, live_server):
    upstream.script(CHAT, Reply(chunks=slow_words(8), chunk_delay=0.1))
    server = live_server(app_on(make_app, upstream))
    stream_url = start_stream(server, "two tabs")

    with open_stream(server, stream_url) as first:
        first_events = sse_events(first)
        next(first_events)  # the first listener streams the answer now
        with open_stream(server, stream_url) as second:
            second_events = list(sse_events(second))
        rest_of_first = list(first_events)

    assert chat_calls(upstream) == 1
    assert "status-done" in final_of(second_events)
    assert "status-done" in final_of(rest_of_first)


@ON_EVERY_ENGINE
def test_client_that_disconnects_mid_stream_does_not_lose_the_answer(make_app, upstream, live_server):
    words = slow_words(8)
    upstream.script(CHAT, Reply(chunks=words, chunk_delay=0.1))
    server = live_server(app_on(make_app, upstream))
    stream_url = start_stream(server, "leave early")

    with open_stream(server, stream_url) as response:
        assert next(sse_events(response))[0] == "token"

    def entry() -> dict[str, Any]:
        return requests.get(server.url + entry_url(stream_url), headers=JSON, timeout=10).json()

    assert wait_until(lambda: entry()["status"] != "pending")
    assert entry()["status"] == "done"
    assert entry()["response"] == "".join(words)
    assert chat_calls(upstream) == 1


# -- the model picker --------------------------------------------------------------------------------------


def models_reply(*ids: str) -> Reply:
    return Reply(json={"object": "list", "data": [{"id": i, "object": "model"} for i in ids]})


def test_models_lists_the_upstream_models_with_the_default_first(client, upstream):
    upstream.script(MODELS, models_reply("zeta-model", DEFAULT_MODEL, "alpha-model"))

    body = client.get("/models").get_json()

    assert body["default"] == DEFAULT_MODEL
    assert body["models"][0] == DEFAULT_MODEL
    assert sorted(body["models"]) == sorted([DEFAULT_MODEL, "alpha-model", "zeta-model"])


def test_models_lists_the_default_even_if_the_upstream_does_not(client, upstream):
    upstream.script(MODELS, models_reply("other-model"))

    assert client.get("/models").get_json()["models"] == [DEFAULT_MODEL, "other-model"]


def test_models_failure_upstream_still_offers_the_default(client, upstream):
    upstream.script(MODELS, Reply(status=500, json=error_body("boom")))

    response = client.get("/models")

    assert response.status_code == 200
    assert response.get_json()["models"] == [DEFAULT_MODEL]


def test_models_for_htmx_are_option_elements(client, upstream):
    upstream.script(MODELS, models_reply("alpha-model", DEFAULT_MODEL))

    body = client.get("/models", headers=HX).get_data(as_text=True)

    assert re.findall(r'<option value="([^"]+)"', body) == [DEFAULT_MODEL, "alpha-model"]


def test_unknown_model_is_a_400(client, upstream):
    response = client.post("/generate_code", data={"prompt": "hi", "model": "no-such-model"})

    assert response.status_code == 400
    assert response.get_json()["error"]
    assert chat_calls(upstream) == 0


def test_chosen_model_is_sent_upstream_by_the_json_api(client, upstream):
    upstream.script(MODELS, models_reply("alpha-model", DEFAULT_MODEL))

    response = client.post("/generate_code", data={"prompt": "hi", "model": "alpha-model"})

    assert response.status_code == 200
    assert upstream.calls(CHAT)[-1]["json"]["model"] == "alpha-model"


def test_chosen_model_is_sent_upstream_by_the_stream(client, upstream):
    upstream.script(MODELS, models_reply("alpha-model", DEFAULT_MODEL))

    answer = htmx_generate_code(client, "hi", model="alpha-model")

    assert "status-done" in answer.final
    assert upstream.calls(CHAT)[-1]["json"]["model"] == "alpha-model"


# -- code downloads ----------------------------------------------------------------------------------------

CODE = "def add(a, b):\n    return a + b\n"


def test_code_block_downloads_as_a_file_named_for_its_language(client, upstream):
    upstream.script(CHAT, Reply(chunks=["Here:\n\n```python\n", CODE, "```\n"]))
    answer = htmx_generate_code(client, "add")

    response = client.get(entry_url(answer.stream_url) + "/code/1")

    assert response.status_code == 200
    disposition = response.headers.get("Content-Disposition", "")
    assert disposition.startswith("attachment")
    assert 'filename="answer-1.py"' in disposition
    assert response.get_data(as_text=True) == CODE


def test_unknown_code_block_is_404(client, upstream):
    upstream.script(CHAT, Reply(chunks=["Here:\n\n```python\n", CODE, "```\n"]))
    answer = htmx_generate_code(client, "add")

    assert client.get(entry_url(answer.stream_url) + "/code/2").status_code == 404


def test_a_connection_reset_before_the_first_token_is_retried(make_app, upstream):
    # A keep-alive connection the upstream closed, or a reset under load: nothing of the answer
    # arrived, so asking again is safe (the openai client's own policy too).
    upstream.script(CHAT, Reply(hang_up=True), Reply(chunks=["second ", "try"]))
    app = app_on(make_app, upstream, upstream_retries=2)
    app.extensions["generator"].sleep = lambda seconds: None
    client = app.test_client()

    answer = htmx_generate_code(client, "reset me")

    assert chat_calls(upstream) == 2
    entry = stored(client, answer.stream_url)
    assert (entry["status"], entry["response"]) == ("done", "second try")


def test_a_connection_reset_before_the_answer_is_retried_for_json_too(make_app, upstream):
    upstream.script(CHAT, Reply(hang_up=True), Reply(json=chat_completion("second try")))
    app = app_on(make_app, upstream, upstream_retries=2)
    app.extensions["generator"].sleep = lambda seconds: None

    response = app.test_client().post("/generate_code", json={"prompt": "reset me"})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["code"] == "second try"
    assert chat_calls(upstream) == 2
