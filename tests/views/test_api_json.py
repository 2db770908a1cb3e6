"""The seed's JSON contract for plain clients (curl, the seed's jQuery page, scripts).

POST /generate_code and /generate_image answer JSON; GET /chatlog.json exports the seed format;
images are the app's own files under /images/; history survives a restart.
"""

from __future__ import annotations

import io
import re

import pytest
import requests
from PIL import Image

from ..support.apps import TEST_KEY
from ..support.htmx import HX
from ..support.upstream import Reply, chat_completion

PERMALINK_RE = re.compile(r"^/chatlog/(\d{4}-\d{2}-\d{2})/(\d+)$")
IMAGE_URL_RE = re.compile(r"^/images/[0-9a-f]{32}\.png$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html"}


def date_of(permalink: str) -> str:
    match = PERMALINK_RE.match(permalink)
    assert match, permalink
    return match.group(1)


def stored_files(data_dir) -> list[str]:
    images = data_dir / "images"
    return sorted(p.name for p in images.iterdir()) if images.exists() else []


# -- POST /generate_code ---------------------------------------------------------------------


def test_generate_code_form_field_returns_seed_json(client, upstream):
    upstream.script("/v1/chat/completions", Reply(json=chat_completion("def f():\n    return 1")))

    response = client.post("/generate_code", data={"prompt": "write f"})

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == "def f():\n    return 1"
    assert PERMALINK_RE.match(body["entry"])
    assert body["demo"] is False


def test_generate_code_accepts_json_body(client, upstream):
    upstream.script("/v1/chat/completions", Reply(json=chat_completion("json body answer")))

    response = client.post("/generate_code", json={"prompt": "from json"})

    assert response.status_code == 200
    assert response.get_json()["code"] == "json body answer"


def test_generate_code_sends_the_prompt_upstream(client, upstream):
    client.post("/generate_code", data={"prompt": "  the exact prompt  "})

    calls = upstream.calls("/v1/chat/completions")
    assert len(calls) == 1
    assert calls[0]["json"]["messages"][-1] == {"role": "user", "content": "the exact prompt"}


def test_generate_code_authenticates_with_the_configured_key(client, upstream):
    client.post("/generate_code", data={"prompt": "hi"})

    headers = {k.lower(): v for k, v in upstream.calls("/v1/chat/completions")[0]["headers"].items()}
    assert headers.get("authorization") == f"Bearer {TEST_KEY}"


def test_generate_code_entry_permalink_serves_that_entry(client):
    body = client.post("/generate_code", data={"prompt": "permalink me"}).get_json()

    entry = client.get(body["entry"], headers=JSON).get_json()

    assert entry["prompt"] == "permalink me"
    assert entry["response"] == body["code"]


def test_demo_mode_json_says_demo_true(demo_client):
    response = demo_client.post("/generate_code", data={"prompt": "sql query"})

    assert response.status_code == 200
    assert response.get_json()["demo"] is True
    assert response.get_json()["code"]


# -- POST /generate_image --------------------------------------------------------------------


def test_generate_image_returns_own_image_url(client, upstream):
    response = client.post("/generate_image", data={"prompt": "a red square"})

    assert response.status_code == 200
    body = response.get_json()
    assert IMAGE_URL_RE.match(body["image_url"]), body
    assert upstream.origin not in body["image_url"]
    assert PERMALINK_RE.match(body["entry"])


def test_generated_image_is_served_as_png(client):
    url = client.post("/generate_image", data={"prompt": "a red square"}).get_json()["image_url"]

    response = client.get(url)

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data.startswith(PNG_SIGNATURE)
    assert Image.open(io.BytesIO(response.data)).size == (64, 48)


def test_generated_image_is_cached_immutably(client):
    url = client.post("/generate_image", data={"prompt": "a red square"}).get_json()["image_url"]

    cache_control = client.get(url).headers.get("Cache-Control", "")

    assert "immutable" in cache_control
    assert "max-age=" in cache_control


def test_two_image_requests_store_two_files(client, data_dir):
    first = client.post("/generate_image", data={"prompt": "one"}).get_json()["image_url"]
    second = client.post("/generate_image", data={"prompt": "one"}).get_json()["image_url"]

    assert first != second
    names = stored_files(data_dir)
    assert first.removeprefix("/images/") in names
    assert second.removeprefix("/images/") in names
    assert client.get(first).status_code == 200
    assert client.get(second).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/images/../x",
        "/images/..%2Fhistory.json",
        "/images/%2e%2e%2fsecret_key",
        "/images/history.json",
        "/images/secret_key",
        "/images/" + "0" * 32 + ".png",
        "/images/" + "A" * 32 + ".png",
        "/images/",
    ],
)
def test_image_route_rejects_unknown_or_foreign_names(client, path):
    client.post("/generate_image", data={"prompt": "so the directory is not empty"})

    response = client.get(path)

    assert response.status_code == 404
    assert not response.data.startswith(PNG_SIGNATURE)


# -- prompt validation -----------------------------------------------------------------------

BAD_PROMPTS = [
    pytest.param({"data": {"prompt": ""}}, id="empty-form"),
    pytest.param({"data": {"prompt": "  \n\t "}}, id="whitespace-form"),
    pytest.param({"data": {}}, id="missing-form"),
    pytest.param({"data": {"prompt": "x" * 21}}, id="oversized-form"),
    pytest.param({"json": {"prompt": ""}}, id="empty-json"),
    pytest.param({"json": {}}, id="missing-json"),
    pytest.param({"json": {"prompt": 42}}, id="number-json"),
    pytest.param({"json": {"prompt": "y" * 21}}, id="oversized-json"),
]


@pytest.mark.parametrize("route", ["/generate_code", "/generate_image"])
@pytest.mark.parametrize("request_kwargs", BAD_PROMPTS)
def test_bad_prompt_is_400_json_error(make_app, upstream, route, request_kwargs):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, max_prompt_chars=20
    ).test_client()

    response = client.post(route, **request_kwargs)

    assert response.status_code == 400
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert isinstance(error, str) and error.strip()


@pytest.mark.parametrize("route", ["/generate_code", "/generate_image"])
@pytest.mark.parametrize("request_kwargs", BAD_PROMPTS)
def test_bad_prompt_stores_nothing_and_calls_no_upstream(make_app, upstream, data_dir, route, request_kwargs):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, max_prompt_chars=20
    ).test_client()

    response = client.post(route, **request_kwargs)

    assert response.status_code == 400
    assert response.get_json()["error"]
    assert client.get("/chatlog.json").get_json() == {}
    assert stored_files(data_dir) == []
    assert upstream.requests == []


def test_prompt_at_the_limit_is_accepted(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, max_prompt_chars=20
    ).test_client()

    response = client.post("/generate_code", data={"prompt": "x" * 20})

    assert response.status_code == 200


# -- content negotiation ---------------------------------------------------------------------


def test_seed_jquery_client_gets_json(client):
    response = client.post(
        "/generate_code",
        data={"prompt": "from jquery"},
        headers={"X-Requested-With": "XMLHttpRequest", "Accept": "*/*"},
    )

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "code" in response.get_json()


def test_seed_jquery_client_gets_json_for_images(client):
    response = client.post(
        "/generate_image",
        data={"prompt": "from jquery"},
        headers={"X-Requested-With": "XMLHttpRequest", "Accept": "*/*"},
    )

    assert response.mimetype == "application/json"
    assert IMAGE_URL_RE.match(response.get_json()["image_url"])


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/generate_code", {"data": {"prompt": "vary"}}),
        ("post", "/generate_image", {"data": {"prompt": "vary"}}),
        ("get", "/chatlog", {}),
    ],
)
def test_negotiated_responses_vary_on_hx_request(client, method, path, kwargs):
    plain = getattr(client, method)(path, **kwargs)
    htmx = getattr(client, method)(path, headers=HX, **kwargs)

    for response in (plain, htmx):
        assert "hx-request" in {v.strip().lower() for v in response.headers.get("Vary", "").split(",")}


# -- GET /chatlog.json, /chatlog, /chatlog/<date>/<index> ------------------------------------


def test_chatlog_json_is_seed_format(client, upstream):
    upstream.script("/v1/chat/completions", Reply(json=chat_completion("the code answer")))
    code = client.post("/generate_code", data={"prompt": "code prompt"}).get_json()
    image = client.post("/generate_image", data={"prompt": "image prompt"}).get_json()

    export = client.get("/chatlog.json").get_json()

    assert export == {
        date_of(code["entry"]): [
            {"prompt": "code prompt", "response": "the code answer"},
            {"prompt": "image prompt", "response": image["image_url"]},
        ]
    }


def test_chatlog_json_never_contains_upstream_image_url(client, upstream):
    upstream.script(
        "/v1/images/generations",
        Reply(json={"created": 1, "data": [{"url": upstream.origin + "/files/image.png?sig=SECRETSIG"}]}),
    )
    image = client.post("/generate_image", data={"prompt": "signed"})
    assert image.status_code == 200

    response = client.get("/chatlog.json")
    text = response.get_data(as_text=True)

    assert response.status_code == 200
    assert response.get_json()[date_of(image.get_json()["entry"])] == [
        {"prompt": "signed", "response": image.get_json()["image_url"]}
    ]  # the entry is exported, with the app's own image URL
    assert upstream.origin not in text
    assert "SECRETSIG" not in text


def test_chatlog_with_accept_json_returns_seed_export(client):
    client.post("/generate_code", data={"prompt": "listed"})

    response = client.get("/chatlog", headers=JSON)

    assert response.mimetype == "application/json"
    assert response.get_json() == client.get("/chatlog.json").get_json()


def test_chatlog_for_browsers_is_html(client):
    client.post("/generate_code", data={"prompt": "listed"})

    response = client.get("/chatlog", headers=HTML)

    assert response.status_code == 200
    assert response.mimetype == "text/html"


def test_entry_with_accept_json_returns_entry(client, upstream):
    upstream.script("/v1/chat/completions", Reply(json=chat_completion("entry answer")))
    body = client.post("/generate_code", data={"prompt": "entry prompt"}).get_json()

    response = client.get(body["entry"], headers=JSON)

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    entry = response.get_json()
    assert entry["prompt"] == "entry prompt"
    assert entry["response"] == "entry answer"
    assert entry["entry"] == body["entry"]
    assert entry["kind"] == "code"


def test_image_entry_json_carries_image_url(client):
    body = client.post("/generate_image", data={"prompt": "img"}).get_json()

    entry = client.get(body["entry"], headers=JSON).get_json()

    assert entry["response"] == body["image_url"]
    assert entry["image_url"] == body["image_url"]


def test_entry_indexes_count_from_zero_within_the_day(client):
    first = client.post("/generate_code", data={"prompt": "a"}).get_json()["entry"]
    second = client.post("/generate_image", data={"prompt": "b"}).get_json()["entry"]

    assert PERMALINK_RE.match(first).group(2) == "0"
    assert PERMALINK_RE.match(second).group(2) == "1"


def _missing_paths(client) -> list[str]:
    date = date_of(client.post("/generate_code", data={"prompt": "exists"}).get_json()["entry"])
    return [
        "/chatlog/1999-01-01/0",  # unknown date
        f"/chatlog/{date}/99",  # unknown index
        f"/chatlog/{date}/-1",  # negative index
        "/chatlog/not-a-date/0",  # malformed date
        "/chatlog/2024-13-45/0",  # impossible date
        f"/chatlog/{date}/zero",  # index not a number
    ]


def test_unknown_entries_are_json_404_for_json_clients(client):
    for path in _missing_paths(client):
        response = client.get(path, headers=JSON)
        assert response.status_code == 404, path
        assert response.mimetype == "application/json", path
        assert response.get_json()["error"], path


def test_unknown_entries_are_html_404_pages_for_browsers(client):
    for path in _missing_paths(client):
        response = client.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html", path
        assert response.get_data(as_text=True).lstrip().lower().startswith("<!doctype html>"), path


def test_healthz_answers_200(client):
    response = client.get("/healthz")

    assert response.status_code == 200


# -- restart ---------------------------------------------------------------------------------


def test_history_survives_a_restart(make_app, upstream):
    first = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    code = first.post("/generate_code", data={"prompt": "before restart"}).get_json()
    image = first.post("/generate_image", data={"prompt": "picture before restart"}).get_json()
    export = first.get("/chatlog.json").get_json()

    second = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    assert second.get("/chatlog.json").get_json() == export
    assert second.get(code["entry"], headers=JSON).get_json()["prompt"] == "before restart"
    assert second.get(image["entry"], headers=JSON).get_json()["image_url"] == image["image_url"]


def test_images_survive_a_restart(make_app, upstream):
    first = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    url = first.post("/generate_image", data={"prompt": "kept"}).get_json()["image_url"]
    original = first.get(url).data

    second = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()

    response = second.get(url)
    assert response.status_code == 200
    assert response.data == original


def test_new_entries_after_restart_do_not_reuse_permalinks(make_app, upstream):
    first = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    old = first.post("/generate_code", data={"prompt": "old"}).get_json()["entry"]

    second = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()
    new = second.post("/generate_code", data={"prompt": "new"}).get_json()["entry"]

    assert new != old
    assert second.get(old, headers=JSON).get_json()["prompt"] == "old"


# -- a real server over HTTP -----------------------------------------------------------------


@pytest.fixture
def http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # 127.0.0.1 only, never through a configured proxy
    yield session
    session.close()


def test_live_generate_code_then_export(app, live_server, http):
    server = live_server(app)

    generated = http.post(server.url + "/generate_code", data={"prompt": "over http"}, timeout=10)
    export = http.get(server.url + "/chatlog.json", timeout=10)

    assert generated.status_code == 200
    body = generated.json()
    assert export.json() == {date_of(body["entry"]): [{"prompt": "over http", "response": body["code"]}]}


def test_live_generated_image_is_downloadable(app, live_server, http):
    server = live_server(app)

    url = http.post(server.url + "/generate_image", data={"prompt": "over http"}, timeout=10).json()[
        "image_url"
    ]
    image = http.get(server.url + url, timeout=10)

    assert image.status_code == 200
    assert image.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).format == "PNG"


def test_live_seed_jquery_post_gets_json(app, live_server, http):
    server = live_server(app)

    response = http.post(
        server.url + "/generate_code",
        data={"prompt": "jquery over http"},
        headers={"X-Requested-With": "XMLHttpRequest", "Accept": "*/*"},
        timeout=10,
    )

    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["code"]


def test_live_json_body_prompt(app, live_server, http):
    server = live_server(app)

    response = http.post(server.url + "/generate_code", json={"prompt": "json over http"}, timeout=10)

    assert response.status_code == 200
    entry = http.get(server.url + response.json()["entry"], headers=JSON, timeout=10).json()
    assert entry["prompt"] == "json over http"


def test_live_empty_prompt_is_400_json(app, live_server, http):
    server = live_server(app)

    response = http.post(server.url + "/generate_image", data={"prompt": ""}, timeout=10)

    assert response.status_code == 400
    assert response.json()["error"]
