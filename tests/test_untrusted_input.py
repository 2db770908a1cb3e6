"""Untrusted bytes: image formats and sizes, answer length, code-fence lexers, import files, and the
cache policy of images behind a login. Real HTTP to the local upstream, real files in DATA_DIR."""

from __future__ import annotations

import base64
import io
import json
import os

import pytest
from PIL import Image

from app.images.fetch import MAX_DOWNLOAD_BYTES
from app.rendering import render_markdown

from .support.apps import TEST_KEY
from .support.htmx import HX, htmx_generate_code
from .support.upstream import Reply, chat_completion, png_bytes

GENERATIONS = "/v1/images/generations"
NOT_AN_IMAGE = "The upstream's response is not an image."
JSON = {"Accept": "application/json"}
PASSWORD = "a long enough test password"


def image_bytes(kind: str) -> bytes:
    if kind == "EPS":
        # Pillow identifies this header and would hand the file to Ghostscript to render.
        return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 120, 200)).save(out, format=kind)
    return out.getvalue()


@pytest.fixture
def client(make_app, upstream):
    return make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url).test_client()


def images_on_disk(data_dir) -> list[str]:
    return sorted(os.listdir(data_dir / "images"))


# -- image formats and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["BMP", "TIFF", "EPS", "ICO", "PPM"])
def test_downloaded_image_in_another_format_is_refused_as_not_an_image(client, upstream, data_dir, kind):
    url = upstream.serve_file("/files/odd.img", image_bytes(kind), "image/png")
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"url": url}]}))

    response = client.post("/generate_image", data={"prompt": "a fox"})

    assert response.status_code == 500
    assert response.get_json()["error"] == NOT_AN_IMAGE
    assert images_on_disk(data_dir) == []


@pytest.mark.parametrize("kind", ["BMP", "TIFF", "EPS"])
def test_b64_image_in_another_format_is_refused_as_not_an_image(client, upstream, data_dir, kind):
    b64 = base64.b64encode(image_bytes(kind)).decode()
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"b64_json": b64}]}))

    response = client.post("/generate_image", data={"prompt": "a fox"})

    assert response.status_code == 500
    assert response.get_json()["error"] == NOT_AN_IMAGE
    assert images_on_disk(data_dir) == []


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "WEBP", "GIF"])
def test_the_four_image_formats_are_accepted(client, upstream, kind):
    b64 = base64.b64encode(image_bytes(kind)).decode()
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"b64_json": b64}]}))

    response = client.post("/generate_image", data={"prompt": "a fox"})

    assert response.status_code == 200
    assert response.get_json()["image_url"].startswith("/images/")


def test_b64_image_over_the_download_cap_is_refused_before_decoding(client, upstream, data_dir):
    too_big = base64.b64encode(png_bytes() + b"\0" * MAX_DOWNLOAD_BYTES).decode()
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"b64_json": too_big}]}))

    response = client.post("/generate_image", data={"prompt": "a fox"})

    assert response.status_code == 500
    assert response.get_json()["error"] == "The upstream's image is too large."
    assert images_on_disk(data_dir) == []


# -- answers are bounded ---------------------------------------------------------------------------

LIMIT = 1_000
LONG = "".join(f"line {n:05d} of a very long answer\n" for n in range(400))  # about 12,000 chars


def test_long_answer_is_cut_at_max_answer_chars_kept_and_marked(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, max_answer_chars=LIMIT
    ).test_client()
    upstream.script("/v1/chat/completions", Reply(json=chat_completion(LONG)))

    response = client.post("/generate_code", data={"prompt": "talk a lot"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["code"] == LONG[:LIMIT]
    assert body["truncated"] is True
    entry = client.get(body["entry"], headers=JSON).get_json()
    assert entry["response"] == LONG[:LIMIT]
    assert entry["status"] == "done"
    assert entry["truncated"] is True
    page = client.get(body["entry"]).get_data(as_text=True)
    assert "The answer was cut at 1000 characters" in page


def test_streamed_answer_is_cut_at_max_answer_chars_kept_and_marked(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, max_answer_chars=LIMIT
    ).test_client()
    upstream.script(
        "/v1/chat/completions", Reply(chunks=[LONG[i : i + 100] for i in range(0, len(LONG), 100)])
    )

    answer = htmx_generate_code(client, "talk a lot, streamed")

    assert "".join(answer.tokens).replace("&#39;", "'") == LONG[:LIMIT]
    assert "The answer was cut at 1000 characters" in answer.final
    permalink = json.loads(client.get("/chatlog", headers=JSON).get_data(as_text=True))
    entries = [row for rows in permalink.values() for row in rows]
    assert entries[0]["response"] == LONG[:LIMIT]


def test_answer_within_the_limit_is_not_marked(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, max_answer_chars=LIMIT
    ).test_client()

    response = client.post("/generate_code", data={"prompt": "short"})
    body = response.get_json()

    assert response.status_code == 200
    assert body["code"].startswith("Answer to: short")
    assert "truncated" not in body
    entry = client.get(body["entry"], headers=JSON)
    assert entry.status_code == 200
    assert entry.get_json()["response"] == body["code"]
    assert "truncated" not in entry.get_json()
    page = client.get(body["entry"])
    assert page.status_code == 200
    assert "Answer to: short" in page.get_data(as_text=True)
    assert "cut at" not in page.get_data(as_text=True)


def test_max_answer_chars_setting_is_read_and_checked():
    from app.config import ConfigError, load_settings

    assert load_settings({}, env_file=None).max_answer_chars == 200_000
    assert load_settings({"MAX_ANSWER_CHARS": "5000"}, env_file=None).max_answer_chars == 5000
    with pytest.raises(ConfigError, match="MAX_ANSWER_CHARS"):
        load_settings({"MAX_ANSWER_CHARS": "lots"}, env_file=None)


# -- code fences name only the app's lexers --------------------------------------------------------


def test_fence_with_a_lexer_outside_the_apps_list_is_plain_text():
    html = render_markdown("```brainfuck\n+[>+<-]\n```")

    assert "+[&gt;+&lt;-]" in html
    assert "<span" not in html


def test_fence_with_a_listed_lexer_is_highlighted():
    html = render_markdown("```python\nimport os\n```")

    assert '<span class="kn">import</span>' in html


# -- import files ----------------------------------------------------------------------------------


def upload(client, content: bytes, headers=None):
    return client.post(
        "/chatlog/import", data={"file": (io.BytesIO(content), "chatlog.json")}, headers=headers or {}
    )


def test_deeply_nested_import_is_a_clear_400(demo_client):
    response = upload(demo_client, b"[" * 200_000 + b"]" * 200_000)

    assert response.status_code == 400
    assert "nested too deeply" in response.get_json()["error"]


def test_deeply_nested_import_is_an_alert_for_htmx(demo_client):
    response = upload(demo_client, b'{"2024-01-01": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", HX)

    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "400"
    assert "nested too deeply" in response.get_data(as_text=True)


def test_cli_import_of_a_deeply_nested_file_fails_with_a_message(demo_app, tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * 200_000 + b"]" * 200_000)

    result = demo_app.test_cli_runner().invoke(args=["import-chatlog", str(path)])

    assert result.exit_code == 1
    assert "nested too deeply" in result.output
    assert "Traceback" not in result.output


def test_import_with_too_many_rows_names_the_limit(demo_app, monkeypatch):
    monkeypatch.setattr("app.services.importing.MAX_IMPORT_ROWS", 5)
    rows = [{"prompt": f"p{n}", "response": "r"} for n in range(6)]

    response = upload(demo_app.test_client(), json.dumps({"2024-01-01": rows}).encode())

    assert response.status_code == 400
    assert "6 entries" in response.get_json()["error"]
    assert "at most 5" in response.get_json()["error"]
    assert demo_app.extensions["chatlog"].count() == 0


@pytest.mark.parametrize(
    ("field", "limit_name"),
    [("prompt", "MAX_PROMPT_CHARS"), ("response", "MAX_ANSWER_CHARS"), ("error", "10000")],
)
def test_import_with_an_overlong_field_names_the_limit(make_app, field, limit_name):
    app = make_app(max_prompt_chars=100, max_answer_chars=1_000)
    row = {"prompt": "p", "response": "r", field: "x" * 20_000}

    response = upload(app.test_client(), json.dumps({"2024-01-01": [row]}).encode())

    assert response.status_code == 400
    message = response.get_json()["error"]
    assert limit_name in message
    assert "2024-01-01" in message
    assert app.extensions["chatlog"].count() == 0


def test_imported_row_cannot_claim_another_entrys_image(demo_app, data_dir):
    client = demo_app.test_client()
    owner = client.post("/generate_image", data={"prompt": "my own fox"}).get_json()
    file = data_dir / "images" / owner["image_url"].removeprefix("/images/")
    assert file.is_file()
    hostile = {"2024-01-01": [{"prompt": "not the owner", "response": owner["image_url"]}]}

    assert upload(client, json.dumps(hostile).encode()).status_code == 200
    imported = client.get("/chatlog/2024-01-01/0", headers=JSON).get_json()
    deleted = client.delete("/chatlog/2024-01-01/0")

    assert deleted.status_code == 200
    assert "image_url" not in imported or imported["image_url"] is None
    assert file.is_file()
    assert client.get(owner["image_url"]).status_code == 200


def test_an_orphaned_image_is_claimed_by_one_imported_row_only(demo_app, data_dir):
    client = demo_app.test_client()
    made = client.post("/generate_image", data={"prompt": "a fox"}).get_json()
    # The history lost the entry, the image file is still there: an import brings it back, once.
    date, index = made["entry"].removeprefix("/chatlog/").split("/")
    demo_app.extensions["chatlog"].delete(date, int(index))
    assert (data_dir / "images" / made["image_url"].removeprefix("/images/")).is_file()
    rows = [
        {"prompt": "first", "response": made["image_url"]},
        {"prompt": "second", "response": made["image_url"]},
    ]

    assert upload(client, json.dumps({"2024-01-01": rows}).encode()).status_code == 200

    first = client.get("/chatlog/2024-01-01/0", headers=JSON).get_json()
    second = client.get("/chatlog/2024-01-01/1", headers=JSON).get_json()
    assert first.get("image_url") == made["image_url"]
    assert second.get("image_url") is None


def test_cli_import_cannot_claim_another_entrys_image(demo_app, data_dir, tmp_path):
    client = demo_app.test_client()
    owner = client.post("/generate_image", data={"prompt": "my own fox"}).get_json()
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps({"2024-01-01": [{"prompt": "not the owner", "response": owner["image_url"]}]}))

    result = demo_app.test_cli_runner().invoke(args=["import-chatlog", str(path)])
    client.delete("/chatlog/2024-01-01/0")

    assert result.exit_code == 0, result.output
    assert client.get(owner["image_url"]).status_code == 200


# -- images behind a login are private to the browser ---------------------------------------------


def test_images_behind_a_login_are_cache_control_private(make_app):
    client = make_app(app_password=PASSWORD).test_client()
    client.post("/login", data={"password": PASSWORD, "next": "/"})
    url = client.post("/generate_image", data={"prompt": "a fox"}).get_json()["image_url"]

    response = client.get(url)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, max-age=31536000, immutable"


def test_images_without_a_login_stay_public(demo_client):
    url = demo_client.post("/generate_image", data={"prompt": "a fox"}).get_json()["image_url"]

    response = demo_client.get(url)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
