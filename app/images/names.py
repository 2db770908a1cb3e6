"""How stored images are named: the one place that knows an original's name, its thumbnail's
name and the app URL an entry keeps for it.

An image is stored as `<stem>.png` (the entry id for a generated image, a random hex for a
picture sent with a prompt) beside its thumbnail `<stem>.thumb.webp`. Every name is checked
against NAME_RE before any storage is touched, and a name is never rewritten or reused, so an
image can be cached for ever. An image entry keeps `/images/<name>` as its answer (the URL the
original project's JSON answered with), and the exports carry the same form.
"""

from __future__ import annotations

import re

NAME_RE = re.compile(r"[0-9a-f]{32}\.(png|thumb\.webp)\Z")  # used with fullmatch; \Z for any match()
CONTENT_TYPES = {"png": "image/png", "thumb.webp": "image/webp"}
ORIGINAL_SUFFIX = ".png"
THUMB_SUFFIX = ".thumb.webp"
STORED_URL_PREFIX = "/images/"
# Names are never rewritten, so a stored image (a response, or an object's metadata) is cached
# for a year and never revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"


def is_image_name(name: str) -> bool:
    """True for a name an image store may hold (an original or a thumbnail)."""
    return NAME_RE.fullmatch(name) is not None


def original_name(stem: str) -> str:
    """The original's name for a stem (an entry id, or a picture's random hex)."""
    return stem + ORIGINAL_SUFFIX


def thumb_name(name: str) -> str:
    """The thumbnail's name of an original `<stem>.png`."""
    return name.removesuffix(ORIGINAL_SUFFIX) + THUMB_SUFFIX


def original_of(name: str) -> str | None:
    """The original a thumbnail's name stands for, or None when `name` is not a thumbnail's."""
    return name.removesuffix(THUMB_SUFFIX) + ORIGINAL_SUFFIX if name.endswith(THUMB_SUFFIX) else None


def content_type(name: str) -> str:
    """The media type of a stored image, from its name."""
    return CONTENT_TYPES[name.split(".", 1)[1]]


def stored_url(name: str) -> str:
    """The app URL an entry keeps for its image (`/images/<name>`), as stored and exported."""
    return STORED_URL_PREFIX + name


def name_in_url(url: str) -> str | None:
    """The image name in an app image URL (`/images/<name>`), or None for any other URL."""
    if not url.startswith(STORED_URL_PREFIX):
        return None
    name = url.removeprefix(STORED_URL_PREFIX)
    return name if is_image_name(name) else None
