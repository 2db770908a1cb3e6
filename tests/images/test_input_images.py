"""A picture attached to a code prompt: accepted as a multipart file or a `data:` URL, checked
and stored like generated images, sent upstream as content parts (and with later follow-ups),
refused clearly when it is anything else, shown beside its prompt, exported, deleted with its
entry.

Through the real openai client against the local upstream (tests/support/upstream.py), asserting the
`messages` it received. The tests of what is stored with an entry (its picture, its follow-ups,
its versions, its export, its deletion) run on TinyDB files and a real PostgreSQL; the rest on
TinyDB.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from ..support.apps import ON_EVERY_ENGINE, TEST_KEY
from ..support.conversations import CHAT, entry_count, only, post_code, sent_messages, stored
from ..support.html import parse
from ..support.htmx import HX
from ..support.upstream import Reply, chat_completion, error_body, png_bytes

REFUSED = "This model does not accept images. Remove the image or choose another model."
NOT_AN_IMAGE = "The attached file is not a PNG, JPEG, WEBP or GIF image."
TOO_BIG = "The attached image is larger than 20 MB."
BAD_DATA_URL = 'The image must be a data URL of a PNG, JPEG, WEBP or GIF image: "data:image/png;base64,…".'


def encoded(size: tuple[int, int], fmt: str, colour=(200, 60, 30), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt, **save)
    return out.getvalue()


def as_data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def post_with_file(
    client, prompt: str, data: bytes, filename: str = "shot.png", *, htmx: bool = False, **fields
):
    """POST /generate_code with a multipart picture (as the prompt form sends it for htmx)."""
    form = {"prompt": prompt, "image": (io.BytesIO(data), filename), **fields}
    headers = HX if htmx else {}
    return client.post("/generate_code", data=form, content_type="multipart/form-data", headers=headers)


def stream_url(post) -> str:
    """The event stream a streamed htmx answer connects to."""
    return parse(post.get_data(as_text=True)).find_all("div")[0].attrs["sse-connect"]


def stored_picture(client, entry: dict) -> bytes:
    response = client.get(entry["input_image_url"])
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    return response.get_data()


def image_files(data_dir: Path) -> list[str]:
    folder = data_dir / "images"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width`×`height` pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


# -- what the upstream receives --------------------------------------------------------------------


def test_an_uploaded_picture_goes_upstream_as_text_then_image_url_of_the_stored_copy(client, upstream):
    response = post_with_file(client, "Turn this screenshot into HTML", png_bytes((64, 48)))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    picture = stored_picture(client, body)
    assert Image.open(io.BytesIO(picture)).size == (64, 48)
    assert sent_messages(upstream) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Turn this screenshot into HTML"},
                {"type": "image_url", "image_url": {"url": as_data_url(picture)}},
            ],
        }
    ]


def test_a_data_url_in_a_json_body_works_the_same(client, upstream):
    response = client.post(
        "/generate_code", json={"prompt": "What is this?", "image": as_data_url(png_bytes((30, 20)))}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    picture = stored_picture(client, response.get_json())
    parts = sent_messages(upstream)[-1]["content"]
    assert parts == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": as_data_url(picture)}},
    ]
    assert (
        stored(client, response.get_json()["entry"])["input_image_url"]
        == response.get_json()["input_image_url"]
    )


def test_htmx_streamed_answer_sends_the_picture_too(client, upstream):
    post = post_with_file(client, "Describe it", png_bytes(), "a.png", htmx=True)
    assert post.status_code == 200 and "X-Error-Status" not in post.headers
    events = client.get(stream_url(post)).get_data(as_text=True)
    assert "event: done" in events
    request = upstream.calls(CHAT)[-1]["json"]
    assert request["stream"] is True
    assert [p["type"] for p in request["messages"][-1]["content"]] == ["text", "image_url"]


@pytest.mark.parametrize(
    ("fmt", "mime", "extra"),
    [
        ("JPEG", "image/jpeg", {}),
        ("WEBP", "image/webp", {}),
        ("GIF", "image/gif", {}),
        ("PNG", "image/png", {}),
    ],
    ids=["jpeg", "webp", "gif", "png"],
)
def test_each_accepted_format_is_stored_once_as_a_png(data_dir, client, upstream, fmt, mime, extra):
    response = client.post(
        "/generate_code", json={"prompt": "Look", "image": as_data_url(encoded((40, 30), fmt, **extra), mime)}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    picture = Image.open(io.BytesIO(stored_picture(client, response.get_json())))
    assert (picture.format, picture.size) == ("PNG", (40, 30))
    name = response.get_json()["input_image_url"].rsplit("/", 1)[1]
    assert image_files(data_dir) == sorted([name, name.replace(".png", ".thumb.webp")])


def test_metadata_is_stripped_from_an_attached_picture(client, upstream):
    exif = Image.Exif()
    exif[0x010E] = "SECRET-GPS-AND-CAMERA"  # ImageDescription
    jpeg = encoded((40, 30), "JPEG", exif=exif.tobytes())
    assert b"SECRET-GPS-AND-CAMERA" in jpeg
    response = post_with_file(client, "Look", jpeg, "photo.jpg")
    assert response.status_code == 200
    assert b"SECRET-GPS-AND-CAMERA" not in stored_picture(client, response.get_json())
    assert "SECRET-GPS-AND-CAMERA" not in str(upstream.calls(CHAT)[-1]["json"])


# -- what is refused -------------------------------------------------------------------------------

HOSTILE_UPLOADS = {
    "text": (b"just some words", "notes.png", NOT_AN_IMAGE),
    "html": (b"<html><script>alert(1)</script></html>", "page.png", NOT_AN_IMAGE),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "vector.svg", NOT_AN_IMAGE),
    "bmp": (encoded((10, 10), "BMP"), "old.bmp", NOT_AN_IMAGE),
    "tiff": (encoded((10, 10), "TIFF"), "scan.tiff", NOT_AN_IMAGE),
    "truncated": (png_bytes((200, 200))[:120], "cut.png", "The attached image is damaged or incomplete."),
    "bomb": (
        png_claiming(30_000, 30_000),
        "bomb.png",
        "The attached image has too many pixels to decode safely.",
    ),
    "over-20-mb": (png_bytes() + b"\0" * (20 * 1024 * 1024), "huge.png", TOO_BIG),
    "empty": (b"", "empty.png", "The attached image is empty."),
}


@pytest.mark.parametrize(
    ("data", "filename", "message"), HOSTILE_UPLOADS.values(), ids=HOSTILE_UPLOADS.keys()
)
def test_an_unusable_upload_is_a_400_that_stores_nothing_and_asks_nothing(
    app, data_dir, client, upstream, data, filename, message
):
    response = post_with_file(client, "Keep my prompt", data, filename)
    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    assert entry_count(app) == 0
    assert upstream.calls(CHAT) == []
    assert image_files(data_dir) == []


HOSTILE_DATA_URLS = {
    "text-type": ("data:text/plain;base64,aGVsbG8=", BAD_DATA_URL),
    "html-type": ("data:text/html;base64,PGI+aGk8L2I+", BAD_DATA_URL),
    "svg-type": ("data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=", BAD_DATA_URL),
    "not-base64": ("data:image/png,rawbytes", BAD_DATA_URL),
    "bad-base64": (
        "data:image/png;base64,@@not base64@@",
        "The image's data URL does not hold valid base64.",
    ),
    "remote-url": ("http://127.0.0.1:9/secret.png", BAD_DATA_URL),
    "png-type-text-data": (as_data_url(b"plain text, not a picture"), NOT_AN_IMAGE),
    "too-big": ("data:image/png;base64," + "A" * (28 * 1024 * 1024), TOO_BIG),
}


@pytest.mark.parametrize(("image", "message"), HOSTILE_DATA_URLS.values(), ids=HOSTILE_DATA_URLS.keys())
def test_an_unusable_data_url_is_a_400_that_stores_nothing_and_asks_nothing(
    app, data_dir, client, upstream, image, message
):
    response = client.post("/generate_code", json={"prompt": "Keep my prompt", "image": image})
    assert response.status_code == 400
    assert response.get_json() == {"error": message}
    assert entry_count(app) == 0
    assert upstream.calls(CHAT) == []
    assert image_files(data_dir) == []


@pytest.mark.parametrize(
    "image", [42, ["data:image/png;base64,AAAA"], {"url": "x"}], ids=["number", "list", "object"]
)
def test_an_image_field_that_is_not_a_string_is_a_400(app, client, upstream, image):
    response = client.post("/generate_code", json={"prompt": "Keep my prompt", "image": image})
    assert response.status_code == 400
    assert response.get_json() == {"error": BAD_DATA_URL}
    assert entry_count(app) == 0


def test_a_body_beyond_the_request_cap_is_a_413(app, client, upstream):
    response = post_with_file(client, "Keep my prompt", b"\0" * (30 * 1024 * 1024), "huge.png")
    assert response.status_code == 413
    assert response.get_json() == {"error": "The request is too large."}
    assert entry_count(app) == 0


def test_a_picture_may_take_the_body_past_the_2_mb_cap(client, upstream):
    noise = Image.frombytes("RGB", (1100, 1000), bytes(range(256)) * 12_890 + bytes(160))
    out = io.BytesIO()
    noise.save(out, format="PNG", compress_level=0)
    assert out.tell() > 3 * 1024 * 1024
    response = client.post("/generate_code", json={"prompt": "Look", "image": as_data_url(out.getvalue())})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert Image.open(io.BytesIO(stored_picture(client, response.get_json()))).size == (1100, 1000)


def test_htmx_refusal_shows_the_message_and_keeps_the_form(app, client, upstream):
    response = post_with_file(client, "Keep my prompt", b"not a picture", "x.png", htmx=True)
    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "400"
    alert = only(parse(response.get_data(as_text=True)).find_all("div"))
    assert (alert.attrs["role"], alert.text) == ("alert", NOT_AN_IMAGE)
    assert "HX-Trigger" not in response.headers  # the box keeps the prompt and the picture
    assert entry_count(app) == 0


# -- conversations ---------------------------------------------------------------------------------


@ON_EVERY_ENGINE
def test_a_followup_carries_the_earlier_picture(client, upstream):
    upstream.script(CHAT, Reply(json=chat_completion("It is a red square.")))
    first = post_with_file(client, "What is this?", png_bytes((20, 20))).get_json()
    picture = stored_picture(client, first)
    post_code(client, "Make it blue in CSS", parent=first["entry"])
    assert sent_messages(upstream) == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": as_data_url(picture)}},
            ],
        },
        {"role": "assistant", "content": "It is a red square."},
        {"role": "user", "content": "Make it blue in CSS"},
    ]


def test_a_picture_counts_a_fixed_cost_against_the_context_budget(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, context_chars=3_500
    ).test_client()
    upstream.script(CHAT, Reply(json=chat_completion("a" * 600)), Reply(json=chat_completion("b" * 600)))
    with_picture = post_with_file(client, "Q1", png_bytes()).get_json()["entry"]
    without = post_code(client, "Q1 again")["entry"]
    # 600 characters of answer fit; 600 plus a picture (3,000) do not.
    body = post_code(client, "short", parent=with_picture)
    assert sent_messages(upstream) == [{"role": "user", "content": "short"}]
    assert stored(client, body["entry"])["context_dropped"] == 1
    post_code(client, "short", parent=without)
    assert len(sent_messages(upstream)) == 3


def test_the_oldest_turns_go_first_pictures_or_not(make_app, upstream):
    client = make_app(
        openai_api_key=TEST_KEY, openai_base_url=upstream.url, context_chars=4_000
    ).test_client()
    upstream.script(CHAT, Reply(json=chat_completion("A1")), Reply(json=chat_completion("A2")))
    t1 = post_with_file(client, "Q1", png_bytes()).get_json()["entry"]
    t2 = post_with_file(client, "Q2", png_bytes((10, 10)), parent=t1).get_json()["entry"]
    body = post_code(client, "Q3", parent=t2)
    messages = sent_messages(upstream)
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0] == {"type": "text", "text": "Q2"}
    assert stored(client, body["entry"])["context_dropped"] == 1


# -- a model that takes no pictures -----------------------------------------------------------------

NO_IMAGES = error_body(
    "Invalid content type. image_url is only supported by certain models.", "invalid_request_error"
)


def test_a_model_refusing_pictures_gets_its_own_message_and_keeps_the_prompt(client, upstream):
    upstream.script(CHAT, Reply(status=400, json=NO_IMAGES))
    response = post_with_file(client, "Turn this into HTML", png_bytes())
    assert response.status_code == 400
    assert response.get_json()["error"] == REFUSED
    entry = stored(client, response.get_json()["entry"])
    assert (entry["status"], entry["prompt"], entry["error"]) == ("failed", "Turn this into HTML", REFUSED)
    assert "input_image_url" in entry  # the picture stays with the failed entry, for Edit


def test_a_model_refusing_pictures_while_streaming_says_so(client, upstream):
    upstream.script(CHAT, Reply(status=400, json=NO_IMAGES))
    post = post_with_file(client, "Turn this into HTML", png_bytes(), "a.png", htmx=True)
    events = client.get(stream_url(post)).get_data(as_text=True)
    assert REFUSED in events
    assert "Turn this into HTML" in events


def test_a_400_about_pictures_without_pictures_keeps_the_general_message(client, upstream):
    upstream.script(CHAT, Reply(status=400, json=NO_IMAGES))
    response = client.post("/generate_code", data={"prompt": "Just text"})
    assert response.status_code == 500
    assert response.get_json()["error"] == "The upstream could not process this request (400)."


# -- shown, exported, deleted ----------------------------------------------------------------------


def test_the_entry_shows_its_picture_beside_the_prompt(client, upstream):
    body = post_with_file(client, "What is this?", png_bytes()).get_json()
    page = parse(client.get(body["entry"]).get_data(as_text=True))
    row = only([d for d in page.find_all("div") if d.has_class("prompt-row")])
    link = only(row.find_all("a"))
    image = only(link.find_all("img"))
    assert link.attrs["href"] == body["input_image_url"]
    assert image.attrs["alt"] == "Image sent with the prompt"
    thumb = client.get(image.attrs["src"])
    assert (thumb.status_code, thumb.mimetype) == (200, "image/webp")
    assert "What is this?" in row.text


def test_the_streamed_entry_in_results_shows_the_picture(client, upstream):
    post = post_with_file(client, "Describe it", png_bytes(), "a.png", htmx=True)
    root = parse(post.get_data(as_text=True))
    assert [a.attrs["href"] for a in root.find_all("a") if a.has_class("input-image")] != []
    stream = client.get(stream_url(post)).get_data(as_text=True)
    assert 'class="input-image"' in stream  # the final entry too


@ON_EVERY_ENGINE
def test_full_export_names_the_input_image_url_and_the_seed_export_keeps_two_fields(client, upstream):
    body = post_with_file(client, "What is this?", png_bytes()).get_json()
    rows = client.get("/chatlog.full.json").get_json()
    assert [r["input_image_url"] for r in rows] == [body["input_image_url"]]
    seed = [row for day in client.get("/chatlog.json").get_json().values() for row in day]
    assert seed == [{"prompt": "What is this?", "response": stored(client, body["entry"])["response"]}]


@ON_EVERY_ENGINE
def test_deleting_the_entry_deletes_its_picture(data_dir, client, upstream):
    body = post_with_file(client, "What is this?", png_bytes()).get_json()
    assert len(image_files(data_dir)) == 2
    assert client.delete(body["entry"]).status_code == 200
    assert image_files(data_dir) == []
    assert client.get(body["input_image_url"]).status_code == 404


@ON_EVERY_ENGINE
def test_another_version_keeps_the_picture_as_its_own_copy(data_dir, client, upstream):
    first = post_with_file(client, "What is this?", png_bytes()).get_json()
    again = client.post(f"{first['entry']}/regenerate")
    assert again.status_code == 303
    client.get(again.headers["Location"] + "/stream")
    second = stored(client, again.headers["Location"])
    assert second["input_image_url"] != first["input_image_url"]
    assert stored_picture(client, second) == stored_picture(client, first)
    assert [p["type"] for p in sent_messages(upstream)[-1]["content"]] == ["text", "image_url"]
    client.delete(first["entry"])  # the version's own copy stays
    assert client.get(second["input_image_url"]).status_code == 200


@ON_EVERY_ENGINE
def test_an_edited_version_may_leave_the_picture_out_or_take_another(client, upstream):
    first = post_with_file(client, "What is this?", png_bytes()).get_json()
    without = post_code(client, "What is a square?", replaces=first["entry"], keep_image="0")
    assert "input_image_url" not in without
    assert sent_messages(upstream) == [{"role": "user", "content": "What is a square?"}]
    other = post_with_file(client, "And this?", png_bytes((12, 12)), replaces=first["entry"]).get_json()
    assert Image.open(io.BytesIO(stored_picture(client, other))).size == (12, 12)


def test_the_demo_answer_mentions_the_pictures_size(demo_client):
    response = post_with_file(demo_client, "What is this?", png_bytes((64, 48)))
    assert response.status_code == 200
    assert response.get_json()["code"].endswith("The attached image is 64×48 pixels.")
    again = post_with_file(demo_client, "What is this?", png_bytes((64, 48)))
    assert again.get_json()["code"] == response.get_json()["code"]  # deterministic
