"""The image pipeline: decode and verify, re-encode without metadata, and make the thumbnail.

Inputs are photo-like PNGs of the two common upstream sizes (and one JPEG, the re-encoding
path), drawn by the benchmark: a gradient with noise, so they compress like real pictures. Figures:
the median time of FileImageStore.save (the whole pipeline, fsynced file writes included) and the
thumbnail's size against the stored original.
"""

from __future__ import annotations

import io
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

from app.images import FileImageStore


def photo_like(width: int, height: int, seed: int = 3, fmt: str = "PNG") -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=(y * 255 // height, 120, 255 - y * 255 // height))
    for _ in range(60):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(10, 120)
        draw.ellipse([(x - r, y - r), (x + r, y + r)], fill=tuple(rng.randrange(256) for _ in range(3)))
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    image = Image.blend(image, noise, 0.25).filter(ImageFilter.SMOOTH)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def run(samples: int = 9) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = FileImageStore(Path(tmp))
        for width, height, fmt in ((1024, 1024, "PNG"), (1792, 1024, "PNG"), (1024, 1024, "JPEG")):
            data = photo_like(width, height, fmt=fmt)
            times, stored = [], None
            for _ in range(samples):
                start = time.perf_counter()
                stored = store.save(uuid.uuid4().hex, data)
                times.append((time.perf_counter() - start) * 1000)
            median = statistics.median(times)
            original = (store.root / stored.name).stat().st_size
            thumb = (store.root / stored.thumb).stat().st_size
            rows.append(
                (
                    f"image pipeline {width}×{height} {fmt} (decode, verify, "
                    f"{'strip metadata' if fmt == 'PNG' else 're-encode as PNG'}, thumbnail)",
                    f"{median:.0f} ms median; thumbnail {thumb / 1024:.1f} KB vs original "
                    f"{original / 1024:.0f} KB ({thumb / original:.1%})",
                    "≤ 150 ms",
                    "met" if median <= 150 else "missed",
                )
            )
    return rows
