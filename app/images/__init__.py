"""Images: the generated pictures and the pictures sent with prompts.

- `names`: how stored images are named (the one thumbnail rule) and their app URLs.
- `codec`: decoding and verifying with Pillow, stripping metadata, thumbnails.
- `fetch`: the guarded download of an image URL an upstream hands back (providers call it).
- `store`: the ImageStore protocol (every method the app calls) and what both backends share.
- `files`: the default store, files in DATA_DIR; `s3`: S3-compatible object storage.
- `inputs`: pictures sent with a prompt (an upload or a `data:` URL), checked and stored.

Serving an image over HTTP is the images view's job (app.views.images).
"""

from __future__ import annotations

from .files import FileImageStore
from .store import ImageStore, ImageStoreUnavailable, StoredImage

__all__ = ["FileImageStore", "ImageStore", "ImageStoreUnavailable", "StoredImage"]
