"""Image files: fetch an upstream URL safely, validate with Pillow, store one file per entry.

Each entry's image is stored without metadata (a PNG keeps only its image chunks; any other format
is re-encoded as PNG) as `DATA_DIR/images/<entry id>.png`,
with a small WebP thumbnail `<entry id>.thumb.webp` for the history and the gallery; both are
served same-origin at `/images/<name>` and never overwritten. Only this module touches image bytes.

Fetching an upstream's image URL is the one place where the server requests a URL it was handed,
so it is careful: http(s) only, a timeout, a size cap checked while streaming, an image content
type, at most three redirects (each checked again), and no request to a private, loopback or
link-local address unless it is the configured upstream's own host and port.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3
from flask import Response, send_file
from PIL import Image, UnidentifiedImageError

from .files import atomic_write
from .i18n import N_
from .providers import BadImage, UpstreamTimeout

log = logging.getLogger("app.images")

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # above any size the image APIs produce; stops decompression bombs
MAX_REDIRECTS = 3
THUMB_SIZE = 256
NAME_RE = re.compile(r"^[0-9a-f]{32}\.(png|thumb\.webp)$")
IMAGE_TYPES = {"png": "image/png", "thumb.webp": "image/webp"}

# Pillow raises DecompressionBombError above twice this and warns above it (made an error below).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class StoredImage:
    """A saved image: its file names under the image directory and its pixel size."""

    name: str
    thumb: str
    width: int
    height: int


def redact_url(url: str) -> str:
    """The URL without query or fragment: signed upstream URLs carry tokens in the query."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _host_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.hostname.lower(), port


def _check_address(url: str, trusted: tuple[str, int] | None) -> None:
    """Refuse URLs that are not http(s) or that resolve to a non-public address (unless trusted)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadImage("The upstream returned an image URL that is not http(s).")
    target = _host_port(url)
    if target is None:
        raise BadImage("The upstream returned an invalid image URL.")
    if trusted is not None and target == trusted:
        return
    try:
        infos = socket.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadImage("The image URL's host could not be found.") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            log.warning("Refused to fetch an image from a non-public address: %s", target[0])
            raise BadImage(N_("The image URL points at a private or local address; it was not fetched."))


def fetch_image(
    url: str, timeout: float, max_bytes: int = MAX_DOWNLOAD_BYTES, trusted_upstream: str | None = None
) -> bytes:
    """Download an image URL (see the module docstring for the rules); raise BadImage/UpstreamTimeout.

    `trusted_upstream` is the configured OPENAI_BASE_URL: its own host and port may be private
    (a local model server), nothing else may.
    """
    trusted = _host_port(trusted_upstream) if trusted_upstream else None
    # `timeout` bounds the whole download (every hop and every byte), not each socket read.
    deadline = time.monotonic() + timeout
    session = requests.Session()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            _check_address(url, trusted)
            remaining = _remaining(deadline)
            with session.get(url, timeout=remaining, stream=True, allow_redirects=False) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                return _read_image_body(response, max_bytes, deadline)
        raise BadImage(N_("The image URL redirected too often."))
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise UpstreamTimeout(N_("Downloading the generated image timed out.")) from None
    except urllib3.exceptions.HTTPError as e:  # raised by the body reads: a cut-off connection
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage(N_("The generated image could not be downloaded.")) from None
    except requests.RequestException as e:
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage(N_("The generated image could not be downloaded.")) from None
    finally:
        session.close()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UpstreamTimeout(N_("Downloading the generated image timed out."))
    return remaining


def _read_image_body(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    if response.status_code != 200:
        raise BadImage(f"Downloading the image failed ({response.status_code}).")
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
        raise BadImage(N_("The upstream's image URL did not return an image."))
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BadImage(N_("The upstream's image is too large."))
    chunks, total = [], 0
    while True:
        _remaining(deadline)
        # read1 returns what has arrived (at most 64 KiB) instead of waiting for a full buffer,
        # so a trickling body cannot hold the download past the deadline.
        chunk = response.raw.read1(64 * 1024, decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise BadImage(N_("The upstream's image is too large."))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_image(data: bytes) -> Image.Image:
    """Open and fully decode `data`; raise BadImage for non-images, truncated files and bombs."""
    if not data:
        raise BadImage(N_("The upstream's image is empty."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.width * probe.height > MAX_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                probe.verify()
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(N_("The upstream's image is too large to decode safely.")) from None
    except UnidentifiedImageError:
        raise BadImage(N_("The upstream's response is not an image.")) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"The upstream's image is damaged ({type(e).__name__}).") from None
    return image


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that describe the pixels; everything else (text, EXIF, time, private chunks) is dropped.
PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}


def strip_png(data: bytes) -> bytes | None:
    """A PNG with only its image chunks kept, or None if `data` is not a well-formed PNG.

    Called on bytes Pillow has fully decoded and verified, so the pixel data is known good; it
    is copied as is, which is lossless and much faster than compressing it again.
    """
    if not data.startswith(PNG_SIGNATURE):
        return None
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return None
        if kind in PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if kind == b"IEND":
            return b"".join(out)
    return None


def encode_image(image: Image.Image, data: bytes) -> tuple[bytes, bytes]:
    """The image as a PNG without metadata, and a WebP thumbnail of at most THUMB_SIZE px.

    A PNG keeps its image chunks byte for byte; any other format is re-encoded as PNG.
    """
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    stripped = strip_png(data) if image.format == "PNG" else None
    if stripped is None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        stripped = buffer.getvalue()
    if image.mode == "P":
        image = image.convert("RGBA")
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
    small = io.BytesIO()
    thumb.save(small, format="WEBP", quality=80, method=4)
    return stripped, small.getvalue()


class ImageStoreUnavailable(RuntimeError):
    """The image store (an object store) cannot be reached; the message is safe to show."""


def thumb_name(name: str) -> str:
    """The thumbnail's name of an original `<id>.png`."""
    return name.removesuffix(".png") + ".thumb.webp"


class BaseImageStore:
    """What every image backend offers (files in DATA_DIR, or S3-compatible object storage).

    Names are `<entry id>.png` and `<entry id>.thumb.webp`, checked against NAME_RE before any
    storage is touched, and never rewritten, so they are cached for ever.
    """

    backend = "abstract"

    def save(self, entry_id: str, data: bytes) -> StoredImage:
        """Validate `data`, strip its metadata, and store the original and its thumbnail."""
        image = decode_image(data)
        name, thumb = f"{entry_id}.png", f"{entry_id}.thumb.webp"
        if not NAME_RE.match(name):
            raise ValueError("entry ids are 32 hex digits")
        original, small = encode_image(image, data)
        self.put(thumb, small)
        self.put(name, original)  # last: an original is only ever there with its thumbnail
        log.debug("Bild gespeichert unter: %s", self.location(name))
        return StoredImage(name=name, thumb=thumb, width=image.width, height=image.height)

    def put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def remove(self, name: str) -> None:
        raise NotImplementedError

    def names(self) -> list[str]:
        """Every stored name (originals and thumbnails)."""
        raise NotImplementedError

    def location(self, name: str) -> str:
        raise NotImplementedError

    def serve(self, name: str, *, download_name: str | None = None) -> Response:
        """The response for `/images/<name>` (cached for ever), or a download of it."""
        raise NotImplementedError

    def ready(self) -> tuple[bool, str]:
        raise NotImplementedError

    @staticmethod
    def content_type(name: str) -> str:
        return IMAGE_TYPES[name.split(".", 1)[1]]

    def delete(self, name: str) -> bool:
        """Remove an entry's image and its thumbnail; False if there was none."""
        if not NAME_RE.match(name) or not self.exists(name):
            return False
        self.remove(name)
        self.remove(thumb_name(name))
        log.info("Deleted image %s", name)
        return True

    def name_for_url(self, url: str) -> str | None:
        """For an app image URL (`/images/<name>`) that is stored, its name (used on import)."""
        if not url.startswith("/images/"):
            return None
        name = url.removeprefix("/images/")
        return name if NAME_RE.match(name) and self.exists(name) else None

    @staticmethod
    def url(name: str) -> str:
        return f"/images/{name}"


IMMUTABLE = "public, max-age=31536000, immutable"


class ImageStore(BaseImageStore):
    """Validated PNG files and their thumbnails, one pair per entry, in `DATA_DIR/images`."""

    backend = "files"

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "images"
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        atomic_write(self.root / name, data)

    def location(self, name: str) -> str:
        return str(self.root / name)

    def path(self, name: str) -> Path | None:
        """The file for a served name, or None for anything that is not one of ours."""
        if not NAME_RE.match(name):
            return None
        path = self.root / name
        return path if path.is_file() else None

    def exists(self, name: str) -> bool:
        return self.path(name) is not None

    def read(self, name: str) -> bytes:
        path = self.path(name)
        if path is None:
            raise FileNotFoundError(name)
        return path.read_bytes()

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.root) if NAME_RE.match(n))

    def serve(self, name: str, *, download_name: str | None = None) -> Response:
        path = self.path(name)
        if path is None:
            raise FileNotFoundError(name)
        if download_name:
            return send_file(
                path,
                mimetype=self.content_type(name),
                as_attachment=True,
                download_name=download_name,
                max_age=0,
            )
        response = send_file(path, mimetype=self.content_type(name), max_age=31_536_000, conditional=True)
        response.headers["Cache-Control"] = IMMUTABLE
        return response

    def ready(self) -> tuple[bool, str]:
        return (True, "writable") if os.access(self.root, os.W_OK) else (False, "not writable")
