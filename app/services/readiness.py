"""Whether this server can take requests (`GET /readyz`): the history and image stores take
writes and an upstream (or the demo) is set up."""

from __future__ import annotations

from typing import Any

from ..history import HistoryStore
from ..images import ImageStore
from ..providers import Provider


def readiness(history: HistoryStore, images: ImageStore, provider: Provider) -> dict[str, Any]:
    """The readiness report; `ready` is false when the history cannot be written or reached, or
    image files in DATA_DIR cannot be written.

    An object store shared by every server that is down would take them all out of the load
    balancer at once, though text answers still work: it makes this server degraded, not
    unready. Files in DATA_DIR that cannot be written are this server's own problem.
    """
    store_ok, store = history.ready()
    images_ok, images_state = images.ready()
    ready = store_ok and (images_ok or images.backend == "s3")
    return {
        "ready": ready,
        "degraded": ready and not images_ok,
        "store": store,
        "history": history.backend,
        "images": images_state,
        "image_store": images.backend,
        "upstream": "demo" if provider.demo else "configured",
    }
