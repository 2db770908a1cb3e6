"""The backing-service fixtures work for real: PostgreSQL, Redis and S3 on 127.0.0.1."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from .support import services


def test_pg_empty_url_is_an_empty_database_owned_by_app_on_loopback(pg_empty_url: str) -> None:
    parts = urlsplit(pg_empty_url)
    assert (parts.scheme, parts.hostname, parts.username) == ("postgresql", "127.0.0.1", "app")
    with psycopg.connect(pg_empty_url) as conn:
        user, db, owner, superuser = conn.execute(
            "SELECT current_user, current_database(), pg_get_userbyid(datdba), rolsuper"
            " FROM pg_database, pg_roles WHERE datname = current_database() AND rolname = current_user"
        ).fetchone()
        assert (user, owner, superuser) == ("app", "app", False)
        assert db == parts.path.lstrip("/")
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)


def test_pg_password_is_checked(pg_server: services.PgServer) -> None:
    wrong = pg_server.url.replace(":secret@", ":wrong@")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_pg_url_is_owned_by_app_at_the_newest_schema_revision_with_no_rows(pg_url: str) -> None:
    from app.history.sql import MIGRATIONS

    newest = max(path.name.split("_")[0] for path in (MIGRATIONS / "versions").glob("0*.py"))
    with psycopg.connect(pg_url) as conn:
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        assert owner == ("app",)
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(newest,)]
        assert conn.execute("SELECT count(*) FROM entries").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM days").fetchone() == (0,)


def test_pg_trgm_can_be_created_by_the_database_owner(pg_empty_url: str) -> None:
    with psycopg.connect(pg_empty_url) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        conn.execute("CREATE TABLE entries (id serial PRIMARY KEY, prompt text NOT NULL)")
        conn.execute("CREATE INDEX entries_prompt_trgm ON entries USING gin (prompt gin_trgm_ops)")
        conn.execute("INSERT INTO entries (prompt) VALUES ('Sortiere eine Liste'), ('parse JSON')")
        rows = conn.execute("SELECT prompt FROM entries WHERE prompt ILIKE %s", ("%LISTE%",)).fetchall()
        assert rows == [("Sortiere eine Liste",)]
        # Unicode case folding (the cluster's ctype is C.UTF-8, not C).
        assert conn.execute("SELECT lower('ÄÖÜ') = 'äöü'").fetchone() == (True,)


def test_each_pg_url_is_its_own_database(pg_server: services.PgServer, pg_url: str) -> None:
    other = pg_server.create_database(f"other_{uuid.uuid4().hex[:12]}")
    try:
        assert other != pg_url
        with psycopg.connect(pg_url) as conn:
            conn.execute("CREATE TABLE only_here (x int)")
        with psycopg.connect(other) as conn:
            found = conn.execute("SELECT to_regclass('only_here')").fetchone()
            assert found == (None,)
    finally:
        pg_server.drop_database(urlsplit(other).path.lstrip("/"))


def test_drop_database_ends_open_sessions(pg_server: services.PgServer) -> None:
    name = f"dropme_{uuid.uuid4().hex[:12]}"
    conn = psycopg.connect(pg_server.create_database(name))
    try:
        pg_server.drop_database(name)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    assert pg_server.sql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == "0"


def test_redis_set_get(redis_server: services.RedisServer) -> None:
    assert redis_server.url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        key = f"test:{uuid.uuid4().hex}"
        assert client.set(key, "42", ex=60)
        assert client.get(key) == b"42"
        assert client.incr(key) == 43
    finally:
        client.close()


def test_s3_put_get(s3_bucket: tuple[str, str]) -> None:
    endpoint_url, bucket = s3_bucket
    assert endpoint_url.startswith("http://127.0.0.1:")
    s3 = services.s3_client(endpoint_url)
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    s3.put_object(Bucket=bucket, Key="images/a.png", Body=b"\x89PNG...", ContentType="image/png")
    got = s3.get_object(Bucket=bucket, Key="images/a.png")
    assert got["Body"].read() == b"\x89PNG..."
    assert got["ContentType"] == "image/png"


def test_s3_buckets_are_fresh_per_test(s3_bucket: tuple[str, str]) -> None:
    endpoint_url, bucket = s3_bucket
    assert services.s3_client(endpoint_url).list_objects_v2(Bucket=bucket).get("KeyCount") == 0
