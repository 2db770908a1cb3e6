"""DATA_DIR/app.log: the seed's events in their original German wording, ISO timestamps, level,
request id; and no secret (the API key, a signed URL's query) anywhere in logs or responses.
"""

from __future__ import annotations

import base64
import logging
import re

import pytest

from .support.apps import TEST_KEY
from .support.htmx import HX, htmx_generate_code
from .support.upstream import FakeUpstream, Reply, chat_completion, error_body, png_bytes

CHAT = "/v1/chat/completions"
IMAGES = "/v1/images/generations"
LINE_RE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
    r" (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)"
    r" \[(?P<rid>[^\]\s]+)\] "
)
KEY_ECHO = f"Incorrect API key provided: {TEST_KEY}. You can find your API key at the dashboard."


def app_log(data_dir) -> str:
    path = data_dir / "app.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def lines_with(data_dir, text: str) -> list[str]:
    return [line for line in app_log(data_dir).splitlines() if text in line]


def level_of(line: str) -> str:
    match = LINE_RE.match(line)
    assert match, line
    return match.group("level")


def script_key_echoing_401(upstream: FakeUpstream, path: str = CHAT) -> None:
    upstream.script(
        path, Reply(status=401, json=error_body(KEY_ECHO, "invalid_request_error", "invalid_api_key"))
    )


# -- the seed's events -----------------------------------------------------------------------


def test_code_request_logs_sende_anfrage(client, data_dir):
    client.post("/generate_code", data={"prompt": "hello"})

    assert lines_with(data_dir, "Sende Anfrage an OpenAI API...")


def test_code_answer_logs_antwort_erhalten(client, data_dir):
    client.post("/generate_code", data={"prompt": "hello"})

    assert lines_with(data_dir, "Antwort von OpenAI erhalten:")


def test_image_request_logs_sende_anfrage_and_antwort(client, data_dir):
    client.post("/generate_image", data={"prompt": "a picture"})

    assert lines_with(data_dir, "Sende Anfrage an OpenAI API...")
    assert lines_with(data_dir, "Antwort von OpenAI erhalten:")


def test_image_request_logs_bild_url(client, upstream, data_dir):
    client.post("/generate_image", data={"prompt": "a picture"})

    lines = lines_with(data_dir, "Bild-URL:")
    assert len(lines) == 1
    assert upstream.origin + "/files/image.png" in lines[0]


def test_image_saved_logs_bild_gespeichert_with_file_name(client, data_dir):
    url = client.post("/generate_image", data={"prompt": "a picture"}).get_json()["image_url"]

    lines = lines_with(data_dir, "Bild gespeichert unter:")
    assert len(lines) == 1
    assert url.removeprefix("/images/") in lines[0]


def test_b64_image_logs_bild_gespeichert_but_no_url(client, upstream, data_dir):
    upstream.image_mode = "b64"

    client.post("/generate_image", data={"prompt": "inline"})

    assert lines_with(data_dir, "Bild gespeichert unter:")
    assert lines_with(data_dir, "Bild-URL:") == []


def test_missing_image_logs_kein_bild_at_error(client, upstream, data_dir):
    upstream.script(IMAGES, Reply(json={"created": 1, "data": []}))

    client.post("/generate_image", data={"prompt": "nothing comes back"})

    lines = lines_with(data_dir, "Kein Bild in der Antwort gefunden.")
    assert lines
    assert {level_of(line) for line in lines} == {"ERROR"}


def test_image_failure_logs_fehler_bei_der_bildgenerierung_at_error(client, upstream, data_dir):
    url = upstream.serve_file("/files/page.html", b"<html>not a picture</html>", "text/html")
    upstream.script(IMAGES, Reply(json={"created": 1, "data": [{"url": url}]}))

    client.post("/generate_image", data={"prompt": "broken picture"})

    lines = lines_with(data_dir, "Fehler bei der Bildgenerierung:")
    assert lines
    assert {level_of(line) for line in lines} == {"ERROR"}


def test_image_upstream_error_logs_fehler_bei_der_bildgenerierung(client, upstream, data_dir):
    upstream.script(IMAGES, Reply(status=500, json=error_body("boom")))

    client.post("/generate_image", data={"prompt": "server error"})

    assert [line for line in lines_with(data_dir, "Fehler bei der Bildgenerierung:") if " ERROR " in line]


def test_successful_image_logs_no_error(client, data_dir):
    response = client.post("/generate_image", data={"prompt": "fine"})

    assert response.status_code == 200
    assert response.get_json()["image_url"]
    assert [line for line in app_log(data_dir).splitlines() if level_of(line) == "ERROR"] == []


# -- line format -----------------------------------------------------------------------------


def test_every_line_starts_with_iso_timestamp_level_and_request_id(client, upstream, data_dir):
    client.post("/generate_code", data={"prompt": "one"})
    client.post("/generate_image", data={"prompt": "two"})
    upstream.script(IMAGES, Reply(json={"created": 1, "data": []}))
    client.post("/generate_image", data={"prompt": "three"})

    lines = app_log(data_dir).splitlines()
    assert len(lines) >= 6
    assert [line for line in lines if not LINE_RE.match(line)] == []


def test_request_lines_carry_the_request_id(client, data_dir):
    response = client.post(
        "/generate_code", data={"prompt": "traced"}, headers={"X-Request-Id": "req-test-42"}
    )

    assert response.headers.get("X-Request-Id") == "req-test-42"
    lines = lines_with(data_dir, "Sende Anfrage an OpenAI API...")
    assert [LINE_RE.match(line).group("rid") for line in lines] == ["req-test-42"]


def test_each_request_gets_its_own_request_id(client, data_dir):
    client.post("/generate_code", data={"prompt": "a"})
    client.post("/generate_code", data={"prompt": "b"})

    ids = [
        LINE_RE.match(line).group("rid") for line in lines_with(data_dir, "Sende Anfrage an OpenAI API...")
    ]
    assert len(ids) == 2
    assert ids[0] != ids[1]
    assert "-" not in ids


def test_malformed_request_id_is_replaced(client, data_dir):
    client.post("/generate_code", data={"prompt": "a"}, headers={"X-Request-Id": "bad id] ERROR forged"})

    line = lines_with(data_dir, "Sende Anfrage an OpenAI API...")[0]
    assert "forged" not in line
    assert LINE_RE.match(line)


FORGED = "\n2020-01-01T00:00:00+00:00 ERROR [forged] app: forged line\n"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            Reply(status=503, body=f"<html>{FORGED}</html>".encode(), content_type="text/html"), id="html"
        ),
        pytest.param(Reply(status=500, json=error_body(f"boom{FORGED}")), id="json-error-message"),
        pytest.param(Reply(status=500, json=f"boom{FORGED}"), id="json-string-body"),
        pytest.param(Reply(status=401, json={"detail": f"bad key{FORGED}"}), id="json-other-shape"),
    ],
)
def test_upstream_text_cannot_forge_log_lines(client, upstream, data_dir, reply):
    upstream.script(CHAT, reply)

    client.post("/generate_code", data={"prompt": "x"})

    lines = app_log(data_dir).splitlines()
    assert len(lines) >= 2
    assert [line for line in lines if not LINE_RE.match(line)] == []
    assert [line for line in lines if LINE_RE.match(line).group("rid") == "forged"] == []


def test_unexpected_error_keeps_every_line_prefixed(client, upstream, data_dir):
    malformed = chat_completion("x")
    malformed["choices"][0]["message"] = None  # the client accepts it; reading it raises
    upstream.script(CHAT, Reply(json=malformed))

    response = client.post("/generate_code", data={"prompt": "x"})

    assert response.status_code == 500
    lines = app_log(data_dir).splitlines()
    assert [line for line in lines if level_of(line) == "ERROR"]
    assert [line for line in lines if not LINE_RE.match(line)] == []


# -- secrets ---------------------------------------------------------------------------------


def test_key_not_in_app_log_after_normal_requests(client, data_dir):
    client.post("/generate_code", data={"prompt": "a"})
    client.post("/generate_image", data={"prompt": "b"})

    log = app_log(data_dir)
    assert log
    assert TEST_KEY not in log


def test_key_echoed_by_upstream_401_not_in_app_log(client, upstream, data_dir):
    script_key_echoing_401(upstream)

    client.post("/generate_code", data={"prompt": "bad key"})

    log = app_log(data_dir)
    assert "401" in log
    assert TEST_KEY not in log


def test_key_echoed_by_upstream_401_on_images_not_in_app_log(client, upstream, data_dir):
    script_key_echoing_401(upstream, IMAGES)

    client.post("/generate_image", data={"prompt": "bad key"})

    log = app_log(data_dir)
    assert "Fehler bei der Bildgenerierung:" in log
    assert TEST_KEY not in log


def test_key_shaped_secret_not_in_app_log_even_if_not_configured(client, upstream, data_dir):
    other = "sk-proj-OTHERSECRET0123456789abcdefXYZ"
    upstream.script(CHAT, Reply(status=401, json=error_body(f"Incorrect API key provided: {other}")))

    response = client.post("/generate_code", data={"prompt": "bad key"})

    assert response.status_code == 500
    assert "401" in app_log(data_dir)  # the failure itself is logged
    assert "OTHERSECRET0123456789" not in app_log(data_dir)


def test_key_echoed_by_upstream_401_not_in_any_response_body(client, upstream):
    script_key_echoing_401(upstream)
    json_answer = client.post("/generate_code", data={"prompt": "bad key json"})
    assert json_answer.status_code == 500
    assert json_answer.get_json()["error"]
    script_key_echoing_401(upstream)
    streamed = htmx_generate_code(client, "bad key htmx")
    assert "status-failed" in streamed.final
    htmx_body = streamed.html + "".join(streamed.tokens)
    script_key_echoing_401(upstream, IMAGES)
    image_answer = client.post("/generate_image", data={"prompt": "bad key image"})
    assert image_answer.status_code == 500
    assert image_answer.get_json()["error"]

    permalink = client.post("/generate_code", data={"prompt": "good"}).get_json()["entry"]
    date = permalink.split("/")[2]
    pages = []
    for path, headers in [
        ("/", {}),
        ("/chatlog", {"Accept": "text/html"}),
        ("/chatlog", HX),
        ("/chatlog.json", {}),
        (f"/chatlog/{date}/0", {"Accept": "text/html"}),
        (f"/chatlog/{date}/0", {"Accept": "application/json"}),
        (f"/chatlog/{date}/1", HX),
        ("/healthz", {}),
    ]:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, path
        pages.append(response.get_data(as_text=True))
    assert "bad key json" in pages[4]  # the failed entry's own page is there to read

    for body in [json_answer.get_data(as_text=True), htmx_body, image_answer.get_data(as_text=True), *pages]:
        assert TEST_KEY not in body


def test_key_not_stored_in_data_dir(client, upstream, data_dir):
    script_key_echoing_401(upstream)
    assert client.post("/generate_code", data={"prompt": "bad key"}).status_code == 500
    assert client.post("/generate_image", data={"prompt": "fine"}).status_code == 200

    leaked = [p.name for p in data_dir.rglob("*") if p.is_file() and TEST_KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_key_echoed_by_upstream_not_on_stdout_stderr_or_log_records(make_app, upstream, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    script_key_echoing_401(upstream)
    assert client.post("/generate_code", data={"prompt": "bad key"}).status_code == 500
    script_key_echoing_401(upstream, IMAGES)
    assert client.post("/generate_image", data={"prompt": "bad key"}).status_code == 500

    out, err = capsys.readouterr()
    assert "401" in caplog.text  # the upstream's refusal was logged, only without the key
    assert TEST_KEY not in out
    assert TEST_KEY not in err
    assert TEST_KEY not in caplog.text
    assert [r for r in caplog.records if TEST_KEY in r.getMessage()] == []


def test_key_not_sent_anywhere_but_the_authorization_header(client, upstream):
    assert client.post("/generate_code", data={"prompt": "a"}).status_code == 200
    assert client.post("/generate_image", data={"prompt": "b"}).status_code == 200

    paths = [call["path"] for call in upstream.requests]
    assert CHAT in paths and IMAGES in paths
    assert [p for p in paths if p.startswith("/files/")]  # the image download was checked too
    for call in upstream.requests:
        headers = {k.lower(): v for k, v in call["headers"].items()}
        others = {k: v for k, v in headers.items() if k != "authorization"}
        assert TEST_KEY not in repr(others)
        assert TEST_KEY not in repr(call["json"])
        if call["path"].startswith("/files/"):
            assert "authorization" not in headers  # the image download must not carry the key


# -- signed URLs -----------------------------------------------------------------------------


def signed_image(upstream: FakeUpstream) -> str:
    url = upstream.origin + "/files/image.png?sig=SECRETSIG&se=2099-01-01"
    upstream.script(IMAGES, Reply(json={"created": 1, "data": [{"url": url}]}))
    return url


def test_signed_image_url_query_not_logged(client, upstream, data_dir):
    signed_image(upstream)

    response = client.post("/generate_image", data={"prompt": "signed"})

    assert response.status_code == 200
    lines = lines_with(data_dir, "Bild-URL:")
    assert len(lines) == 1
    assert "/files/image.png" in lines[0]
    assert "SECRETSIG" not in app_log(data_dir)


def test_signed_image_url_query_not_logged_when_download_fails(client, upstream, data_dir):
    url = upstream.origin + "/files/missing.png?sig=SECRETSIG"
    upstream.script(IMAGES, Reply(json={"created": 1, "data": [{"url": url}]}))

    client.post("/generate_image", data={"prompt": "signed but gone"})

    assert "Fehler bei der Bildgenerierung:" in app_log(data_dir)
    assert "SECRETSIG" not in app_log(data_dir)


def test_signed_image_url_query_not_in_responses(client, upstream):
    signed_image(upstream)
    permalink = client.post("/generate_image", data={"prompt": "signed"}).get_json()["entry"]

    for path, headers in [
        ("/chatlog.json", {}),
        (permalink, {"Accept": "application/json"}),
        (permalink, {"Accept": "text/html"}),
        ("/", {}),
    ]:
        response = client.get(path, headers=headers)
        text = response.get_data(as_text=True)
        assert response.status_code == 200, (path, headers)
        assert "signed" in text, (path, headers)  # the entry is there, only without the signature
        assert "SECRETSIG" not in text


def test_b64_image_data_not_logged(client, upstream, data_dir):
    data = base64.b64encode(png_bytes((32, 32), (1, 2, 3))).decode()
    upstream.script(IMAGES, Reply(json={"created": 1, "data": [{"b64_json": data}]}))

    response = client.post("/generate_image", data={"prompt": "inline"})

    assert response.status_code == 200
    assert response.get_json()["image_url"]
    assert data[:40] not in app_log(data_dir)


# -- one INFO line per finished generation -------------------------------------------------------

FINISHED_RE = re.compile(
    r" INFO \[[^\]\s]+\] app\.generation: Generation finished:"
    r" kind=(?P<kind>\w+) entry=(?P<entry>/chatlog/\d{4}-\d{2}-\d{2}/\d+) model=(?P<model>\S+)"
    r" status=(?P<status>\w+) duration_ms=(?P<duration_ms>\d+) tokens=(?P<tokens>\d+|-)"
    r"(?: file=(?P<file>\S+))?(?: error=(?P<error>\w+))?$"
)
# Distinctive words that must never reach app.log at the default level.
SECRET_PROMPT = "zebra-PROMPT-4711-do-not-log"
SECRET_ANSWER = "okapi-ANSWER-0815-do-not-log"


@pytest.fixture
def info_client(make_app, upstream):
    """A client of an app at the default log level (INFO), on the local upstream."""
    return make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, log_level="INFO").test_client()


def finished_lines(data_dir) -> list[dict[str, str | None]]:
    """The 'Generation finished' lines of app.log, parsed (each must match the documented format)."""
    lines = lines_with(data_dir, "Generation finished:")
    parsed = [FINISHED_RE.search(line) for line in lines]
    assert None not in parsed, lines
    assert {level_of(line) for line in lines} <= {"INFO"}
    return [match.groupdict() for match in parsed]


def test_info_level_creates_app_log_before_anything_is_logged(make_app, data_dir):
    make_app(log_level="INFO")

    assert (data_dir / "app.log").is_file()


def test_json_code_answer_logs_one_info_line_with_its_fields(info_client, upstream, data_dir):
    upstream.script(CHAT, Reply(json=chat_completion(f"Here: {SECRET_ANSWER}", model="model-x")))

    body = info_client.post("/generate_code", data={"prompt": SECRET_PROMPT}).get_json()

    [line] = finished_lines(data_dir)
    assert (line["kind"], line["entry"], line["model"], line["status"]) == (
        "code",
        body["entry"],
        "model-x",
        "done",
    )
    assert line["duration_ms"].isdigit()
    assert line["tokens"] == "18"  # the upstream's total_tokens
    assert (line["file"], line["error"]) == (None, None)


def test_streamed_code_answer_logs_one_info_line_with_its_fields(info_client, upstream, data_dir):
    upstream.script(CHAT, Reply(chunks=["Here: ", SECRET_ANSWER, " and more."]))

    streamed = htmx_generate_code(info_client, SECRET_PROMPT)

    assert SECRET_ANSWER in streamed.final
    [line] = finished_lines(data_dir)
    assert streamed.stream_url.startswith(line["entry"] + "/")
    assert (line["kind"], line["status"], line["error"], line["file"]) == ("code", "done", None, None)
    assert line["model"] == "test-chat-model"
    assert line["tokens"] == "8"  # 5 prompt tokens + 3 chunks, as the local upstream counts them


def test_image_logs_one_info_line_with_the_stored_file_name(info_client, data_dir):
    body = info_client.post("/generate_image", data={"prompt": SECRET_PROMPT}).get_json()

    [line] = finished_lines(data_dir)
    assert (line["kind"], line["entry"], line["status"]) == ("image", body["entry"], "done")
    assert line["file"] == body["image_url"].removeprefix("/images/")
    assert (data_dir / "images" / line["file"]).is_file()
    assert line["error"] is None


def test_each_generation_logs_exactly_one_finished_line(info_client, data_dir):
    entries = [
        info_client.post("/generate_code", data={"prompt": "one"}).get_json()["entry"],
        info_client.post("/generate_image", data={"prompt": "two"}).get_json()["entry"],
        info_client.post("/generate_code", data={"prompt": "three"}).get_json()["entry"],
    ]

    assert [line["entry"] for line in finished_lines(data_dir)] == entries


def test_failed_json_code_answer_logs_status_failed_and_the_error_kind(info_client, upstream, data_dir):
    upstream.script(CHAT, Reply(status=429, json=error_body("slow down", "rate_limit_exceeded")))

    body = info_client.post("/generate_code", data={"prompt": SECRET_PROMPT}).get_json()

    [line] = finished_lines(data_dir)
    assert (line["kind"], line["entry"], line["status"], line["error"]) == (
        "code",
        body["entry"],
        "failed",
        "rate_limit",
    )


def test_failed_streamed_answer_logs_status_failed_and_the_error_kind(info_client, upstream, data_dir):
    upstream.script(CHAT, Reply(chunks=["Here: ", SECRET_ANSWER, " and"], cut_after=2))

    streamed = htmx_generate_code(info_client, SECRET_PROMPT)

    assert "status-failed" in streamed.final
    [line] = finished_lines(data_dir)
    assert (line["kind"], line["status"], line["error"]) == ("code", "failed", "incomplete")


def test_failed_image_logs_status_failed_and_the_error_kind(info_client, upstream, data_dir):
    upstream.script(IMAGES, Reply(json={"created": 1, "data": []}))

    body = info_client.post("/generate_image", data={"prompt": SECRET_PROMPT}).get_json()

    [line] = finished_lines(data_dir)
    assert (line["kind"], line["entry"], line["status"]) == ("image", body["entry"], "failed")
    assert line["error"] == "bad_image"
    assert line["file"] is None


def test_info_log_never_holds_prompt_or_answer_text(info_client, upstream, data_dir):
    upstream.script(CHAT, Reply(json=chat_completion(f"Here: {SECRET_ANSWER}")))
    info_client.post("/generate_code", data={"prompt": SECRET_PROMPT})
    upstream.script(CHAT, Reply(chunks=["Here: ", SECRET_ANSWER]))
    htmx_generate_code(info_client, SECRET_PROMPT + "-streamed")
    info_client.post("/generate_image", data={"prompt": SECRET_PROMPT + "-image"})
    upstream.script(CHAT, Reply(status=500, json=error_body("boom")))
    info_client.post("/generate_code", data={"prompt": SECRET_PROMPT + "-failed"})

    log = app_log(data_dir)
    assert len(finished_lines(data_dir)) == 4
    assert SECRET_PROMPT not in log
    assert SECRET_ANSWER not in log


def test_info_level_keeps_the_seed_events_at_debug(info_client, data_dir):
    info_client.post("/generate_code", data={"prompt": "hello"})
    info_client.post("/generate_image", data={"prompt": "a picture"})

    assert len(finished_lines(data_dir)) == 2
    for event in (
        "Sende Anfrage an OpenAI API...",
        "Antwort von OpenAI erhalten",
        "Bild-URL",
        "Bild gespeichert",
    ):
        assert lines_with(data_dir, event) == []
