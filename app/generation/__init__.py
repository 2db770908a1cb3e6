"""The generation service: validate the prompt, store it, ask the upstream, store the outcome.

The prompt is stored (pending) before the upstream is called, so a crash or an upstream failure
never loses what the user typed: the entry is then marked failed with a human message.

- `base`: what every answer shares (retries within UPSTREAM_TIMEOUT, storing outcomes, context,
  the log line per generation); `errors`: what stops a generation.
- `code`: code/text answers, in one request or streamed; `streaming`: the stream protocol
  (claims, runs, listeners, Stop, stale answers); `runs`: an answer in progress.
- `images`: generated and edited pictures.
- `context`: a conversation's earlier turns as `messages`; `models`: the upstream's model list.
"""

from __future__ import annotations

from .base import CUT_AT, Prompt, clean_prompt, log_finished
from .errors import (
    HISTORY_DOWN,
    INTERRUPTED,
    DailyCapReached,
    GenerationFailed,
    ImageNotStored,
    PromptError,
)
from .images import ImageAnswers
from .streaming import StreamedAnswers

__all__ = [
    "CUT_AT",
    "HISTORY_DOWN",
    "INTERRUPTED",
    "DailyCapReached",
    "GenerationFailed",
    "Generator",
    "ImageNotStored",
    "Prompt",
    "PromptError",
    "clean_prompt",
    "log_finished",
]


class Generator(StreamedAnswers, ImageAnswers):
    """Ties a provider, the history and the image store together for one app: code answers
    (asked or streamed, with the stream protocol) and images."""
