"""Images as files in `DATA_DIR/images`, the default store: one validated PNG and its WebP
thumbnail per name, written atomically and never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

from ..files import atomic_write
from .names import is_image_name
from .store import ImageObject, ImageStoreBase, Presigned


class FileImageStore(ImageStoreBase):
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
        if not is_image_name(name):
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
        return sorted(n for n in os.listdir(self.root) if is_image_name(n))

    def presigned(self, name: str, *, download_name: str | None = None) -> Presigned | None:
        return None  # files are always served by the app

    def describe(self, name: str) -> ImageObject:
        path = self.path(name)
        if path is None:
            raise FileNotFoundError(name)
        return ImageObject(self.content_type(name), path=path)

    def open(self, name: str) -> ImageObject:
        return self.describe(name)  # the view streams the file itself

    def ready(self) -> tuple[bool, str]:
        return (True, "writable") if os.access(self.root, os.W_OK) else (False, "not writable")
