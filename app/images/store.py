"""The image store's interface (every method the app calls, typed) and what both backends share.

Backends: :class:`app.images.files.FileImageStore` (files in DATA_DIR, the default) and
:class:`app.images.s3.S3ImageStore` (S3-compatible object storage, for several servers). A store
keeps bytes under names (app.images.names) and says where they are; serving them over HTTP
(caching headers, ETag, Range, redirects) is the images view's job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from .codec import decode_image, encode_image
from .names import content_type, is_image_name, name_in_url, original_name, thumb_name

log = logging.getLogger("app.images")


@dataclass(frozen=True)
class StoredImage:
    """A saved image: its file names under the image directory and its pixel size."""

    name: str
    thumb: str
    width: int
    height: int


class ImageStoreUnavailable(RuntimeError):
    """The image store (an object store) cannot be reached; the message is safe to show."""


def _nothing_to_close() -> None:
    return None


@dataclass(frozen=True)
class ImageObject:
    """Where a stored image's bytes are, for the view that serves it: a local file (`path`), or
    a body read in chunks (`chunks`, closed with `close`) with what the store knows of it."""

    content_type: str
    path: Path | None = None
    chunks: Iterable[bytes] = ()
    close: Callable[[], None] = field(default=_nothing_to_close)
    length: int | None = None
    etag: str | None = None
    last_modified: datetime | None = None


@dataclass(frozen=True)
class Presigned:
    """A URL the browser may fetch the image from directly, valid for `expires_in` seconds."""

    url: str
    expires_in: int


class ImageStore(Protocol):
    """What the generator, the views, the importers, backups and the CLI use of an image store."""

    backend: str

    def save(self, stem: str, data: bytes) -> StoredImage:
        """Validate `data`, strip its metadata, and store it as `<stem>.png` with its thumbnail."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Store bytes under a name as they are (a restore, a migration: already validated)."""
        ...

    def exists(self, name: str) -> bool: ...

    def read(self, name: str) -> bytes:
        """The bytes of a stored image; FileNotFoundError when there are none."""
        ...

    def delete(self, name: str) -> bool:
        """Remove an original and its thumbnail; False if there was none."""
        ...

    def names(self) -> list[str]:
        """Every stored name (originals and thumbnails), sorted."""
        ...

    def name_for_url(self, url: str) -> str | None:
        """For an app image URL (`/images/<name>`) that is stored, its name (used on import)."""
        ...

    def ready(self) -> tuple[bool, str]:
        """Whether the store takes writes (files) or answers (an object store), and a word on it."""
        ...

    def origin(self) -> str | None:
        """Another origin the browser loads images from (presigned URLs), for the CSP; or None."""
        ...

    def presigned(self, name: str, *, download_name: str | None = None) -> Presigned | None:
        """A URL to send the browser to instead of serving the bytes (None: serve them);
        FileNotFoundError when the image is not stored."""
        ...

    def describe(self, name: str) -> ImageObject:
        """What serving the image needs except its body (a HEAD request, an ETag check);
        FileNotFoundError when it is not stored, ValueError for a name that is not an image's."""
        ...

    def open(self, name: str) -> ImageObject:
        """The image to serve, its body included (the caller closes it); errors as `describe`."""
        ...


class ImageStoreBase:
    """The behaviour both backends share, on top of their primitives (`put`, `exists`,
    `remove`, `location`). Backends subclass it and implement the rest of :class:`ImageStore`."""

    backend = "abstract"

    # -- primitives each backend provides
    def put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def remove(self, name: str) -> None:
        raise NotImplementedError

    def location(self, name: str) -> str:
        """Where a name is stored, for the log (a path, an s3:// URL)."""
        raise NotImplementedError

    # -- shared behaviour
    def save(self, stem: str, data: bytes) -> StoredImage:
        image = decode_image(data)
        name = original_name(stem)
        if not is_image_name(name):
            raise ValueError("entry ids are 32 hex digits")
        thumb = thumb_name(name)
        original, small = encode_image(image, data)
        self.put(thumb, small)
        self.put(name, original)  # last: an original is only ever there with its thumbnail
        log.debug("Bild gespeichert unter: %s", self.location(name))
        return StoredImage(name=name, thumb=thumb, width=image.width, height=image.height)

    def delete(self, name: str) -> bool:
        if not is_image_name(name) or not self.exists(name):
            return False
        self.remove(name)
        self.remove(thumb_name(name))
        log.info("Deleted image %s", name)
        return True

    def name_for_url(self, url: str) -> str | None:
        name = name_in_url(url)
        return name if name is not None and self.exists(name) else None

    def origin(self) -> str | None:
        return None

    @staticmethod
    def content_type(name: str) -> str:
        return content_type(name)
