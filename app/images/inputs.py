"""Pictures sent with a prompt: read from an upload or a `data:` URL, checked, stored once.

They pass the same guards as generated images (app.images.codec: Pillow's decoder under its
decompression-bomb limit, a full decode, metadata stripped, stored as a PNG with a thumbnail),
after the checks an upload needs first: a size cap, the four formats image-capable models
take, and messages that speak of the attached image. Nothing is stored and no upstream is asked
until all of them pass.

A stored input picture is `<random hex>.png` (and its thumbnail) in the image store, owned by
the one entry that names it in `input_image`, and deleted with it.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid

from PIL import Image, UnidentifiedImageError

from ..i18n import N_
from ..providers import BadImage
from .codec import probe
from .store import ImageStore, StoredImage

MAX_INPUT_BYTES = 20 * 1024 * 1024
DATA_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif")
# The request body may hold the picture as base64 (4/3 of it) beside the prompt and fields.
MAX_REQUEST_BYTES = MAX_INPUT_BYTES * 4 // 3 + 2 * 1024 * 1024
_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),", re.IGNORECASE)

NOT_AN_IMAGE = N_("The attached file is not a PNG, JPEG, WEBP or GIF image.")
TOO_BIG = N_("The attached image is larger than 20 MB.")
EMPTY = N_("The attached image is empty.")
BOMB = N_("The attached image has too many pixels to decode safely.")
DAMAGED = N_("The attached image is damaged or incomplete.")
BAD_DATA_URL = N_(
    'The image must be a data URL of a PNG, JPEG, WEBP or GIF image: "data:image/png;base64,…".'
)
BAD_BASE64 = N_("The image's data URL does not hold valid base64.")


class InputImageError(ValueError):
    """An attached picture cannot be used; `message` says why (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def from_data_url(text: str) -> bytes:
    """The bytes of a `data:image/…;base64,…` URL; InputImageError for anything else."""
    match = _DATA_URL.match(text.strip())
    if match is None or match.group(1).strip().lower() not in DATA_TYPES:
        raise InputImageError(BAD_DATA_URL)
    if "base64" not in [p.strip().lower() for p in match.group(2).split(";")]:
        raise InputImageError(BAD_DATA_URL)
    payload = re.sub(r"\s+", "", text.strip()[match.end() :])
    if len(payload) > (MAX_INPUT_BYTES + 2) // 3 * 4:
        raise InputImageError(TOO_BIG)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputImageError(BAD_BASE64) from None


def from_upload(stream: object) -> bytes:
    """The bytes of an uploaded file (a readable stream), read up to just past the cap (never
    all of a huge one)."""
    read = getattr(stream, "read", None)
    if read is None:
        raise InputImageError(NOT_AN_IMAGE)
    data = read(MAX_INPUT_BYTES + 1)
    if not isinstance(data, bytes):
        raise InputImageError(NOT_AN_IMAGE)
    if len(data) > MAX_INPUT_BYTES:
        raise InputImageError(TOO_BIG)
    return data


def check(data: bytes) -> None:
    """Refuse what is not one of the four formats, too large, or too many pixels; reads only
    the header (the full decode happens when it is stored)."""
    if not data:
        raise InputImageError(EMPTY)
    if len(data) > MAX_INPUT_BYTES:
        raise InputImageError(TOO_BIG)
    try:
        probe(data).close()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputImageError(BOMB) from None
    except UnidentifiedImageError:
        raise InputImageError(NOT_AN_IMAGE) from None
    except (OSError, SyntaxError, ValueError):
        raise InputImageError(DAMAGED) from None


def store(images: ImageStore, data: bytes) -> StoredImage:
    """Check `data` and store it as a new input picture (validated and stripped like every
    image); InputImageError says what is wrong with it."""
    check(data)
    try:
        return images.save(uuid.uuid4().hex, data)
    except BadImage:
        raise InputImageError(DAMAGED) from None


def copy(images: ImageStore, name: str) -> str:
    """Store the picture `name` again as a new input picture (another entry's own copy, so
    deleting either never takes the other's); returns the new name."""
    return store(images, images.read(name)).name


def data_url(images: ImageStore, name: str) -> str:
    """The stored picture as a `data:image/png;base64,…` URL, as the chat models take it."""
    return "data:image/png;base64," + base64.b64encode(images.read(name)).decode("ascii")
