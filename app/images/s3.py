"""Images in S3-compatible object storage (AWS S3, MinIO, Ceph, Garage …), for several servers.

Chosen with `IMAGE_STORE_URL=s3://bucket/prefix` (and `IMAGE_STORE_ENDPOINT_URL` for a server
other than AWS). Credentials come from botocore's usual sources, the ones boto3 uses too
(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, or an instance role); they are never
logged.

Objects are `<prefix>/<name>`, named as app.images.names names an original and its thumbnail,
validated and stripped of metadata before they are stored, exactly as files in DATA_DIR are. The images view
serves them through the app (`/images/<name>`, cached for ever, with ETag revalidation), or,
with `IMAGE_STORE_PRESIGN=<seconds>`, redirects the browser to a presigned URL this store makes,
so the bytes never pass through the app servers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import cache
from typing import Any
from urllib.parse import urlparse

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .names import IMMUTABLE, is_image_name
from .store import ImageObject, ImageStoreBase, ImageStoreUnavailable, Presigned

log = logging.getLogger("app.images")

CHUNK = 64 * 1024
CONNECT_TIMEOUT = 2.0  # seconds to reach the object store
FAIL_FAST_FOR = 5.0  # seconds calls fail at once after the store was found unreachable


@cache
def _shared_loader() -> botocore.loaders.Loader:
    """The loader of S3's service description, made once per process, as the openai client's TLS
    context is (app.providers.openai_provider): it only reads JSON files and keeps what it parsed,
    which is most of the quarter second a client takes to make, and every store of the process
    (every app a test or a command builds) would parse them again."""
    return botocore.session.get_session().get_component("data_loader")


def _botocore_session() -> botocore.session.Session:
    """A new session, so credentials are looked up afresh as for any new session, that reads
    S3's service description through the process's shared loader."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _shared_loader())
    return session


def _missing(error: ClientError) -> bool:
    code = str(error.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


class S3ImageStore(ImageStoreBase):
    """Originals and thumbnails as objects in one bucket under one prefix."""

    backend = "s3"

    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        presign: int = 0,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        parsed = urlparse(url)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.presign = presign
        self.endpoint_url = endpoint_url
        # Explicit credentials (from the environment or `.env`) win; otherwise botocore's own chain
        # (environment, profile, instance role) applies.
        explicit = bool(access_key_id and secret_access_key)
        self._down_until = 0.0
        self.client = _botocore_session().create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id if explicit else None,
            aws_secret_access_key=secret_access_key if explicit else None,
            config=Config(
                # Fail fast when the store is away: a request thread must not wait for long.
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=timeout,
                retries={"max_attempts": 2, "mode": "standard"},
                # Path-style URLs work with every S3-compatible server (MinIO needs them).
                s3={"addressing_style": "path"},
            ),
        )

    def key(self, name: str) -> str:
        if not is_image_name(name):
            raise ValueError(f"{name!r} is not an image name")
        return f"{self.prefix}/{name}" if self.prefix else name

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"

    def _call(self, what: str, fn, *, fast: bool = False, **kwargs):
        """One S3 call. After the store was found unreachable, `fast` calls (serving images)
        fail at once for a few seconds, so a page of thumbnails cannot tie up every request
        thread waiting for timeouts; writes, deletes and /readyz always try."""
        if fast and time.monotonic() < self._down_until:
            raise ImageStoreUnavailable("The image store is not reachable.")
        try:
            result = fn(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            if _missing(e):
                raise FileNotFoundError(kwargs.get("Key", "")) from None
            code = e.response.get("Error", {}).get("Code", "?")
            log.error("The image store refused to %s (%s).", what, code)
            raise ImageStoreUnavailable(f"The image store refused to {what} ({code}).") from None
        except BotoCoreError as e:
            self._down_until = time.monotonic() + FAIL_FAST_FOR
            log.error("The image store is not reachable (%s).", type(e).__name__)
            raise ImageStoreUnavailable("The image store is not reachable.") from None
        self._down_until = 0.0
        return result

    def put(self, name: str, data: bytes) -> None:
        self._call(
            "store an image",
            self.client.put_object,
            Key=self.key(name),
            Body=data,
            ContentType=self.content_type(name),
            CacheControl=IMMUTABLE,
        )

    def exists(self, name: str, *, fast: bool = False) -> bool:
        if not is_image_name(name):
            return False
        try:
            self._call("look up an image", self.client.head_object, fast=fast, Key=self.key(name))
        except FileNotFoundError:
            return False
        return True

    def read(self, name: str) -> bytes:
        return self._call("read an image", self.client.get_object, Key=self.key(name))["Body"].read()

    def remove(self, name: str) -> None:
        self._call("delete an image", self.client.delete_object, Key=self.key(name))

    def names(self) -> list[str]:
        found: list[str] = []
        prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if is_image_name(name):
                        found.append(name)
        except (ClientError, BotoCoreError) as e:
            raise ImageStoreUnavailable(f"The image store cannot be listed ({type(e).__name__}).") from None
        return sorted(found)

    def presigned(self, name: str, *, download_name: str | None = None) -> Presigned | None:
        if not self.presign:
            return None
        params = {"Bucket": self.bucket, "Key": self.key(name)}
        if download_name:
            params["ResponseContentDisposition"] = f'attachment; filename="{download_name}"'
        else:
            params["ResponseCacheControl"] = IMMUTABLE
        if not self.exists(name, fast=True):
            raise FileNotFoundError(name)
        url = self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.presign)
        return Presigned(url, self.presign)

    def _image_object(self, name: str, obj: dict[str, Any], body: Any = None) -> ImageObject:
        etag = obj.get("ETag")
        described = ImageObject(
            self.content_type(name),
            length=obj.get("ContentLength"),
            etag=etag.strip('"') if etag else None,
            last_modified=obj.get("LastModified"),
        )
        if body is None:
            return described
        return replace(described, chunks=body.iter_chunks(CHUNK), close=body.close)

    def describe(self, name: str) -> ImageObject:
        head = self._call("look up an image", self.client.head_object, fast=True, Key=self.key(name))
        return self._image_object(name, head)

    def open(self, name: str) -> ImageObject:
        obj = self._call("read an image", self.client.get_object, fast=True, Key=self.key(name))
        return self._image_object(name, obj, obj["Body"])

    def ready(self) -> tuple[bool, str]:
        try:
            self._call("check the bucket", self.client.head_bucket)
        except (ImageStoreUnavailable, FileNotFoundError):
            return False, "object store unreachable"
        return True, "object store reachable"

    def origin(self) -> str | None:
        """Where presigned URLs point (for the Content-Security-Policy's img-src)."""
        if not self.presign:
            return None
        url = self.client.meta.endpoint_url
        parsed = urlparse(url)
        return f"{parsed.scheme}://{parsed.netloc}"
