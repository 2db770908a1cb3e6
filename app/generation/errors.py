"""What stops a generation, and what it says: a request that cannot be answered as asked
(PromptError), the daily cap, an upstream failure stored with its entry (GenerationFailed), an
image the store could not take, and the messages of answers that never finished."""

from __future__ import annotations

from dataclasses import dataclass

from ..history import Entry
from ..i18n import N_
from ..messages import failure as failure_message
from ..providers import UpstreamError

INTERRUPTED = failure_message("interrupted")
HISTORY_DOWN = N_("The history database cannot be reached right now. Please try again in a moment.")


class ImageNotStored(UpstreamError):
    """The image was made but the image store (object storage) could not take it."""

    status = 503
    kind = "image_store"


class DailyCapReached(Exception):
    """DAILY_REQUEST_CAP generations were made today; `message` says so (HTTP 429)."""

    status = 429

    def __init__(self, cap: int) -> None:
        self.message = N_(
            "The daily limit of %(cap)s generations is reached. It resets at midnight (server time).", cap=cap
        )
        super().__init__(self.message)


class PromptError(ValueError):
    """The request cannot be answered as asked (a missing or too long prompt, an unknown model
    or permalink, a picture that cannot be used); `message` is shown to the user, `status` is
    the HTTP status (400 unless a more precise one fits: 404, 409, 410)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class GenerationFailed(Exception):
    """The upstream failed; the entry is stored, marked failed, with `error.message`."""

    entry: Entry
    error: UpstreamError
