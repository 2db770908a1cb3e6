"""The list of chat models the upstream offers, for the model picker; cached, failures ignored."""

from __future__ import annotations

import logging
import threading
import time

from ..providers import Provider, UpstreamError

log = logging.getLogger("app.models")

TTL = 600.0  # seconds a fetched list is kept
RETRY_AFTER_FAILURE = 60.0


class ModelCatalog:
    """Model names from the upstream's /models, with the configured default always first."""

    def __init__(self, provider: Provider, clock=time.monotonic) -> None:
        self.provider = provider
        self.clock = clock
        self._names: list[str] = []
        self._expires = 0.0
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """The default model, then the upstream's others; just the default if the list fails."""
        with self._lock:
            if self.clock() >= self._expires:
                try:
                    fetched = self.provider.list_models()
                    self._expires = self.clock() + TTL
                except UpstreamError as error:
                    log.warning(
                        "Could not list the upstream's models (%s); offering the default only", error.kind
                    )
                    fetched = []
                    self._expires = self.clock() + RETRY_AFTER_FAILURE
                default = self.provider.chat_model
                self._names = [default, *(n for n in fetched if n != default)]
            return list(self._names)
