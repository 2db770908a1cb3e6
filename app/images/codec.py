"""Image bytes in and out: decode and verify with Pillow, strip metadata, make the thumbnail.

Pillow opens only the formats the image APIs return (PNG, JPEG, WebP, GIF), under a pixel cap
that stops decompression bombs, and decodes every image fully before it is kept. A PNG keeps
only its image chunks, byte for byte; any other format is re-encoded as PNG.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from ..messages import failure
from ..providers import BadImage

MAX_PIXELS = 40_000_000  # above any size the image APIs produce; stops decompression bombs
THUMB_SIZE = 256
# The formats the image APIs return. Pillow opens nothing else: no EPS (Ghostscript), no TIFF,
# BMP, ICO … with their own decoders and their own bugs.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")

# Pillow raises DecompressionBombError above twice this and warns above it (made an error below).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that describe the pixels; everything else (text, EXIF, time, private chunks) is dropped.
PNG_KEEP = {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT"}


def probe(data: bytes) -> Image.Image:
    """Open `data`'s header as one of IMAGE_FORMATS (nothing decoded yet), refusing more than
    MAX_PIXELS: Image.DecompressionBombError/-Warning, UnidentifiedImageError, OSError and
    friends say what is wrong; the caller words it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise Image.DecompressionBombError("too many pixels")
    return image


def decode_image(data: bytes) -> Image.Image:
    """Open and fully decode `data`; raise BadImage for non-images, truncated files and bombs."""
    if not data:
        raise BadImage(failure("image_empty"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with probe(data) as header:
                header.verify()
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImage(failure("image_too_many_pixels")) from None
    except UnidentifiedImageError:
        raise BadImage(failure("image_not_image")) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(failure("image_damaged", problem=type(e).__name__)) from None
    return image


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
