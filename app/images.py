"""Image files: fetch an upstream URL safely, validate with Pillow, store one file per entry.

Each entry's image is stored without metadata (a PNG keeps only its image chunks; any other format
is re-encoded as PNG) as `DATA_DIR/images/<entry id>.png`,
with a small WebP thumbnail `<entry id>.thumb.webp` for the history and the gallery; both are
served same-origin at `/images/<name>` and never overwritten. Only this module touches image bytes.

Fetching an upstream's image URL is the one place where the server requests a URL it was handed,
so it is careful: http(s) only, a timeout, a size cap checked while streaming, an image content
type, at most three redirects (each checked again), and no request to a private, loopback or
link-local address unless it is the configured upstream's own host and port. URLs are parsed by
urllib3, the parser that connects; backslashes, userinfo, whitespace and control characters are
refused. Each hop connects to the very address its check resolved (the name is kept for `Host`,
TLS SNI and the certificate check), so DNS rebinding between check and connect cannot happen,
and no proxy variable or ~/.netrc is ever consulted.
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

import certifi
import urllib3
from flask import Response, send_file
from PIL import Image, UnidentifiedImageError
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationParseError
from urllib3.util import Url, parse_url

from .files import atomic_write
from .messages import failure
from .providers import BadImage, UpstreamTimeout

log = logging.getLogger("app.images")

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # above any size the image APIs produce; stops decompression bombs
MAX_REDIRECTS = 3
THUMB_SIZE = 256
NAME_RE = re.compile(r"[0-9a-f]{32}\.(png|thumb\.webp)\Z")  # used with fullmatch; \Z for any match()
# The formats the image APIs return. Pillow opens nothing else: no EPS (Ghostscript), no TIFF,
# BMP, ICO … with their own decoders and their own bugs.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
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


# Whitespace and control characters (C0, DEL, C1) and backslashes: URL parsers drop, keep or
# reinterpret them differently, which is how one parser's host becomes another's userinfo.
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
REDIRECTS = (301, 302, 303, 307, 308)
# The CA bundle for https image URLs (requests' own, certifi); tests point it at their own CA.
CA_CERTS = certifi.where()


@dataclass(frozen=True)
class _Target:
    """One hop of a download: where to connect (a checked address) and what to ask for."""

    scheme: str
    host: str  # the name from the URL: Host header, TLS SNI and certificate check
    port: int
    request_uri: str
    address: str  # the resolved address that was checked, connected to as is

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _parse(url: str) -> Url:
    """`url` parsed by urllib3, the parser that connects; BadImage for anything ambiguous."""
    if not isinstance(url, str) or _URL_FORBIDDEN.search(url):
        raise BadImage(failure("image_url_invalid"))
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise BadImage(failure("image_url_invalid")) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadImage(failure("image_url_not_http"))
    # Userinfo is refused outright (the standard library and urllib3 disagree on where it ends).
    if parsed.auth is not None or "@" in urlsplit(url).netloc:
        raise BadImage(failure("image_url_invalid"))
    return parsed


def _host_port(url: str) -> tuple[str, int] | None:
    try:
        parsed = parse_url(url)
    except LocationParseError:
        return None
    if not parsed.host:
        return None
    return parsed.host.strip("[]").lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (one lookup; the caller connects to one of these)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadImage(failure("image_host_unknown")) from None
    return [str(info[4][0]) for info in infos]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not global in any case: the local-use NAT64 prefix and the deprecated IPv4-compatible block.
_NEVER = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("::/96"))


def is_public(address: str) -> bool:
    """True for a global unicast address, including the IPv4 inside NAT64, 6to4 and mapped forms."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if not ip.is_global or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in _NEVER):
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_public(str(embedded))
    return True


def _check_address(url: str, trusted: tuple[str, int] | None) -> _Target:
    """The hop to make for `url`: refuse non-http(s) and ambiguous URLs, resolve the host once,
    and refuse it unless every address is public (or it is the trusted upstream's host:port)."""
    parsed = _parse(url)
    host, scheme = (parsed.host or "").strip("[]").lower(), parsed.scheme or "http"
    port = parsed.port or (443 if scheme == "https" else 80)
    addresses = resolve(host, port)
    if not addresses:
        raise BadImage(failure("image_host_unknown"))
    if trusted is None or (host, port) != trusted:
        for address in addresses:
            if not is_public(address):
                log.warning("Refused to fetch an image from a non-public address: %s", host)
                raise BadImage(failure("image_url_private"))
    return _Target(scheme, host, port, parsed.request_uri, addresses[0].split("%")[0])


def _open(target: _Target, timeout: float) -> tuple[HTTPConnectionPool, BaseHTTPResponse]:
    """GET the target from its checked address; the name stays in Host, SNI and the cert check.

    urllib3 is used directly (no requests session): no proxy variables, no ~/.netrc, and no
    second DNS lookup between the check and the connection.
    """
    limit = urllib3.Timeout(total=timeout)
    if target.scheme == "https":
        pool: HTTPConnectionPool = HTTPSConnectionPool(
            target.address,
            port=target.port,
            timeout=limit,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=CA_CERTS,
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    else:
        pool = HTTPConnectionPool(target.address, port=target.port, timeout=limit, retries=False, maxsize=1)
    headers = {"Host": target.host_header, "Accept": "image/*", "User-Agent": "chat-image-fetch"}
    try:
        response = pool.urlopen(
            "GET",
            target.request_uri,
            headers=headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
    except BaseException:
        pool.close()
        raise
    return pool, response


def fetch_image(
    url: str, timeout: float, max_bytes: int = MAX_DOWNLOAD_BYTES, trusted_upstream: str | None = None
) -> bytes:
    """Download an image URL (see the module docstring for the rules); raise BadImage/UpstreamTimeout.

    `trusted_upstream` is the configured OPENAI_BASE_URL: its own host and port may be private
    (a local model server), nothing else may. Every hop, that one included, connects to the
    address its check resolved, so a name cannot change its answer in between.
    """
    trusted = _host_port(trusted_upstream) if trusted_upstream else None
    # `timeout` bounds the whole download (every hop and every byte), not each socket read.
    deadline = time.monotonic() + timeout
    try:
        for _ in range(MAX_REDIRECTS + 1):
            target = _check_address(url, trusted)
            pool, response = _open(target, _remaining(deadline))
            try:
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urljoin(url, response.headers["Location"])
                    continue
                return _read_image_body(response, max_bytes, deadline)
            finally:
                response.release_conn()
                pool.close()
        raise BadImage(failure("image_redirects"))
    except urllib3.exceptions.NewConnectionError as e:  # a subclass of the timeout error
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage(failure("image_download_failed")) from None
    except urllib3.exceptions.TimeoutError:
        raise UpstreamTimeout(failure("image_download_timeout")) from None
    except (urllib3.exceptions.HTTPError, OSError) as e:
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage(failure("image_download_failed")) from None


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise UpstreamTimeout(failure("image_download_timeout"))
    return remaining


def _read_image_body(response: BaseHTTPResponse, max_bytes: int, deadline: float) -> bytes:
    if response.status != 200:
        raise BadImage(failure("image_download_status", status=response.status))
    ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
        raise BadImage(failure("image_url_not_image"))
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BadImage(failure("image_too_large"))
    chunks, total = [], 0
    while True:
        _remaining(deadline)
        # read1 returns what has arrived (at most 64 KiB) instead of waiting for a full buffer,
        # so a trickling body cannot hold the download past the deadline.
        chunk = response.read1(64 * 1024, decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise BadImage(failure("image_too_large"))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_image(data: bytes) -> Image.Image:
    """Open and fully decode `data`; raise BadImage for non-images, truncated files and bombs."""
    if not data:
        raise BadImage(failure("image_empty"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
                if probe.width * probe.height > MAX_PIXELS:
                    raise Image.DecompressionBombError("too many pixels")
                probe.verify()
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(failure("image_too_many_pixels")) from None
    except UnidentifiedImageError:
        raise BadImage(failure("image_not_image")) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(failure("image_damaged", problem=type(e).__name__)) from None
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
        if not NAME_RE.fullmatch(name):
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
        if not NAME_RE.fullmatch(name) or not self.exists(name):
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
        return name if NAME_RE.fullmatch(name) and self.exists(name) else None

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
        if not NAME_RE.fullmatch(name):
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
        return sorted(n for n in os.listdir(self.root) if NAME_RE.fullmatch(n))

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
