"""The offline demo provider: deterministic answers and Pillow-drawn images, no network.

Used when no OPENAI_API_KEY is set, so a fresh checkout works and tests are repeatable: the
same prompt always gives the same answer and the same picture, different prompts differ.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import textwrap
import threading
from collections.abc import Iterator

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from ..config import Settings
from ..image_options import ImageOptions
from . import ImageAnswer, Message, StreamChunk, TextAnswer, message_images, message_text

_SNIPPETS: dict[str, tuple[tuple[str, ...], str, str]] = {
    # language: (keywords that select it, fence tag, snippet template)
    "sql": (
        ("sql", "select", "query", "datenbank", "database"),
        "sql",
        "-- {title}\nSELECT id, name, created_at\nFROM items\n"
        "WHERE name LIKE '%demo%'\nORDER BY created_at DESC\nLIMIT 5;",
    ),
    "bash": (
        ("bash", "shell", "einzeiler", "one-liner", "terminal", "linux"),
        "bash",
        "#!/usr/bin/env bash\n# {title}\nset -euo pipefail\nfind . -name '*.log' -mtime +7 -print",
    ),
    "javascript": (
        ("javascript", "js", "node", "typescript"),
        "javascript",
        "// {title}\nfunction demo(items) {{\n  return items.filter(Boolean).map(String);\n}}\n\n"
        "console.log(demo([1, 0, 'a']));",
    ),
    "html": (
        ("html", "css", "webseite", "web page"),
        "html",
        "<!-- {title} -->\n<main>\n  <h1>Demo</h1>\n  <p>Hello from demo mode.</p>\n</main>",
    ),
    "python": (
        (),
        "python",
        'def demo(values: list[int]) -> int:\n    """{title}"""\n'
        "    return sum(v for v in values if v % 2 == 0)\n\n\nprint(demo([1, 2, 3, 4]))",
    ),
}


def _digest(prompt: str) -> bytes:
    return hashlib.sha256(prompt.encode("utf-8")).digest()


def demo_answer(prompt: str) -> str:
    """A deterministic markdown answer with a code block in a language guessed from the prompt."""
    lowered = prompt.lower()
    words = set(lowered.replace(",", " ").replace(":", " ").split())
    language = "python"
    for name, (keywords, _, _) in _SNIPPETS.items():
        if any(k in words or (len(k) > 3 and k in lowered) for k in keywords):
            language = name
            break
    _, fence, template = _SNIPPETS[language]
    title = (
        textwrap.shorten(prompt, 60, placeholder="…")
        .replace("*/", "")
        .replace("-->", "")
        .replace('"""', "'''")
        or "demo"
    )
    code = template.format(title=title)
    tag = _digest(prompt).hex()[:8]
    return (
        f"**Demo answer** ({tag}) — this was written offline because no `OPENAI_API_KEY` is set.\n\n"
        f"```{fence}\n{code}\n```\n\n"
        "Set `OPENAI_API_KEY` (and optionally `OPENAI_BASE_URL`) to get real answers."
    )


def picture_note(urls: list[str]) -> str:
    """What the demo says about the pictures sent with a prompt: their pixel sizes."""
    sizes = []
    for url in urls:
        _, _, payload = url.partition(",")
        try:
            with Image.open(io.BytesIO(base64.b64decode(payload))) as picture:
                sizes.append(f"{picture.width}×{picture.height}")
        except (binascii.Error, ValueError, OSError, UnidentifiedImageError):
            sizes.append("unreadable")
    if not sizes:
        return ""
    if len(sizes) == 1:
        return f"\n\nThe attached image is {sizes[0]} pixels."
    return f"\n\nThe {len(sizes)} attached images are {', '.join(sizes)} pixels."


def demo_reply(messages: list[Message]) -> str:
    """The demo's answer to the last message: its text, and a word on any attached picture."""
    last = messages[-1]
    return demo_answer(message_text(last)) + picture_note(message_images(last))


def demo_edit(prompt: str, picture: bytes, size: str = "512x512") -> bytes:
    """The picture visibly derived from: scaled into the size, tinted with a colour from the
    prompt's hash, framed in it, with the prompt as a caption (deterministic)."""
    width, height = (int(n) for n in size.split("x"))
    scale = min(1.0, 512 / max(width, height))
    width, height = max(64, int(width * scale)), max(64, int(height * scale))
    digest = _digest(prompt)
    tint = tuple(digest[0:3])
    with Image.open(io.BytesIO(picture)) as source:
        base = ImageOps.fit(source.convert("RGB"), (width, height))
    image = Image.blend(base, Image.new("RGB", (width, height), tint), 0.3)
    draw = ImageDraw.Draw(image)
    border = max(4, min(width, height) // 32)
    draw.rectangle([(0, 0), (width - 1, height - 1)], outline=tint, width=border)
    caption = textwrap.wrap(" ".join(prompt.split()), width=max(10, width // 9))[:2] or [""]
    box_top = height - 16 * len(caption) - 16
    draw.rectangle([(0, box_top), (width, height)], fill=(0, 0, 0))
    for n, line in enumerate(caption):
        draw.text((8, box_top + 8 + n * 16), line, fill=(255, 255, 255), font=ImageFont.load_default())
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def demo_image(prompt: str, size: str = "512x512") -> bytes:
    """A PNG drawn from the prompt's hash: a gradient, a few shapes and the prompt as a caption."""
    width, height = (int(n) for n in size.split("x"))
    # Demo pictures stay small whatever size is asked for: they illustrate, they don't need detail.
    scale = min(1.0, 512 / max(width, height))
    width, height = max(64, int(width * scale)), max(64, int(height * scale))
    digest = _digest(prompt)
    top = tuple(digest[0:3])
    bottom = tuple(digest[3:6])
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line(
            [(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        )
    for i in range(5):
        b = digest[6 + i * 5 : 11 + i * 5]
        x0, y0 = b[0] * width // 256, b[1] * height // 256
        radius = 10 + b[2] * min(width, height) // 1024
        colour = (b[3], b[4], (b[3] + b[4]) % 256)
        shape = [(x0 - radius, y0 - radius), (x0 + radius, y0 + radius)]
        if i % 2:
            draw.rectangle(shape, fill=colour, outline=(255, 255, 255))
        else:
            draw.ellipse(shape, fill=colour, outline=(255, 255, 255))
    font = ImageFont.load_default()
    caption = textwrap.wrap(" ".join(prompt.split()), width=max(10, width // 9))[:3] or [""]
    box_top = height - 16 * len(caption) - 16
    draw.rectangle([(0, box_top), (width, height)], fill=(0, 0, 0))
    for n, line in enumerate(caption):
        draw.text((8, box_top + 8 + n * 16), line, fill=(255, 255, 255), font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class DemoStream:
    """The demo answer in small pieces with a short pause between them, so streaming shows."""

    delay = 0.01

    def __init__(self, text: str) -> None:
        self.text = text
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[StreamChunk]:
        pieces = re.findall(r"\S+\s*|\s+", self.text)
        for piece in pieces:
            if self._closed.wait(self.delay):
                return
            yield StreamChunk(text=piece, model="demo")
        words = len(pieces)
        yield StreamChunk(finish_reason="stop", usage={"prompt_tokens": 0, "completion_tokens": words})


class DemoProvider:
    """Answers offline, deterministically; the UI labels everything it makes as demo output."""

    demo = True

    def __init__(self, settings: Settings) -> None:
        self.chat_model = "demo"
        self.image_model = "demo"

    def complete(self, messages: list[Message], model: str, timeout: float) -> TextAnswer:
        return TextAnswer(text=demo_reply(messages), model="demo")

    def stream(self, messages: list[Message], model: str, timeout: float) -> DemoStream:
        return DemoStream(demo_reply(messages))

    def list_models(self) -> list[str]:
        return ["demo"]

    def generate_image(self, prompt: str, options: ImageOptions, timeout: float | None = None) -> ImageAnswer:
        return ImageAnswer(model="demo", data=demo_image(prompt, options.size))

    def edit_image(
        self, prompt: str, image: bytes, options: ImageOptions, timeout: float | None = None
    ) -> ImageAnswer:
        return ImageAnswer(model="demo", data=demo_edit(prompt, image, options.size))
