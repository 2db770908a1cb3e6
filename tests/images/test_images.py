"""Image handling (app.images: codec, fetch, file store) and the demo provider's answers and pictures."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from app.images import FileImageStore
from app.images.codec import MAX_PIXELS, decode_image
from app.images.fetch import fetch_image
from app.providers import BadImage, UpstreamTimeout
from app.providers.demo import demo_answer, demo_image

from ..support.upstream import Reply, png_bytes

ROOT = Path(__file__).resolve().parents[2]


def encode_png(image: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **params)
    return out.getvalue()


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A small PNG file that declares 20000x20000 = 400 million pixels."""
    width = height = 20000
    assert width * height > MAX_PIXELS
    return encode_png(Image.new("1", (width, height)))


@pytest.fixture
def store(data_dir: Path) -> FileImageStore:
    return FileImageStore(data_dir)


def new_id() -> str:
    return uuid.uuid4().hex


def tmp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".tmp")]


# -- decode_image ------------------------------------------------------------------------------


def test_decode_image_accepts_a_png():
    image = decode_image(png_bytes((64, 48)))

    assert image.size == (64, 48)


def test_decode_image_rejects_empty_bytes():
    with pytest.raises(BadImage):
        decode_image(b"")


def test_decode_image_rejects_text():
    with pytest.raises(BadImage):
        decode_image(b"<html><body>Access denied</body></html>")


def test_decode_image_rejects_a_truncated_png():
    data = encode_png(Image.effect_noise((256, 256), 64))

    with pytest.raises(BadImage):
        decode_image(data[: len(data) // 2])


def test_decode_image_rejects_a_decompression_bomb(bomb_png):
    with pytest.raises(BadImage):
        decode_image(bomb_png)


@pytest.mark.slow  # a fresh Python process: make test runs it, make test-fast does not
def test_decode_image_enforces_max_pixels_in_a_fresh_process(tmp_path):
    # 7000x7000 = 49 million pixels: above MAX_PIXELS, below Pillow's own default limit.
    path = tmp_path / "big.png"
    path.write_bytes(encode_png(Image.new("1", (7000, 7000))))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app.images.codec import decode_image\n"
        "from app.providers import BadImage\n"
        "try:\n"
        "    decode_image(Path(sys.argv[1]).read_bytes())\n"
        "except BadImage:\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )

    assert result.returncode == 0, "decode_image accepted an image above MAX_PIXELS"


# -- FileImageStore ----------------------------------------------------------------------------


def test_save_writes_one_png_named_after_the_entry(store):
    entry_id = new_id()

    stored = store.save(entry_id, png_bytes((40, 30)))

    assert stored.name == f"{entry_id}.png"
    assert (stored.width, stored.height) == (40, 30)
    with Image.open(store.root / stored.name) as image:
        assert (image.format, image.size) == ("PNG", (40, 30))


def test_save_keeps_each_entrys_image_in_its_own_file(store):
    first = store.save(new_id(), png_bytes(colour=(255, 0, 0)))
    second = store.save(new_id(), png_bytes(colour=(0, 0, 255)))

    assert (store.root / first.name).read_bytes() != (store.root / second.name).read_bytes()


def test_save_leaves_no_temporary_file(store):
    store.save(new_id(), png_bytes())

    assert tmp_files(store.root) == []


def test_save_strips_png_text_chunks(store):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at 52.52N 13.40E")
    info.add_itxt("Author", "Jane Doe")
    data = encode_png(Image.new("RGB", (32, 32), (10, 20, 30)), pnginfo=info)

    stored = store.save(new_id(), data)

    with Image.open(store.root / stored.name) as image:
        image.load()
        assert "Comment" not in image.info
        assert "Author" not in image.info
        assert not getattr(image, "text", {})


def test_save_strips_exif(store):
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"  # Make
    exif[0x0131] = "SecretSoftware"  # Software
    data = encode_png(Image.new("RGB", (32, 32), (10, 20, 30)), exif=exif)
    with Image.open(io.BytesIO(data)) as original:
        assert dict(original.getexif())  # the input really carries EXIF

    stored = store.save(new_id(), data)

    with Image.open(store.root / stored.name) as image:
        assert "exif" not in image.info
        assert dict(image.getexif()) == {}
    assert b"SecretCameraMaker" not in (store.root / stored.name).read_bytes()


def test_save_rejects_a_non_image_and_writes_nothing(store):
    with pytest.raises(BadImage):
        store.save(new_id(), b"not an image")

    assert os.listdir(store.root) == []


def test_save_rejects_an_entry_id_that_is_not_hex(store):
    with pytest.raises(ValueError):
        store.save("../../escape", png_bytes())


def test_path_of_a_saved_image_is_its_file(store):
    stored = store.save(new_id(), png_bytes())

    assert store.path(stored.name) == store.root / stored.name


def test_path_of_an_unknown_name_is_none(store):
    assert store.path(f"{new_id()}.png") is None


@pytest.mark.parametrize("name", ["../x", "..%2fx", "..%2F..%2Fsecret_key", "../secret_key", "/etc/passwd"])
def test_path_rejects_traversal_names(store, data_dir, name):
    (data_dir / "x").write_text("outside the image directory", encoding="utf-8")
    (data_dir / "secret_key").write_text("0" * 64, encoding="ascii")

    assert store.path(name) is None


def test_path_rejects_a_name_that_is_not_an_entry_id(store):
    (store.root / "x.png").write_bytes(png_bytes())

    assert store.path("x.png") is None


def test_path_rejects_uppercase_hex(store):
    name = f"{new_id().upper()}.png"
    (store.root / name).write_bytes(png_bytes())

    assert store.path(name) is None


def test_path_rejects_a_temporary_file(store):
    name = f".{new_id()}.png.abc.tmp"
    (store.root / name).write_bytes(png_bytes())

    assert store.path(name) is None


# -- fetch_image -------------------------------------------------------------------------------


def test_fetch_image_returns_the_served_bytes(upstream):
    body = png_bytes((20, 10))
    url = upstream.serve_file("/files/ok.png", body)

    assert fetch_image(url, timeout=5, trusted_upstream=upstream.url) == body


def test_fetch_image_of_a_missing_file_is_a_bad_image(upstream):
    with pytest.raises(BadImage):
        fetch_image(upstream.origin + "/files/missing.png", timeout=5, trusted_upstream=upstream.url)


def test_fetch_image_of_an_html_page_is_a_bad_image(upstream):
    url = upstream.serve_file("/files/page.png", b"<html>Sign in</html>", content_type="text/html")

    with pytest.raises(BadImage):
        fetch_image(url, timeout=5, trusted_upstream=upstream.url)


def test_fetch_image_larger_than_max_bytes_is_a_bad_image(upstream):
    body = png_bytes((200, 200))
    url = upstream.serve_file("/files/large.png", body)

    with pytest.raises(BadImage):
        fetch_image(url, timeout=5, max_bytes=len(body) - 1, trusted_upstream=upstream.url)


def test_fetch_image_of_exactly_max_bytes_succeeds(upstream):
    body = png_bytes((200, 200))
    url = upstream.serve_file("/files/exact.png", body)

    assert fetch_image(url, timeout=5, max_bytes=len(body), trusted_upstream=upstream.url) == body


def test_fetch_image_slower_than_the_timeout_raises_upstream_timeout(upstream):
    upstream.script("/files/slow.png", Reply(body=png_bytes(), content_type="image/png", delay=2.0))

    with pytest.raises(UpstreamTimeout):
        fetch_image(upstream.origin + "/files/slow.png", timeout=0.3, trusted_upstream=upstream.url)


def test_fetch_image_cut_off_mid_body_is_a_bad_image(upstream):
    body = png_bytes((200, 200))
    upstream.script("/files/cut.png", Reply(body=body, content_type="image/png", drop_after=len(body) // 2))

    with pytest.raises(BadImage):
        fetch_image(upstream.origin + "/files/cut.png", timeout=5, trusted_upstream=upstream.url)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/image.png", "data:image/png;base64,AA"]
)
def test_fetch_image_of_a_non_http_url_is_a_bad_image(url):
    with pytest.raises(BadImage):
        fetch_image(url, timeout=5, trusted_upstream="http://127.0.0.1:1/v1")


# -- demo provider -----------------------------------------------------------------------------


def test_demo_image_is_deterministic():
    assert demo_image("A red fox in the snow") == demo_image("A red fox in the snow")


def test_demo_image_differs_between_prompts():
    assert demo_image("A red fox in the snow") != demo_image("A lighthouse at sunset")


def test_demo_image_is_a_valid_png():
    data = demo_image("A red fox in the snow", "512x512")

    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        assert image.format == "PNG"
    assert decode_image(data).size == (512, 512)


def test_demo_image_keeps_the_requested_aspect_ratio():
    with Image.open(io.BytesIO(demo_image("wide", "1792x1024"))) as image:
        width, height = image.size

    assert width > height


def test_demo_answer_is_deterministic():
    assert demo_answer("Sort a list in Python") == demo_answer("Sort a list in Python")


def test_demo_answer_differs_between_prompts():
    assert demo_answer("Sort a list in Python") != demo_answer("Reverse a string in Python")


def test_demo_answer_contains_a_fenced_code_block():
    assert re.search(r"^```\w+\n.+?\n```$", demo_answer("Sort a list"), re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize(
    ("prompt", "language"),
    [
        ("SQL: Top 5 Kunden nach Umsatz", "sql"),
        ("Write a query for the newest orders", "sql"),
        ("Bash-Einzeiler: alle .log-Dateien älter als 7 Tage löschen", "bash"),
        ("A shell one-liner to count files", "bash"),
        ("Sort a list of numbers", "python"),
    ],
)
def test_demo_answer_fences_code_in_the_prompts_language(prompt, language):
    fences = re.findall(r"^```(\w+)$", demo_answer(prompt), re.MULTILINE)

    assert fences == [language]
