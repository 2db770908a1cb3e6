"""The `messages` a chat request sends: SYSTEM_PROMPT, the earlier turns of the conversation
(the branch the new turn is on: the turns it follows up), then the new prompt.

A turn with a picture sends its user message as content parts: the text, then an `image_url`
part whose URL is a data URL of the stored picture. Earlier turns count against
CONTEXT_CHARS by their text and a fixed cost per picture; the oldest are left out first, and
the new prompt (with its picture) always goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..history import Entry

IMAGE_CONTEXT_CHARS = 3_000  # what one picture counts against CONTEXT_CHARS (~750 tokens)

Message = dict[str, Any]
ImageData = Callable[[str], "str | None"]  # a stored picture's name → its data URL (None: gone)


@dataclass(frozen=True)
class Context:
    """What goes upstream for one turn, and how many earlier turns were left out."""

    messages: list[Message]
    dropped: int

    @property
    def images(self) -> int:
        """How many pictures go along (so an upstream refusing pictures can be told apart)."""
        return sum(
            1
            for message in self.messages
            if isinstance(message["content"], list)
            for part in message["content"]
            if part.get("type") == "image_url"
        )


def user_message(prompt: str, image: str | None) -> Message:
    """A user message: plain text, or the text and then the picture as content parts."""
    if image is None:
        return {"role": "user", "content": prompt}
    return {
        "role": "user",
        "content": [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": image}}],
    }


def cost(entry: Entry, with_answer: bool = True) -> int:
    """What a turn counts against CONTEXT_CHARS."""
    answer = len(entry.response) if with_answer else 0
    return len(entry.prompt) + answer + (IMAGE_CONTEXT_CHARS if entry.input_image else 0)


def build(
    chain: list[Entry], context_chars: int, system_prompt: str | None, image_data: ImageData
) -> Context:
    """The messages for the last turn of `chain` (the turns it follows up, oldest first, then
    itself). Only answered code turns go along as context."""
    entry, earlier = chain[-1], chain[:-1]
    turns = [t for t in earlier if t.kind == "code" and t.response and t.status in ("done", "stopped")]
    budget = context_chars - cost(entry, with_answer=False) - len(system_prompt or "")
    kept: list[Entry] = []
    for turn in reversed(turns):
        if cost(turn) > budget:
            break
        kept.insert(0, turn)
        budget -= cost(turn)
    messages: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for turn in kept:
        image = image_data(turn.input_image) if turn.input_image else None
        messages += [user_message(turn.prompt, image), {"role": "assistant", "content": turn.response}]
    own = image_data(entry.input_image) if entry.input_image else None
    messages.append(user_message(entry.prompt, own))
    return Context(messages, len(turns) - len(kept))
