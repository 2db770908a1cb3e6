"""An app whose pictures go to a real S3 bucket (moto on 127.0.0.1), and how to look into it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import services
from .apps import TEST_KEY

APP_PREFIX = "imgs"

PROMPT = "A red Fox, in the snow!"


@dataclass
class S3App:
    app: Any
    client: Any
    endpoint: str
    bucket: str
    raw: Any

    def keys(self) -> list[str]:
        return sorted(o["Key"] for o in self.raw.list_objects_v2(Bucket=self.bucket).get("Contents", []))

    def object_bytes(self, name: str) -> bytes:
        return self.raw.get_object(Bucket=self.bucket, Key=f"{APP_PREFIX}/{name}")["Body"].read()

    def generate(self, prompt: str = PROMPT) -> dict:
        response = self.client.post("/generate_image", json={"prompt": prompt})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


def build_s3_app(make_app, upstream, s3_bucket, **overrides: Any) -> S3App:
    endpoint, bucket = s3_bucket
    upstream.image_mode = "b64"  # no image download: the object store is what is under test
    app = make_app(
        openai_api_key=TEST_KEY,
        openai_base_url=upstream.url,
        image_store_url=f"s3://{bucket}/{APP_PREFIX}",
        image_store_endpoint_url=endpoint,
        image_store_region="us-east-1",
        **overrides,
    )
    return S3App(app, app.test_client(), endpoint, bucket, services.s3_client(endpoint))
