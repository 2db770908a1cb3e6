"""Which history and image stores this app uses, chosen by configuration.

`HISTORY_URL` unset → TinyDB files in DATA_DIR (the default); `postgresql://…` → PostgreSQL.
`IMAGE_STORE_URL` unset → files in DATA_DIR; `s3://bucket/prefix` → S3-compatible storage.
"""

from __future__ import annotations

from .config import Settings
from .history import ChatLog, HistoryStore
from .images import FileImageStore, ImageStore


def make_history(settings: Settings) -> HistoryStore:
    if not settings.history_url:
        # The app folds journals in the background, so no request waits for a checkpoint.
        chatlog = ChatLog(settings.data_dir, background=True)
        # Files an older version wrote move forward to this version's format, once.
        chatlog.upgrade_format()
        return chatlog
    from .history.sql import SQLChatLog

    store = SQLChatLog(settings.history_url)
    # Create or upgrade the schema now; if the database is down, the app still starts (and
    # /readyz says not ready) and the schema is made on the first request that reaches it.
    store.ensure_schema()
    return store


def make_images(settings: Settings) -> ImageStore:
    if not settings.image_store_url:
        return FileImageStore(settings.data_dir)
    from .images.s3 import S3ImageStore

    return S3ImageStore(
        settings.image_store_url,
        endpoint_url=settings.image_store_endpoint_url,
        region=settings.image_store_region,
        presign=settings.image_store_presign,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=settings.aws_secret_access_key,
    )
