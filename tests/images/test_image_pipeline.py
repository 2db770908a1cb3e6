"""The image pipeline end to end: POST /generate_image through the real openai client to the local
upstream, the fetch of the returned URL (SSRF rules, caps, timeouts), validation, metadata
stripping, the stored files and thumbnails, serving, downloads, options per model and the gallery.

Private addresses are refused by the app before it connects; as a safety net every test runs with
a guard around urllib3's connect that records each attempt and refuses anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import os
import random
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import urllib3.util.connection
from PIL import Image, PngImagePlugin

from app.images.codec import MAX_PIXELS
from app.images.fetch import fetch_image
from app.providers import BadImage

from ..support.apps import TEST_KEY
from ..support.htmx import HX
from ..support.upstream import Reply, png_bytes

GENERATIONS = "/v1/images/generations"
SECRET = "sk-live-SECRET-metadata-0123456789abcdef"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "chatlog.sample.json"
HUGE = 21 * 1024 * 1024  # above the 20 MB download cap
PNG_CHUNKS_KEPT = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}


# -- helpers -----------------------------------------------------------------------------------


def noisy_png(size: tuple[int, int] = (600, 400), seed: int = 0, **params) -> bytes:
    """A PNG of random pixels: it does not compress, so a thumbnail is much smaller."""
    width, height = size
    image = Image.frombytes("RGB", size, random.Random(seed).randbytes(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


@functools.cache
def bomb_png() -> bytes:
    """A small PNG file that declares 20000x20000 = 400 million pixels."""
    assert MAX_PIXELS < 20000 * 20000
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")
    return out.getvalue()


def png_chunk_types(data: bytes) -> list[bytes]:
    pos, kinds = 8, []
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def answer_with_url(upstream, url: str) -> None:
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"url": url}]}))


def answer_with_file(upstream, path: str, body: bytes, content_type: str = "image/png") -> str:
    url = upstream.serve_file(path, body, content_type)
    answer_with_url(upstream, url)
    return url


def answer_with_b64(upstream, data: bytes) -> None:
    b64 = base64.b64encode(data).decode()
    upstream.script(GENERATIONS, Reply(json={"created": 0, "data": [{"b64_json": b64}]}))


def redirect(location: str) -> Reply:
    return Reply(status=302, headers={"Location": location}, body=b"", content_type="text/plain")


def generate(client, prompt: str = "A red fox in the snow", headers=None, **fields):
    return client.post("/generate_image", data={"prompt": prompt, **fields}, headers=headers or {})


def image_files(data_dir: Path) -> list[str]:
    return sorted(os.listdir(data_dir / "images"))


def entry_data(client, permalink: str) -> dict:
    response = client.get(permalink, headers={"Accept": "application/json"})
    assert response.status_code == 200
    return response.get_json()


def file_for(data_dir: Path, image_url: str) -> Path:
    assert image_url.startswith("/images/")
    return data_dir / "images" / image_url.removeprefix("/images/")


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.convert("RGBA").tobytes()


def host_port(upstream) -> str:
    return urlsplit(upstream.origin).netloc


@pytest.fixture(autouse=True)
def connections(monkeypatch) -> list[tuple]:
    """Every connect `requests` makes, recorded; anything but 127.0.0.1 is refused unopened."""
    attempts: list[tuple] = []
    real = urllib3.util.connection.create_connection

    def guarded(address, *args, **kwargs):
        attempts.append(tuple(address))
        if address[0] != "127.0.0.1":
            raise OSError(f"test guard: refused to connect to {address!r}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)
    return attempts


@pytest.fixture
def raw_routes(upstream, monkeypatch) -> dict:
    """Paths on the upstream answered by a function writing the raw HTTP reply (handler) -> None."""
    routes: dict = {}
    original = upstream._handle

    def handle(handler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        route = routes.get(path)
        if route is None:
            original(handler, method)
            return
        upstream.requests.append({"method": method, "path": path, "json": None, "headers": {}})
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            route(handler)
        handler.close_connection = True

    monkeypatch.setattr(upstream, "_handle", handle)
    return routes


def trickle(body: bytes, pieces: int, pause: float):
    """A reply that sends its headers at once, then `body` in `pieces` with a pause before each."""

    def send(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.flush()
        step = -(-len(body) // pieces)
        for start in range(0, len(body), step):
            time.sleep(pause)
            handler.wfile.write(body[start : start + step])
            handler.wfile.flush()

    return send


def undeclared(body: bytes):
    """A reply with no Content-Length: the body runs until the connection closes."""

    def send(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Connection", "close")
        handler.end_headers()
        view = memoryview(body)
        for start in range(0, len(body), 1 << 20):
            handler.wfile.write(view[start : start + (1 << 20)])

    return send


# -- bad images: each case scripts the upstream, gives the expected message and settings -------


def case_html_page(upstream, raw_routes):
    answer_with_file(upstream, "/files/page.png", b"<html><body>Sign in</body></html>", "text/html")


def case_random_b64(upstream, raw_routes):
    answer_with_b64(upstream, random.Random(1).randbytes(2000))


def case_truncated_png(upstream, raw_routes):
    data = noisy_png((200, 200))
    answer_with_file(upstream, "/files/cut.png", data[: len(data) // 2])


def case_huge_download(upstream, raw_routes):
    answer_with_file(upstream, "/files/huge.png", b"\0" * HUGE)


def case_huge_undeclared_download(upstream, raw_routes):
    raw_routes["/files/endless.png"] = undeclared(b"\0" * HUGE)
    answer_with_url(upstream, upstream.origin + "/files/endless.png")


def case_decompression_bomb(upstream, raw_routes):
    answer_with_file(upstream, "/files/bomb.png", bomb_png())


def _redirect_case(location: str):
    def case(upstream, raw_routes):
        target = location.replace("PORT", str(urlsplit(upstream.origin).port))
        upstream.script("/files/hop.png", redirect(target))
        answer_with_url(upstream, upstream.origin + "/files/hop.png")

    return case


def case_redirect_chain_of_four(upstream, raw_routes):
    for n in range(4):
        upstream.script(f"/files/r{n}.png", redirect(f"{upstream.origin}/files/r{n + 1}.png"))
    upstream.serve_file("/files/r4.png", png_bytes())
    answer_with_url(upstream, upstream.origin + "/files/r0.png")


def case_slow_download(upstream, raw_routes):
    upstream.script("/files/slow.png", Reply(body=png_bytes(), content_type="image/png", delay=3.0))
    answer_with_url(upstream, upstream.origin + "/files/slow.png")


def case_trickling_download(upstream, raw_routes):
    # Each piece arrives well within a socket timeout, the whole body far past UPSTREAM_TIMEOUT.
    raw_routes["/files/trickle.png"] = trickle(png_bytes(), pieces=6, pause=0.4)
    answer_with_url(upstream, upstream.origin + "/files/trickle.png")


PRIVATE = "private or local address"
TIMED_OUT = "Downloading the generated image timed out."
BAD_CASES = {
    "html_page": (case_html_page, "The upstream's image URL did not return an image.", {}),
    "random_b64": (case_random_b64, "The upstream's response is not an image.", {}),
    "truncated_png": (case_truncated_png, "The upstream's image is damaged", {}),
    "huge_download": (case_huge_download, "The upstream's image is too large.", {}),
    "huge_undeclared_download": (
        case_huge_undeclared_download,
        "The upstream's image is too large.",
        {},
    ),
    "decompression_bomb": (
        case_decompression_bomb,
        "The upstream's image is too large to decode safely.",
        {},
    ),
    "redirect_to_10.1.2.3": (_redirect_case("http://10.1.2.3/x.png"), PRIVATE, {}),
    "redirect_to_metadata_service": (_redirect_case("http://169.254.169.254/latest"), PRIVATE, {}),
    "redirect_to_ipv6_loopback": (_redirect_case("http://[::1]:1/x"), PRIVATE, {}),
    "redirect_to_other_loopback_ip": (_redirect_case("http://127.0.0.2:PORT/x"), PRIVATE, {}),
    "redirect_chain_of_four": (case_redirect_chain_of_four, "The image URL redirected too often.", {}),
    "slow_download": (case_slow_download, TIMED_OUT, {"upstream_timeout": 1.0}),
}


def run_bad_case(name: str, make_app, upstream, raw_routes):
    """The app's answer to a JSON POST /generate_image whose upstream image is bad in one way."""
    setup, message, overrides = BAD_CASES[name]
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, **overrides)
    client = app.test_client()
    setup(upstream, raw_routes)
    return client, generate(client, "A bad picture"), message


@pytest.fixture(params=list(BAD_CASES))
def bad_generation(request, make_app, upstream, raw_routes):
    return run_bad_case(request.param, make_app, upstream, raw_routes)


def test_bad_image_answers_500_with_its_own_message(bad_generation):
    _, response, message = bad_generation

    assert response.status_code == 500
    assert response.is_json
    assert message in response.get_json()["error"]


def test_bad_image_keeps_the_prompt_as_a_failed_entry(bad_generation):
    client, response, message = bad_generation

    entry = entry_data(client, response.get_json()["entry"])

    assert (entry["prompt"], entry["status"]) == ("A bad picture", "failed")
    assert message in entry["error"]


def test_bad_image_logs_the_image_generation_failure(bad_generation, data_dir):
    assert "Fehler bei der Bildgenerierung" in (data_dir / "app.log").read_text(encoding="utf-8")


def test_bad_image_leaves_nothing_in_the_image_directory(bad_generation, data_dir):
    _, response, message = bad_generation

    assert response.status_code == 500
    assert message in response.get_json()["error"]
    assert image_files(data_dir) == []


def test_download_trickling_past_upstream_timeout_fails_as_a_timeout(
    make_app, upstream, raw_routes, data_dir
):
    # UPSTREAM_TIMEOUT bounds the whole answer: a body whose pieces each arrive within a socket
    # timeout but that takes far longer in total must not be waited out.
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, upstream_timeout=1.0)
    case_trickling_download(upstream, raw_routes)

    response = generate(app.test_client(), "A bad picture")

    assert response.status_code == 500
    assert response.get_json()["error"] == TIMED_OUT
    assert image_files(data_dir) == []


@pytest.mark.parametrize("case", [name for name in BAD_CASES if name.startswith("redirect_to_")])
def test_private_redirect_targets_are_never_connected_to(case, make_app, upstream, raw_routes, connections):
    run_bad_case(case, make_app, upstream, raw_routes)

    assert connections, "the first hop (the upstream) was fetched through the guard"
    assert {address[0] for address in connections} == {"127.0.0.1"}
    assert [r["path"] for r in upstream.requests] == [GENERATIONS, "/files/hop.png"]


@pytest.mark.parametrize("case", ["html_page", "random_b64", "redirect_to_10.1.2.3"])
def test_bad_image_for_htmx_is_an_alert_that_keeps_the_prompt(case, client, upstream, raw_routes, data_dir):
    setup, message, _ = BAD_CASES[case]
    setup(upstream, raw_routes)

    response = generate(client, "A bad picture", headers=HX)

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "500"
    assert 'role="alert"' in html
    assert message.replace("'", "&#39;") in html
    assert "A bad picture" in html
    assert image_files(data_dir) == []


# -- good images -------------------------------------------------------------------------------


@pytest.fixture
def big_png() -> bytes:
    return noisy_png((600, 400))


@pytest.fixture(params=["url", "b64_json"])
def stored(request, client, upstream, data_dir, big_png):
    """A 600x400 PNG generated through the upstream (by URL or as b64_json): (response, JSON)."""
    if request.param == "url":
        answer_with_file(upstream, "/files/big.png", big_png)
    else:
        answer_with_b64(upstream, big_png)
    response = generate(client, "A noisy picture")
    return response, response.get_json()


def test_valid_png_answers_200_with_an_app_image_url(stored):
    response, body = stored

    assert response.status_code == 200
    assert re.fullmatch(r"/images/[0-9a-f]{32}\.png", body["image_url"])


def test_valid_png_is_stored_with_its_thumbnail(stored, data_dir):
    _, body = stored
    name = body["image_url"].removeprefix("/images/")

    assert image_files(data_dir) == sorted([name, name.removesuffix(".png") + ".thumb.webp"])


def test_stored_png_has_the_upstream_pixels(stored, data_dir, big_png):
    _, body = stored

    assert pixels(file_for(data_dir, body["image_url"]).read_bytes()) == pixels(big_png)


def test_thumbnail_is_a_webp_of_at_most_256_px(stored, data_dir):
    _, body = stored
    thumb = file_for(data_dir, body["image_url"].removesuffix(".png") + ".thumb.webp")

    with Image.open(thumb) as image:
        assert image.format == "WEBP"
        assert max(image.size) == 256
        assert image.size == (256, 171)


def test_thumbnail_is_much_smaller_than_the_original(stored, data_dir):
    _, body = stored
    original = file_for(data_dir, body["image_url"])
    thumb = original.with_name(original.name.removesuffix(".png") + ".thumb.webp")

    assert thumb.stat().st_size * 4 < original.stat().st_size


def test_history_stores_the_app_image_url(stored, client):
    _, body = stored

    export = client.get("/chatlog.json").get_json()

    assert [row["response"] for rows in export.values() for row in rows] == [body["image_url"]]


@pytest.mark.parametrize("source", ["/chatlog.json", "/chatlog.full.json"])
def test_exports_never_contain_the_upstream_address(stored, client, upstream, source):
    text = client.get(source).get_data(as_text=True)

    assert "/images/" in text
    assert host_port(upstream) not in text


def test_day_files_never_contain_the_upstream_address(stored, data_dir, upstream):
    day_files = list((data_dir / "history").glob("*.json"))

    assert day_files
    for path in day_files:
        assert host_port(upstream) not in path.read_text(encoding="utf-8"), path.name


def test_valid_png_for_htmx_shows_the_app_image(client, upstream, big_png):
    answer_with_file(upstream, "/files/big.png", big_png)

    response = generate(client, "A noisy picture", headers=HX)

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "generated"
    assert re.search(r'<img src="/images/[0-9a-f]{32}\.png"', html)
    assert host_port(upstream) not in html


def test_redirect_to_the_trusted_upstream_is_followed(client, upstream, data_dir, big_png):
    upstream.serve_file("/files/final.png", big_png)
    upstream.script("/files/hop.png", redirect(upstream.origin + "/files/final.png"))
    answer_with_url(upstream, upstream.origin + "/files/hop.png")

    response = generate(client)

    assert response.status_code == 200
    assert [c["path"] for c in upstream.requests[-2:]] == ["/files/hop.png", "/files/final.png"]
    assert pixels(file_for(data_dir, response.get_json()["image_url"]).read_bytes()) == pixels(big_png)


def test_three_redirects_are_followed(client, upstream):
    for n in range(3):
        upstream.script(f"/files/r{n}.png", redirect(f"{upstream.origin}/files/r{n + 1}.png"))
    upstream.serve_file("/files/r3.png", png_bytes())
    answer_with_url(upstream, upstream.origin + "/files/r0.png")

    assert generate(client).status_code == 200


def test_fetch_image_refuses_a_loopback_url_when_the_upstream_is_elsewhere(upstream, connections):
    url = upstream.serve_file("/files/local.png", png_bytes())

    with pytest.raises(BadImage, match=PRIVATE):
        fetch_image(url, timeout=5, trusted_upstream="http://api.example.invalid/v1")

    assert upstream.requests == []
    assert connections == []


# -- metadata ----------------------------------------------------------------------------------


@pytest.fixture
def png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"api key {SECRET}")  # tEXt
    info.add_text("Location", "52.52N 13.40E, home", zip=True)  # zTXt
    info.add_itxt("Author", f"Jane Doe {SECRET}")  # iTXt
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"  # Make
    data = noisy_png((120, 80), seed=3, pnginfo=info, exif=exif)
    assert {b"tEXt", b"zTXt", b"iTXt", b"eXIf"} <= set(png_chunk_types(data))
    assert SECRET.encode() in data
    return data


@pytest.fixture
def stripped(client, upstream, data_dir, png_with_metadata) -> bytes:
    answer_with_file(upstream, "/files/meta.png", png_with_metadata)
    response = generate(client)
    assert response.status_code == 200
    return file_for(data_dir, response.get_json()["image_url"]).read_bytes()


def test_stored_png_has_no_text_chunks(stripped):
    with Image.open(io.BytesIO(stripped)) as image:
        image.load()
        assert image.text == {}
        assert not {"Comment", "Location", "Author"} & set(image.info)


def test_stored_png_has_no_exif(stripped):
    with Image.open(io.BytesIO(stripped)) as image:
        image.load()
        assert "exif" not in image.info
        assert dict(image.getexif()) == {}
    assert b"SecretCameraMaker" not in stripped


def test_stored_png_keeps_only_image_chunks(stripped):
    assert set(png_chunk_types(stripped)) <= PNG_CHUNKS_KEPT


def test_stored_png_does_not_contain_the_secret_text(stripped):
    assert SECRET.encode() not in stripped


def test_stripping_metadata_keeps_the_pixels(stripped, png_with_metadata):
    assert pixels(stripped) == pixels(png_with_metadata)


def test_jpeg_with_exif_is_stored_as_png_without_exif(client, upstream, data_dir):
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 60, 30)).save(out, format="JPEG", exif=exif)
    assert b"SecretCameraMaker" in out.getvalue()
    answer_with_file(upstream, "/files/photo.jpg", out.getvalue(), "image/jpeg")

    response = generate(client)

    data = file_for(data_dir, response.get_json()["image_url"]).read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert "exif" not in image.info
    assert b"SecretCameraMaker" not in data


# -- serving -----------------------------------------------------------------------------------


@pytest.fixture
def two_images(client, upstream):
    answer_with_file(upstream, "/files/red.png", png_bytes(colour=(255, 0, 0)))
    answer_with_file(upstream, "/files/blue.png", png_bytes(colour=(0, 0, 255)))
    first = generate(client, "A red square").get_json()["image_url"]
    second = generate(client, "A blue square").get_json()["image_url"]
    return first, second


def test_two_images_are_two_different_files(two_images, data_dir):
    first, second = two_images

    assert first != second
    assert file_for(data_dir, first).read_bytes() != file_for(data_dir, second).read_bytes()


def test_each_image_is_served_with_its_own_bytes(two_images, client, data_dir):
    for url in two_images:
        response = client.get(url)
        assert response.status_code == 200
        assert response.data == file_for(data_dir, url).read_bytes()


def test_image_is_served_as_png_cached_for_ever(two_images, client):
    response = client.get(two_images[0])

    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_thumbnail_is_served_as_webp_cached_for_ever(two_images, client):
    response = client.get(two_images[0].removesuffix(".png") + ".thumb.webp")

    assert response.status_code == 200
    assert response.mimetype == "image/webp"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_missing_thumbnail_falls_back_to_the_png(two_images, client, data_dir):
    url = two_images[0]
    file_for(data_dir, url.removesuffix(".png") + ".thumb.webp").unlink()

    response = client.get(url.removesuffix(".png") + ".thumb.webp")

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data == file_for(data_dir, url).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/images/0123456789abcdef0123456789abcdef.png",
        "/images/0123456789abcdef0123456789abcdef.thumb.webp",
        "/images/app.log",
        "/images/secret_key",
        "/images/..%2Fsecret_key",
        "/images/..%2F..%2Fapp.log",
        "/images/%2E%2E%2Fapp.log",
        "/images/../app.log",
    ],
)
def test_unknown_or_traversal_image_names_are_404(two_images, client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert not response.mimetype.startswith("image/")


# -- download ----------------------------------------------------------------------------------


def download(client, prompt: str):
    permalink = generate(client, prompt).get_json()["entry"]
    return client.get(permalink + "/image")


@pytest.mark.parametrize(
    ("prompt", "filename"),
    [
        ("A red Fox, in the snow!", "a-red-fox-in-the-snow.png"),
        ("Füchse über Köln – Ölgemälde", "fuchse-uber-koln-olgemalde.png"),
        ("日本の猫", "image.png"),
        ("!!! ???", "image.png"),
    ],
)
def test_download_is_an_attachment_named_after_the_prompt(client, prompt, filename):
    response = download(client, prompt)

    disposition = response.headers["Content-Disposition"]
    assert response.status_code == 200
    assert disposition.startswith("attachment")
    assert re.search(r'filename="?([^";]+)"?', disposition).group(1) == filename
    assert disposition.isascii()


def test_download_has_the_stored_bytes(client, data_dir):
    response = download(client, "A red Fox, in the snow!")

    assert response.mimetype == "image/png"
    assert response.data in [p.read_bytes() for p in (data_dir / "images").glob("*.png")]


def test_download_of_a_failed_image_entry_is_404(client, upstream):
    answer_with_b64(upstream, b"not an image")
    permalink = generate(client).get_json()["entry"]

    assert client.get(permalink + "/image").status_code == 404


# -- options per model -------------------------------------------------------------------------


def model_client(make_app, upstream, model: str, **overrides):
    app = make_app(openai_api_key=TEST_KEY, openai_base_url=upstream.url, image_model=model, **overrides)
    return app.test_client()


def sent(upstream) -> dict:
    return upstream.calls(GENERATIONS)[-1]["json"]


@pytest.fixture
def dalle3(make_app, upstream):
    return model_client(make_app, upstream, "dall-e-3")


def test_dalle3_options_are_sent_to_the_upstream(dalle3, upstream):
    response = generate(dalle3, size="1792x1024", quality="hd", style="natural")

    assert response.status_code == 200
    body = sent(upstream)
    assert (body["model"], body["size"], body["quality"], body["style"]) == (
        "dall-e-3",
        "1792x1024",
        "hd",
        "natural",
    )


def test_dalle3_options_are_stored_with_the_entry(dalle3):
    generate(dalle3, size="1792x1024", quality="hd", style="natural")

    (entry,) = dalle3.get("/chatlog.full.json").get_json()

    assert entry["options"] == {"size": "1792x1024", "quality": "hd", "style": "natural"}


def test_dalle3_options_are_shown_on_the_entry(dalle3):
    permalink = generate(dalle3, size="1792x1024", quality="hd", style="natural").get_json()["entry"]

    html = dalle3.get(permalink).get_data(as_text=True)

    assert "quality: hd" in html
    assert "style: natural" in html


def test_dalle3_refuses_256x256_naming_its_sizes(dalle3, upstream):
    response = generate(dalle3, size="256x256")

    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "256x256" in error
    for size in ("1024x1024", "1792x1024", "1024x1792"):
        assert size in error
    assert upstream.calls(GENERATIONS) == []


def test_dalle3_refuses_quality_ultra(dalle3, upstream):
    response = generate(dalle3, quality="ultra")

    assert response.status_code == 400
    assert "ultra" in response.get_json()["error"]
    assert upstream.calls(GENERATIONS) == []


def test_refused_option_for_htmx_is_an_alert(dalle3, upstream):
    response = generate(dalle3, size="256x256", headers=HX)

    assert response.status_code == 200
    assert response.headers["X-Error-Status"] == "400"
    assert "1792x1024" in response.get_data(as_text=True)
    assert upstream.calls(GENERATIONS) == []


@pytest.fixture
def gpt_image(make_app, upstream):
    return model_client(make_app, upstream, "gpt-image-1")


def test_gpt_image_accepts_1536x1024_high(gpt_image, upstream):
    response = generate(gpt_image, size="1536x1024", quality="high")

    assert response.status_code == 200
    body = sent(upstream)
    assert (body["size"], body["quality"]) == ("1536x1024", "high")
    assert "style" not in body


def test_gpt_image_refuses_a_style(gpt_image, upstream):
    response = generate(gpt_image, style="vivid")

    assert response.status_code == 400
    assert "style" in response.get_json()["error"]
    assert upstream.calls(GENERATIONS) == []


def test_gpt_image_b64_only_answer_is_stored(gpt_image, upstream, data_dir):
    upstream.image_mode = "b64"

    response = generate(gpt_image)

    assert response.status_code == 200
    assert pixels(file_for(data_dir, response.get_json()["image_url"]).read_bytes()) == pixels(png_bytes())
    assert [r["path"] for r in upstream.requests] == [GENERATIONS]


@pytest.fixture
def dalle2(make_app, upstream):
    return model_client(make_app, upstream, "dall-e-2")


def test_dalle2_sends_no_quality_or_style(dalle2, upstream):
    response = generate(dalle2, size="512x512")

    assert response.status_code == 200
    body = sent(upstream)
    assert body["size"] == "512x512"
    assert "quality" not in body
    assert "style" not in body


@pytest.mark.parametrize(("field", "value"), [("quality", "hd"), ("style", "vivid")])
def test_dalle2_refuses_quality_and_style(dalle2, upstream, field, value):
    response = generate(dalle2, **{field: value})

    assert response.status_code == 400
    assert field in response.get_json()["error"]
    assert upstream.calls(GENERATIONS) == []


@pytest.mark.parametrize(
    ("model", "image_size", "expected"),
    [
        ("dall-e-3", "512x512", "1024x1024"),
        ("dall-e-2", "512x512", "512x512"),
        ("dall-e-3", "1024x1792", "1024x1792"),
        ("gpt-image-1", "1792x1024", "1024x1024"),
    ],
)
def test_default_size_is_image_size_if_the_model_accepts_it(make_app, upstream, model, image_size, expected):
    client = model_client(make_app, upstream, model, image_size=image_size)

    assert generate(client).status_code == 200
    assert sent(upstream)["size"] == expected


def select_options(html: str, name: str) -> list[str]:
    match = re.search(rf'<select id="{name}" name="{name}">(.*?)</select>', html, re.DOTALL)
    assert match, f"no select {name!r}"
    return re.findall(r'<option value="([^"]*)"', match.group(1))


def test_index_offers_the_models_sizes(dalle3):
    html = dalle3.get("/").get_data(as_text=True)

    assert '<label for="size">Size' in html
    assert select_options(html, "size") == ["1024x1024", "1792x1024", "1024x1792"]


def test_index_preselects_the_default_size(make_app, upstream):
    client = model_client(make_app, upstream, "dall-e-2", image_size="512x512")

    html = client.get("/").get_data(as_text=True)

    assert re.search(r'<option value="512x512" selected>', html)


def test_index_offers_dalle3_quality_and_style(dalle3):
    html = dalle3.get("/").get_data(as_text=True)

    assert select_options(html, "quality") == ["", "standard", "hd"]
    assert select_options(html, "style") == ["", "vivid", "natural"]


def test_index_offers_gpt_image_qualities_and_no_style(gpt_image):
    html = gpt_image.get("/").get_data(as_text=True)

    assert select_options(html, "size") == ["1024x1024", "1536x1024", "1024x1536"]
    assert select_options(html, "quality") == ["", "low", "medium", "high"]
    assert 'id="style"' not in html


def test_index_offers_dalle2_no_quality_or_style(dalle2):
    html = dalle2.get("/").get_data(as_text=True)

    assert select_options(html, "size") == ["256x256", "512x512", "1024x1024"]
    assert 'id="quality"' not in html
    assert 'id="style"' not in html


# -- gallery -----------------------------------------------------------------------------------

ITEM_RE = re.compile(r'<li class="gallery-item">(.*?)</li>', re.DOTALL)


def gallery_items(html: str) -> list[dict[str, str]]:
    items = []
    for block in ITEM_RE.findall(html):
        img = re.search(r"<img ([^>]*)>", block).group(1)
        items.append(
            {
                "href": re.search(r'<a href="([^"]+)"', block).group(1),
                "src": re.search(r'src="([^"]+)"', img).group(1),
                "img": img,
            }
        )
    return items


def more_url(html: str) -> str | None:
    match = re.search(r'<button[^>]*hx-get="([^"]+)"[^>]*>Load more images</button>', html)
    return match.group(1).replace("&amp;", "&") if match else None


def demo_images(client, count: int) -> list[str]:
    """`count` small demo images; their permalinks in the order they were made."""
    permalinks = []
    for n in range(count):
        response = generate(client, f"Demo picture {n}", size="256x256")
        assert response.status_code == 200
        permalinks.append(response.get_json()["entry"])
    return permalinks


@pytest.fixture
def fifty(demo_client) -> list[str]:
    return demo_images(demo_client, 50)


def test_gallery_lists_thumbnails_newest_first(demo_client):
    made = demo_images(demo_client, 3)

    items = gallery_items(demo_client.get("/images").get_data(as_text=True))

    assert [item["href"] for item in items] == made[::-1]


def test_gallery_thumbnails_are_the_entries_thumbnails(demo_client):
    made = demo_images(demo_client, 2)
    thumbs = [
        entry_data(demo_client, p)["image_url"].removesuffix(".png") + ".thumb.webp" for p in made[::-1]
    ]

    items = gallery_items(demo_client.get("/images").get_data(as_text=True))

    assert [item["src"] for item in items] == thumbs
    for item in items:
        assert demo_client.get(item["src"]).mimetype == "image/webp"


def test_gallery_thumbnails_load_lazily(demo_client):
    demo_images(demo_client, 2)

    items = gallery_items(demo_client.get("/images").get_data(as_text=True))

    assert len(items) == 2
    assert all('loading="lazy"' in item["img"] for item in items)


def test_gallery_first_page_has_48_images_and_a_load_more_button(demo_client, fifty):
    html = demo_client.get("/images").get_data(as_text=True)

    assert [item["href"] for item in gallery_items(html)] == fifty[::-1][:48]
    assert "before=" in (more_url(html) or "")


def test_gallery_next_page_continues_without_repeats(demo_client, fifty):
    first = demo_client.get("/images").get_data(as_text=True)

    second = demo_client.get(more_url(first), headers=HX)

    html = second.get_data(as_text=True)
    assert second.status_code == 200
    assert "<html" not in html
    assert [item["href"] for item in gallery_items(html)] == fifty[::-1][48:]
    assert more_url(html) is None


def test_gallery_with_one_page_has_no_load_more_button(demo_client):
    made = demo_images(demo_client, 2)

    response = demo_client.get("/images")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert [item["href"] for item in gallery_items(html)] == made[::-1]
    assert more_url(html) is None


def import_sample(client) -> None:
    upload = {"file": (io.BytesIO(SAMPLE.read_bytes()), "chatlog.json")}
    response = client.post("/chatlog/import", data=upload, content_type="multipart/form-data")
    assert response.status_code == 200, response.get_data(as_text=True)


def test_imported_dead_images_are_not_in_the_gallery(demo_client):
    import_sample(demo_client)
    made = demo_images(demo_client, 1)

    items = gallery_items(demo_client.get("/images").get_data(as_text=True))

    assert [item["href"] for item in items] == made


def test_gallery_of_only_imported_dead_images_is_empty(demo_client):
    import_sample(demo_client)

    html = demo_client.get("/images").get_data(as_text=True)

    assert gallery_items(html) == []
    assert "No images yet" in html


def test_deleting_an_image_entry_removes_it_from_the_gallery(demo_client):
    keep, gone = demo_images(demo_client, 2)

    assert demo_client.delete(gone).status_code == 200

    items = gallery_items(demo_client.get("/images").get_data(as_text=True))
    assert [item["href"] for item in items] == [keep]


def test_deleting_an_image_entry_removes_both_files(demo_client, data_dir):
    keep, gone = demo_images(demo_client, 2)
    kept = entry_data(demo_client, keep)["image_url"].removeprefix("/images/").removesuffix(".png")

    demo_client.delete(gone)

    assert image_files(data_dir) == sorted([f"{kept}.png", f"{kept}.thumb.webp"])


# -- imported dead images ----------------------------------------------------------------------


@pytest.fixture
def dead_image_pages(client) -> list[str]:
    """The entry pages of the seed sample's image entries, imported into the upstream-backed app."""
    import_sample(client)
    entries = client.get("/chatlog.full.json").get_json()
    images = [f"/chatlog/{e['date']}/{e['index']}" for e in entries if e["kind"] == "image"]
    assert len(images) == 2
    return [client.get(p).get_data(as_text=True) for p in images]


def test_imported_dead_image_says_it_is_no_longer_available(dead_image_pages):
    for html in dead_image_pages:
        assert "Image no longer available" in html


def test_imported_dead_image_page_has_no_offsite_image(dead_image_pages):
    for html in dead_image_pages:
        for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html):
            assert src.startswith("/") and not src.startswith("//"), src
        assert "oaidalleapiprodscus" not in html
        assert "/static/generated_image.png" not in re.findall(r'src="([^"]*)"', html)


def test_viewing_imported_dead_images_fetches_nothing(dead_image_pages, upstream, connections):
    assert all("Image no longer available" in html for html in dead_image_pages)
    assert upstream.requests == []
    assert connections == []


# -- demo mode ---------------------------------------------------------------------------------


def demo_png(client, data_dir: Path, prompt: str) -> bytes:
    response = generate(client, prompt, size="256x256")
    assert response.status_code == 200
    return file_for(data_dir, response.get_json()["image_url"]).read_bytes()


def test_demo_draws_different_images_for_different_prompts(demo_client, data_dir):
    first = demo_png(demo_client, data_dir, "A red fox in the snow")
    second = demo_png(demo_client, data_dir, "A lighthouse at sunset")

    assert pixels(first) != pixels(second)


def test_demo_draws_the_same_image_for_the_same_prompt(demo_client, data_dir):
    first = demo_png(demo_client, data_dir, "A red fox in the snow")
    second = demo_png(demo_client, data_dir, "A red fox in the snow")

    assert pixels(first) == pixels(second)
    assert len(image_files(data_dir)) == 4
