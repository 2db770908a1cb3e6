"""Image files: fetch an upstream URL, validate with Pillow, store one re-encoded file per entry.

Files live in `DATA_DIR/images/<entry id>.png` (never one shared file that each image overwrites)
and are served same-origin at `/images/<name>`. Only this module touches image bytes.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from PIL import Image, UnidentifiedImageError

from .providers import BadImage, UpstreamTimeout

log = logging.getLogger("app.images")

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000  # above any size the image APIs produce; stops decompression bombs
MAX_REDIRECTS = 3
NAME_RE = re.compile(r"^[0-9a-f]{32}\.png$")

# Pillow raises DecompressionBombError above twice this and warns above it (made an error below).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class StoredImage:
    """A saved image: its file name under the image directory and its pixel size."""

    name: str
    width: int
    height: int


def redact_url(url: str) -> str:
    """The URL without query or fragment: signed upstream URLs carry tokens in the query."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def fetch_image(url: str, timeout: float, max_bytes: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """Download an image URL with a timeout, a size cap checked while streaming, and few redirects."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise BadImage("The upstream returned an image URL that is not http(s).")
    session = requests.Session()
    session.max_redirects = MAX_REDIRECTS
    try:
        with session.get(url, timeout=timeout, stream=True) as response:
            if response.status_code != 200:
                raise BadImage(f"Downloading the image failed ({response.status_code}).")
            ctype = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and not ctype.startswith("image/") and ctype != "application/octet-stream":
                raise BadImage("The upstream's image URL did not return an image.")
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise BadImage("The upstream's image is too large.")
            chunks, total = [], 0
            for chunk in response.iter_content(64 * 1024):
                total += len(chunk)
                if total > max_bytes:
                    raise BadImage("The upstream's image is too large.")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.Timeout:
        raise UpstreamTimeout("Downloading the generated image timed out.") from None
    except requests.TooManyRedirects:
        raise BadImage("The image URL redirected too often.") from None
    except requests.RequestException as e:
        log.error("Image download failed: %s", type(e).__name__)
        raise BadImage("The generated image could not be downloaded.") from None
    finally:
        session.close()


def decode_image(data: bytes) -> Image.Image:
    """Open and fully decode `data`; raise BadImage for non-images, truncated files and bombs."""
    if not data:
        raise BadImage("The upstream's image is empty.")
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
        raise BadImage("The upstream's image is too large to decode safely.") from None
    except UnidentifiedImageError:
        raise BadImage("The upstream's response is not an image.") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"The upstream's image is damaged ({type(e).__name__}).") from None
    return image


class ImageStore:
    """Validated PNG files, one per entry, in `DATA_DIR/images`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "images"
        self.root.mkdir(parents=True, exist_ok=True)

    def save(self, entry_id: str, data: bytes) -> StoredImage:
        """Validate `data`, strip metadata by re-encoding, and write `<entry_id>.png` atomically."""
        image = decode_image(data)
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        name = f"{entry_id}.png"
        if not NAME_RE.match(name):
            raise ValueError("entry ids are 32 hex digits")
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=False)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(out.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.root / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.debug("Bild gespeichert unter: %s", self.root / name)
        return StoredImage(name=name, width=image.width, height=image.height)

    def path(self, name: str) -> Path | None:
        """The file for a served name, or None for anything that is not one of ours."""
        if not NAME_RE.match(name):
            return None
        path = self.root / name
        return path if path.is_file() else None

    def delete(self, name: str) -> bool:
        """Remove an entry's image file; False if there was none."""
        path = self.path(name)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        log.info("Deleted image %s", name)
        return True

    def name_for_url(self, url: str) -> str | None:
        """For an app image URL (`/images/<name>`) whose file exists, its name (used on import)."""
        if not url.startswith("/images/"):
            return None
        name = url.removeprefix("/images/")
        return name if self.path(name) else None

    @staticmethod
    def url(name: str) -> str:
        return f"/images/{name}"
