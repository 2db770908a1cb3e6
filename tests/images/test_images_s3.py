"""Images in S3-compatible object storage (app.images.s3) next to the file store (app.images.files).

The store contract runs against both backends: files in a temporary DATA_DIR and a real moto S3
server over HTTP on 127.0.0.1 (the `s3_bucket` fixture). Then the S3 backend's own promises (keys,
object headers, listing), the app on top of it (generation, serving with ETags, downloads,
deletion, presigned redirects and the CSP that allows them) and an object store that is down.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pathlib
import posixpath
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from PIL import Image

from app.images import FileImageStore, ImageStore
from app.images.s3 import S3ImageStore
from app.providers import BadImage

from ..support import services
from ..support.apps import TEST_KEY
from ..support.htmx import HX
from ..support.s3 import APP_PREFIX, PROMPT, S3App, build_s3_app
from ..support.upstream import png_bytes

AWS_SECRET = "aws-SECRET-do-not-leak-4f2b9c0e7d1a"
PREFIX = "some/prefix"
IMMUTABLE = "public, max-age=31536000, immutable"
EXIF_MARKER = "SecretCameraMaker-7Qx"
PRESIGN = 300
FILENAME = "a-red-fox-in-the-snow.png"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials for boto3 (moto accepts any); the secret is distinctive so a leak shows."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# -- helpers -----------------------------------------------------------------------------------


def new_id() -> str:
    return uuid.uuid4().hex


def image_bytes(
    size: tuple[int, int] = (600, 400), fmt: str = "PNG", exif_marker: str | None = None
) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    params: dict[str, Any] = {}
    if exif_marker:
        exif = Image.Exif()
        exif[0x010F] = exif_marker  # Make
        exif[0x0131] = exif_marker + "-software"  # Software
        params["exif"] = exif
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def thumbnail_size(size: tuple[int, int]) -> tuple[int, int]:
    image = Image.new("RGB", size)
    image.thumbnail((256, 256))
    return image.size


def opened(data: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.format, image.size


@dataclass
class Backend:
    """One image store plus raw access to what it keeps, bypassing its own checks."""

    kind: str
    store: ImageStore
    stored: Callable[[], list[str]]  # every raw name kept (files, or keys below the prefix)
    plant: Callable[[str, bytes], None]  # put raw bytes under a raw name, unvalidated
    watch: Callable[[], contextlib.AbstractContextManager[list[str]]]  # records storage access
    extra: dict[str, Any] = field(default_factory=dict)


def files_backend(data_dir: Path) -> Backend:
    store = FileImageStore(data_dir)
    root = store.root

    def stored() -> list[str]:
        return sorted(os.listdir(root))

    def plant(name: str, data: bytes) -> None:
        path = Path(os.path.normpath(root / name))
        path.write_bytes(data)

    @contextlib.contextmanager
    def watch() -> Iterator[list[str]]:
        touched: list[str] = []

        def recording(method):
            def wrapper(self, *args, **kwargs):
                if str(self).startswith(str(data_dir)):
                    touched.append(f"{method.__name__} {self}")
                return method(self, *args, **kwargs)

            return wrapper

        real_listdir = os.listdir

        def listdir(path="."):
            if str(path).startswith(str(data_dir)):
                touched.append(f"listdir {path}")
            return real_listdir(path)

        with pytest.MonkeyPatch.context() as mp:
            for name in ("stat", "is_file", "exists", "read_bytes", "unlink", "open"):
                mp.setattr(pathlib.Path, name, recording(getattr(pathlib.Path, name)))
            mp.setattr(os, "listdir", listdir)
            yield touched

    return Backend("files", store, stored, plant, watch)


def s3_backend(endpoint: str, bucket: str, prefix: str = PREFIX, **kwargs: Any) -> Backend:
    url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    store = S3ImageStore(url, endpoint_url=endpoint, region="us-east-1", **kwargs)
    raw = services.s3_client(endpoint)
    lead = f"{prefix}/" if prefix else ""

    def stored() -> list[str]:
        keys = [
            o["Key"]
            for p in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in p.get("Contents", [])
        ]
        return sorted(k.removeprefix(lead) for k in keys)

    def plant(name: str, data: bytes) -> None:
        literal = lead + name
        for key in {literal, posixpath.normpath(literal)}:
            raw.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/png")

    @contextlib.contextmanager
    def watch() -> Iterator[list[str]]:
        touched: list[str] = []

        def record(model=None, **_: Any) -> None:
            touched.append(getattr(model, "name", "?"))

        store.client.meta.events.register("before-call.s3", record)
        try:
            yield touched
        finally:
            store.client.meta.events.unregister("before-call.s3", record)

    return Backend("s3", store, stored, plant, watch, {"raw": raw, "bucket": bucket, "prefix": prefix})


@pytest.fixture(params=["files", "s3"])
def backend(request: pytest.FixtureRequest, data_dir: Path) -> Backend:
    if request.param == "files":
        return files_backend(data_dir)
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return s3_backend(endpoint, bucket)


@pytest.fixture
def s3(s3_bucket: tuple[str, str]) -> Backend:
    endpoint, bucket = s3_bucket
    return s3_backend(endpoint, bucket)


# -- the store contract, on both backends ------------------------------------------------------


def test_save_stores_the_original_and_its_thumbnail(backend):
    entry_id = new_id()

    stored = backend.store.save(entry_id, image_bytes((600, 400)))

    assert (stored.name, stored.thumb) == (f"{entry_id}.png", f"{entry_id}.thumb.webp")
    assert (stored.width, stored.height) == (600, 400)
    assert backend.store.exists(stored.name)
    assert backend.store.exists(stored.thumb)
    assert backend.stored() == sorted([stored.name, stored.thumb])


def test_read_returns_the_png_at_its_size(backend):
    stored = backend.store.save(new_id(), image_bytes((600, 400)))

    assert opened(backend.store.read(stored.name)) == ("PNG", (600, 400))


def test_read_returns_a_webp_thumbnail_of_at_most_256_px(backend):
    stored = backend.store.save(new_id(), image_bytes((600, 400)))

    assert opened(backend.store.read(stored.thumb)) == ("WEBP", thumbnail_size((600, 400)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_save_strips_exif(backend, fmt):
    data = image_bytes((64, 48), fmt=fmt, exif_marker=EXIF_MARKER)
    assert EXIF_MARKER.encode() in data  # the upload really carries it

    stored = backend.store.save(new_id(), data)

    original, thumb = backend.store.read(stored.name), backend.store.read(stored.thumb)
    assert EXIF_MARKER.encode() not in original
    assert EXIF_MARKER.encode() not in thumb
    assert opened(original) == ("PNG", (64, 48))
    with Image.open(io.BytesIO(original)) as image:
        assert dict(image.getexif()) == {}


def test_names_lists_every_original_and_thumbnail(backend):
    first = backend.store.save(new_id(), image_bytes((40, 30)))
    second = backend.store.save(new_id(), image_bytes((30, 40)))

    assert backend.store.names() == sorted([first.name, first.thumb, second.name, second.thumb])


def test_delete_removes_both_then_answers_false(backend):
    stored = backend.store.save(new_id(), image_bytes((40, 30)))
    kept = backend.store.save(new_id(), image_bytes((40, 30)))

    assert backend.store.delete(stored.name) is True

    assert not backend.store.exists(stored.name)
    assert not backend.store.exists(stored.thumb)
    assert backend.store.names() == sorted([kept.name, kept.thumb])
    assert backend.stored() == sorted([kept.name, kept.thumb])
    with pytest.raises(FileNotFoundError):
        backend.store.read(stored.name)
    assert backend.store.delete(stored.name) is False


def test_delete_of_an_unknown_name_is_false(backend):
    assert backend.store.delete(f"{new_id()}.png") is False


def invalid_names() -> list[str]:
    # Fixed names (a test's id must be the same in every xdist worker).
    upper = "E31BBE5105E44010A321FD3185B29E50"
    lower = "c128dd4c80bd4118bf153f90e58de580"
    return ["../x.png", "x.png", f"{upper}.png", f"{upper}.thumb.webp", f"{lower}.PNG", f"{lower}.jpg"]


@pytest.mark.parametrize("name", invalid_names())
def test_invalid_names_are_refused_without_touching_storage(backend, name):
    backend.plant(name, png_bytes())  # a store that skipped the check would find it

    with backend.watch() as touched:
        exists = backend.store.exists(name)
        from_url = backend.store.name_for_url(f"/images/{name}")
        deleted = backend.store.delete(name)

    assert (exists, from_url, deleted) == (False, None, False)
    assert touched == []


def test_name_for_url_of_a_stored_image_is_its_name(backend):
    stored = backend.store.save(new_id(), image_bytes((40, 30)))

    assert backend.store.name_for_url(f"/images/{stored.name}") == stored.name
    assert backend.store.name_for_url(f"/images/{stored.thumb}") == stored.thumb
    assert backend.store.name_for_url(f"https://elsewhere.example/images/{stored.name}") is None
    assert backend.store.name_for_url(f"/images/{new_id()}.png") is None


@pytest.mark.parametrize(
    "data",
    [b"<html><body>Access denied</body></html>", b"", image_bytes((200, 200))[:300]],
    ids=["html", "empty", "truncated"],
)
def test_a_broken_upload_raises_bad_image_and_stores_nothing(backend, data):
    with pytest.raises(BadImage):
        backend.store.save(new_id(), data)

    assert backend.stored() == []
    assert backend.store.names() == []


def test_an_entry_id_that_is_not_hex_is_refused_and_stores_nothing(backend):
    with pytest.raises(ValueError):
        backend.store.save("../../escape", image_bytes((40, 30)))

    assert backend.stored() == []


# -- S3 specifics ------------------------------------------------------------------------------


def test_s3_objects_are_under_the_prefix_with_type_and_cache_control(s3):
    stored = s3.store.save(new_id(), image_bytes((40, 30)))
    raw, bucket = s3.extra["raw"], s3.extra["bucket"]

    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert sorted(keys) == sorted([f"{PREFIX}/{stored.name}", f"{PREFIX}/{stored.thumb}"])
    original = raw.head_object(Bucket=bucket, Key=f"{PREFIX}/{stored.name}")
    thumb = raw.head_object(Bucket=bucket, Key=f"{PREFIX}/{stored.thumb}")
    assert (original["ContentType"], original["CacheControl"]) == ("image/png", IMMUTABLE)
    assert (thumb["ContentType"], thumb["CacheControl"]) == ("image/webp", IMMUTABLE)
    assert s3.store.location(stored.name) == f"s3://{bucket}/{PREFIX}/{stored.name}"


def test_s3_store_without_a_prefix_keeps_objects_at_the_bucket_root(s3_bucket):
    endpoint, bucket = s3_bucket
    rooted = s3_backend(endpoint, bucket, prefix="")

    stored = rooted.store.save(new_id(), image_bytes((40, 30)))

    assert rooted.stored() == sorted([stored.name, stored.thumb])
    assert rooted.store.names() == sorted([stored.name, stored.thumb])
    assert opened(rooted.store.read(stored.name)) == ("PNG", (40, 30))
    assert rooted.store.delete(stored.name) is True
    assert rooted.stored() == []


def test_s3_names_ignores_other_keys_in_the_bucket(s3):
    stored = s3.store.save(new_id(), image_bytes((40, 30)))
    raw, bucket = s3.extra["raw"], s3.extra["bucket"]
    for key in (
        f"{PREFIX}/readme.txt",
        f"{PREFIX}/{new_id().upper()}.png",
        f"{PREFIX}-other/{new_id()}.png",
        f"elsewhere/{new_id()}.png",
        f"{new_id()}.png",
    ):
        raw.put_object(Bucket=bucket, Key=key, Body=b"x")

    assert s3.store.names() == sorted([stored.name, stored.thumb])


def test_s3_names_follows_every_page_of_the_listing(s3, monkeypatch):
    saved = [s3.store.save(new_id(), image_bytes((20, 20))) for _ in range(5)]
    real = s3.store.client.list_objects_v2
    calls: list[dict] = []

    def two_per_page(**kwargs: Any):
        kwargs["MaxKeys"] = 2  # ten objects: five pages, continued with continuation tokens
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(s3.store.client, "list_objects_v2", two_per_page)

    names = s3.store.names()

    assert names == sorted(n for s in saved for n in (s.name, s.thumb))
    assert len(calls) >= 5


def test_s3_ready_for_an_existing_bucket(s3):
    assert s3.store.ready()[0] is True


def test_s3_not_ready_for_a_missing_bucket(s3_bucket):
    endpoint, _ = s3_bucket
    missing = s3_backend(endpoint, f"missing-{new_id()[:12]}")

    ok, detail = missing.store.ready()

    assert ok is False
    assert AWS_SECRET not in detail


# -- through the app ---------------------------------------------------------------------------


@pytest.fixture
def s3_app(make_app, upstream, s3_bucket) -> S3App:
    return build_s3_app(make_app, upstream, s3_bucket)


@pytest.fixture
def presign_app(make_app, upstream, s3_bucket) -> S3App:
    return build_s3_app(make_app, upstream, s3_bucket, image_store_presign=PRESIGN)


def name_of(body: dict) -> str:
    url = body["image_url"]
    assert re.fullmatch(r"/images/[0-9a-f]{32}\.png", url), url
    return url.removeprefix("/images/")


def thumb_of(name: str) -> str:
    return name.removesuffix(".png") + ".thumb.webp"


def test_generated_image_is_stored_in_s3_and_not_in_data_dir(s3_app, data_dir):
    name = name_of(s3_app.generate())

    assert s3_app.keys() == sorted([f"{APP_PREFIX}/{name}", f"{APP_PREFIX}/{thumb_of(name)}"])
    assert opened(s3_app.object_bytes(name))[0] == "PNG"
    images_dir = data_dir / "images"
    assert not images_dir.exists() or os.listdir(images_dir) == []


def test_image_is_served_from_s3_cached_for_ever_with_an_etag(s3_app):
    name = name_of(s3_app.generate())

    response = s3_app.client.get(f"/images/{name}")

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert response.headers.get("ETag")
    assert response.data == s3_app.object_bytes(name)


def test_a_head_request_gives_the_headers_of_a_get_without_reading_the_object(s3_app, monkeypatch):
    name = name_of(s3_app.generate())
    get = s3_app.client.get(f"/images/{name}")
    images = s3_app.app.extensions["images"]
    reads = []
    original = images.client.get_object
    monkeypatch.setattr(images.client, "get_object", lambda **kw: reads.append(kw) or original(**kw))

    head = s3_app.client.head(f"/images/{name}")

    assert head.status_code == 200
    assert head.data == b""
    assert reads == []
    for header in ("Content-Type", "Content-Length", "ETag", "Cache-Control"):
        assert head.headers[header] == get.headers[header], header


def test_a_second_get_with_if_none_match_is_304(s3_app):
    name = name_of(s3_app.generate())
    etag = s3_app.client.get(f"/images/{name}").headers["ETag"]

    response = s3_app.client.get(f"/images/{name}", headers={"If-None-Match": etag})

    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["Cache-Control"] == IMMUTABLE


def test_if_none_match_with_another_etag_gets_the_image(s3_app):
    name = name_of(s3_app.generate())

    response = s3_app.client.get(f"/images/{name}", headers={"If-None-Match": '"0123456789abcdef"'})

    assert response.status_code == 200
    assert response.data == s3_app.object_bytes(name)


def test_thumbnail_is_served_from_s3_as_webp(s3_app):
    name = name_of(s3_app.generate())

    response = s3_app.client.get(f"/images/{thumb_of(name)}")

    assert response.status_code == 200
    assert response.mimetype == "image/webp"
    assert response.headers["Cache-Control"] == IMMUTABLE
    assert opened(response.data)[0] == "WEBP"


def test_missing_thumbnail_object_falls_back_to_the_png(s3_app):
    name = name_of(s3_app.generate())
    s3_app.raw.delete_object(Bucket=s3_app.bucket, Key=f"{APP_PREFIX}/{thumb_of(name)}")

    response = s3_app.client.get(f"/images/{thumb_of(name)}")

    assert response.status_code == 200
    assert response.mimetype == "image/png"


def test_download_is_an_attachment_named_after_the_prompt(s3_app):
    body = s3_app.generate(PROMPT)

    response = s3_app.client.get(body["entry"] + "/image")

    disposition = response.headers["Content-Disposition"]
    assert response.status_code == 200
    assert disposition.startswith("attachment")
    assert re.search(r'filename="?([^";]+)"?', disposition).group(1) == FILENAME
    assert response.mimetype == "image/png"
    assert response.data == s3_app.object_bytes(name_of(body))


def test_deleting_the_entry_removes_both_objects(s3_app):
    body = s3_app.generate()
    other = name_of(s3_app.generate("Another picture"))

    response = s3_app.client.delete(body["entry"])

    assert response.status_code == 200
    assert s3_app.keys() == sorted([f"{APP_PREFIX}/{other}", f"{APP_PREFIX}/{thumb_of(other)}"])
    assert s3_app.client.get(body["image_url"]).status_code == 404


def test_deleting_while_the_store_is_down_can_be_completed_once_it_is_back(s3_app, monkeypatch):
    body = s3_app.generate()
    name = name_of(body)
    images = s3_app.app.extensions["images"]
    dead = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{services.free_port()}",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )
    monkeypatch.setattr(images, "client", dead)

    first = s3_app.client.delete(body["entry"], headers={"Accept": "application/json"})

    monkeypatch.setattr(images, "client", services.s3_client(s3_app.endpoint))  # the store is back
    if first.status_code != 200:  # the user was told it failed: they try again
        s3_app.client.delete(body["entry"], headers={"Accept": "application/json"})
    assert s3_app.keys() == [], (
        f"DELETE answered {first.status_code} while the store was down; the entry's objects "
        f"{s3_app.keys()} are left with nothing referring to them, and {body['image_url']} "
        f"still serves the image: {s3_app.client.get(body['image_url']).status_code}"
    )
    assert s3_app.client.get(f"/images/{name}").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/images/0123456789abcdef0123456789abcdef.png",
        "/images/0123456789abcdef0123456789abcdef.thumb.webp",
        "/images/x.png",
        "/images/..%2Fx.png",
        "/images/0123456789ABCDEF0123456789ABCDEF.png",
    ],
)
def test_unknown_image_is_a_404_as_json(s3_app, path):
    response = s3_app.client.get(path, headers={"Accept": "application/json"})

    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]


def test_unknown_image_is_a_404_page_for_browsers(s3_app):
    response = s3_app.client.get(
        "/images/0123456789abcdef0123456789abcdef.png", headers={"Accept": "text/html"}
    )

    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_readyz_with_the_object_store_up_is_ready(s3_app):
    response = s3_app.client.get("/readyz")

    assert response.status_code == 200
    assert response.get_json()["ready"] is True
    assert response.get_json()["image_store"] == "s3"


# -- presigned URLs ----------------------------------------------------------------------------


def max_age(cache_control: str) -> int:
    match = re.search(r"max-age=(\d+)", cache_control)
    assert match, cache_control
    return int(match.group(1))


def test_presigned_image_redirects_to_a_signed_object_store_url(presign_app):
    name = name_of(presign_app.generate())

    response = presign_app.client.get(f"/images/{name}")

    location = response.headers["Location"]
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert response.status_code == 302
    assert f"{parts.scheme}://{parts.netloc}" == presign_app.endpoint
    assert parts.path == f"/{presign_app.bucket}/{APP_PREFIX}/{name}"
    assert "X-Amz-Signature" in query or "Signature" in query
    cache_control = response.headers["Cache-Control"]
    assert "private" in cache_control
    assert "public" not in cache_control
    assert 0 < max_age(cache_control) < PRESIGN
    assert AWS_SECRET not in location


def test_following_the_presigned_url_returns_the_png(presign_app):
    name = name_of(presign_app.generate())
    location = presign_app.client.get(f"/images/{name}").headers["Location"]

    fetched = requests.get(location, timeout=10)

    assert fetched.status_code == 200
    assert fetched.content == presign_app.object_bytes(name)
    assert opened(fetched.content)[0] == "PNG"


def test_presigned_thumbnail_redirects_to_the_thumbnail_object(presign_app):
    name = name_of(presign_app.generate())

    response = presign_app.client.get(f"/images/{thumb_of(name)}")

    assert response.status_code == 302
    assert (
        urlsplit(response.headers["Location"]).path == f"/{presign_app.bucket}/{APP_PREFIX}/{thumb_of(name)}"
    )


def test_presigned_download_carries_the_content_disposition(presign_app):
    body = presign_app.generate(PROMPT)

    response = presign_app.client.get(body["entry"] + "/image")

    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    disposition = query["response-content-disposition"][0]
    assert disposition.startswith("attachment")
    assert FILENAME in disposition
    fetched = requests.get(response.headers["Location"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == presign_app.object_bytes(name_of(body))


def test_presigned_unknown_image_is_404_not_a_redirect(presign_app):
    response = presign_app.client.get(
        "/images/0123456789abcdef0123456789abcdef.png", headers={"Accept": "application/json"}
    )

    assert response.status_code == 404
    assert "Location" not in response.headers


def img_src(response) -> list[str]:
    for directive in response.headers["Content-Security-Policy"].split(";"):
        parts = directive.split()
        if parts and parts[0] == "img-src":
            return parts[1:]
    raise AssertionError("no img-src in the Content-Security-Policy")


PAGES = ["/", "/chatlog", "/images", "/healthz", "/readyz", "/images/0123456789abcdef0123456789abcdef.png"]


def test_csp_img_src_allows_the_object_store_with_presign(presign_app):
    name = name_of(presign_app.generate())

    for path in [*PAGES, f"/images/{name}"]:
        response = presign_app.client.get(path)
        assert presign_app.endpoint in img_src(response), path
        assert "'self'" in img_src(response), path


def test_csp_img_src_is_same_origin_without_presign(s3_app):
    for path in PAGES:
        response = s3_app.client.get(path)
        assert img_src(response) == ["'self'", "data:"], path
        assert s3_app.endpoint not in response.headers["Content-Security-Policy"], path


# -- the object store is down ------------------------------------------------------------------


@pytest.fixture
def down_app(make_app, upstream) -> Any:
    """An app whose object store endpoint is a closed port on 127.0.0.1."""
    upstream.image_mode = "b64"
    app = make_app(
        openai_api_key=TEST_KEY,
        openai_base_url=upstream.url,
        image_store_url=f"s3://bucket-{new_id()[:8]}/{APP_PREFIX}",
        image_store_endpoint_url=f"http://127.0.0.1:{services.free_port()}",
        image_store_region="us-east-1",
    )
    return app


DOWN_PROMPT = "A lighthouse while the store is down"


def history_entry(client, prompt: str) -> dict | None:
    """The entry with this prompt in the full export (every live entry), or None."""
    return next((e for e in client.get("/chatlog.full.json").get_json() if e["prompt"] == prompt), None)


def test_readyz_with_the_object_store_down_is_degraded_not_unready(down_app):
    # The store is shared by every server: failing readiness would take them all out of the
    # load balancer, though text answers work. The server says it is degraded instead.
    response = down_app.test_client().get("/readyz")

    body = response.get_json()
    assert response.status_code == 200
    assert (body["ready"], body["degraded"]) == (True, True)
    assert "unreachable" in body["images"]
    assert body["image_store"] == "s3"


def test_image_request_with_the_object_store_down_is_a_503_naming_it(down_app):
    response = down_app.test_client().get(
        "/images/0123456789abcdef0123456789abcdef.png", headers={"Accept": "application/json"}
    )

    assert response.status_code == 503
    assert "image store" in response.get_json()["error"].lower()
    assert response.headers.get("Retry-After")


def test_generate_image_with_the_object_store_down_is_a_503_naming_it(down_app):
    response = down_app.test_client().post("/generate_image", json={"prompt": DOWN_PROMPT})

    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.is_json
    assert "image store" in response.get_json()["error"].lower()


def test_generate_image_with_the_object_store_down_keeps_the_prompt(down_app):
    client = down_app.test_client()

    client.post("/generate_image", json={"prompt": DOWN_PROMPT})

    entry = history_entry(client, DOWN_PROMPT)
    assert entry is not None, "the prompt was lost"
    assert entry.get("status") == "failed"
    assert entry.get("error")


def test_generate_image_with_the_object_store_down_for_htmx_is_an_alert_with_the_prompt(down_app):
    response = down_app.test_client().post("/generate_image", data={"prompt": DOWN_PROMPT}, headers=HX)

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'role="alert"' in html
    assert DOWN_PROMPT in html


def test_generate_image_with_the_object_store_down_for_htmx_says_503_and_names_the_store(down_app):
    response = down_app.test_client().post("/generate_image", data={"prompt": DOWN_PROMPT}, headers=HX)

    assert response.headers.get("X-Error-Status") == "503"
    assert "image store" in response.get_data(as_text=True).lower()


def test_no_secret_leaks_while_the_object_store_is_down(down_app, data_dir, caplog):
    caplog.set_level(logging.DEBUG)
    app_logger = logging.getLogger("app")
    # "app" does not propagate to the root logger; caplog's handler goes first, so it sees each
    # record as logged, before the app's handlers redact it in place.
    app_logger.handlers.insert(0, caplog.handler)
    try:
        client = down_app.test_client()
        responses = [
            client.get("/readyz"),
            client.post("/generate_image", json={"prompt": DOWN_PROMPT}),
            client.post("/generate_image", data={"prompt": DOWN_PROMPT}, headers=HX),
            client.get("/images/0123456789abcdef0123456789abcdef.png"),
            client.get(
                "/images/0123456789abcdef0123456789abcdef.png", headers={"Accept": "application/json"}
            ),
            client.get("/"),
        ]
    finally:
        app_logger.removeHandler(caplog.handler)

    log_file = data_dir / "app.log"
    texts = [r.get_data(as_text=True) + str(r.headers) for r in responses]
    texts.append(caplog.text)
    texts.append(log_file.read_text(encoding="utf-8") if log_file.exists() else "")
    assert "image store" in caplog.text.lower()  # the failures were logged (and so checked)
    for text in texts:
        assert AWS_SECRET not in text
        assert TEST_KEY not in text
