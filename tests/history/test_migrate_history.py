"""`flask --app app migrate-history --to URL`: a TinyDB history (and its images) copied into a real
PostgreSQL (and a local S3 server), through Flask's CLI runner; then an app on the shared stores
serves what was copied.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from PIL import Image

from app.history import ChatLog, Entry
from app.history.sql import SQLChatLog
from app.images import FileImageStore
from app.images.names import stored_url

from ..support.clock import CEST, Clock
from ..support.ports import free_port
from ..support.services import s3_client

DAY_ONE = datetime(2024, 8, 30, 9, 15, tzinfo=CEST)
DAY_TWO = datetime(2024, 8, 31, 10, 45, tzinfo=CEST)
DAY_THREE = datetime(2024, 9, 1, 8, 5, tzinfo=CEST)
SECRET = "pw-MUST-NOT-LEAK-5e1d0b"


@dataclass
class Source:
    """A TinyDB history made for migrating, and what the tests check about it."""

    data_dir: Path
    permalinks: list[tuple[str, int]]  # every entry's (date, index), the tombstone's included
    tombstone: Entry
    picture: Entry  # the image entry
    original: bytes  # its stored PNG, as DATA_DIR/images holds it

    def store(self) -> ChatLog:
        return ChatLog(self.data_dir)

    def image_names(self) -> set[str]:
        return {self.picture.image_file, self.picture.image_file.removesuffix(".png") + ".thumb.webp"}


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def build_history(data_dir: Path) -> Source:
    """Three days: done, failed, stopped and pending entries, a conversation across days, a
    deleted entry (tombstone) and an image entry whose PNG is in DATA_DIR/images."""
    clock = Clock(DAY_ONE)
    log = ChatLog(data_dir, clock=clock)
    log.finish(
        log.begin("code", "Write a prime test", "m"), "```python\nprint(2)\n```", usage={"total_tokens": 7}
    )
    root = log.finish(log.begin("code", "Explain recursion", "m"), "It calls itself.")
    second = log.finish(log.begin("code", "Shorter", "m", parent=root), "Self-reference.", context_dropped=1)
    doomed = log.finish(log.begin("code", "Delete me", "m"), "secret answer")
    log.delete(doomed.date, doomed.index)
    log.fail(log.begin("code", "Broken", "m"), "The upstream had a server error (500).", partial="def")

    clock.now = DAY_TWO
    picture = log.begin("image", "A red square", "dall-e-3")
    stored = FileImageStore(data_dir).save(picture.id, png_bytes())
    picture = log.finish(
        picture, stored_url(stored.name), image_file=stored.name, dimensions=[stored.width, stored.height]
    )
    log.stop(log.begin("code", "Stop me", "m"), "half an answ")

    clock.now = DAY_THREE
    log.finish(log.begin("code", "And in Python?", "m", parent=second), "def f(): return f()")
    log.begin("code", "Never answered", "m")

    permalinks = [
        (d, i) for d, n in (("2024-08-30", 5), ("2024-08-31", 2), ("2024-09-01", 2)) for i in range(n)
    ]
    original = (data_dir / "images" / stored.name).read_bytes()
    return Source(data_dir, permalinks, log.get(doomed.date, doomed.index), picture, original)


@pytest.fixture
def source(data_dir: Path) -> Source:
    """The history in the app's own DATA_DIR."""
    return build_history(data_dir)


@pytest.fixture
def cli_app(make_app, source: Source):
    """An app with the default TinyDB history on DATA_DIR (which holds `source`)."""
    return make_app()


def migrate(app, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["migrate-history", *args])


@pytest.fixture
def target(pg_url: str):
    """Open the PostgreSQL history (closed after the test): `target()` or `target(clock)`."""
    opened: list[SQLChatLog] = []

    def open_store(clock: Clock | None = None) -> SQLChatLog:
        store = SQLChatLog(pg_url, clock=clock)
        assert store.ensure_schema()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


def day_counters(store: SQLChatLog) -> list[tuple[str, int]]:
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text("SELECT day, next_idx FROM days ORDER BY day"))]


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def s3_objects(endpoint: str, bucket: str, prefix: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {obj["Key"]: client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read() for obj in listed}


# -- the history ---------------------------------------------------------------------------------


def test_migrate_copies_every_entry_with_its_permalink_and_fields(cli_app, source, pg_url, target):
    result = migrate(cli_app, "--to", pg_url)

    assert result.exit_code == 0, result.output
    assert "copied 9 entries, updated 0, 0 were already there" in result.output
    copied, original = target(), source.store()
    assert copied.export_full() == original.export_full()
    assert [copied.get(*p) for p in source.permalinks] == [original.get(*p) for p in source.permalinks]
    assert [copied.count_on(d) for d in original.dates()] == [5, 2, 2]
    assert copied.dates() == original.dates()


def test_migrate_keeps_the_tombstone_deleted(cli_app, source, pg_url, target):
    migrate(cli_app, "--to", pg_url)

    tomb = target().get(source.tombstone.date, source.tombstone.index)

    assert (tomb.id, tomb.deleted, tomb.prompt, tomb.response) == (source.tombstone.id, True, "", "")
    assert target().search("secret answer") == []
    assert target().search("Delete me") == []


def test_migrate_keeps_conversations_linked_and_listed_once(cli_app, source, pg_url, target):
    migrate(cli_app, "--to", pg_url)
    copied = target()

    last = copied.get("2024-09-01", 0)

    assert [e.prompt for e in copied.chain(last)] == ["Explain recursion", "Shorter", "And in Python?"]
    listed = [e.prompt for day in copied.page(50).days for e in day.entries]
    assert listed == [e["prompt"] for e in source.store().export_full()[::-1] if e["followups"] == 0]
    assert "Explain recursion" not in listed and "And in Python?" in listed


def test_new_entries_on_a_copied_day_continue_after_the_copied_indexes(cli_app, source, pg_url, target):
    migrate(cli_app, "--to", pg_url)
    copied = {d: {i for dd, i in source.permalinks if dd == d} for d, _ in source.permalinks}

    for now in (DAY_ONE, DAY_TWO, DAY_THREE):
        day = now.date().isoformat()
        entry = target(Clock(now)).begin("code", f"new on {day}", "m")
        assert entry.index > max(copied[day]), day
        assert target().get(day, entry.index).id == entry.id
    assert target().get("2024-08-30", 0).prompt == "Write a prime test"


def test_migrate_twice_copies_nothing_the_second_time(cli_app, source, pg_url, target):
    assert migrate(cli_app, "--to", pg_url).exit_code == 0
    before = (target().export_full(), day_counters(target()), target().get(*source.permalinks[3]))

    again = migrate(cli_app, "--to", pg_url)

    assert again.exit_code == 0, again.output
    assert "copied 0 entries, updated 0, 9 were already there" in again.output
    assert (target().export_full(), day_counters(target()), target().get(*source.permalinks[3])) == before


def test_a_conflicting_permalink_fails_the_command_and_the_other_entries_are_copied(
    cli_app, source, pg_url, target
):
    occupant = target(Clock(DAY_ONE)).begin("code", "Already in the database", "m")
    assert occupant.permalink == "/chatlog/2024-08-30/0"

    result = migrate(cli_app, "--to", pg_url)

    assert result.exit_code != 0
    assert "/chatlog/2024-08-30/0" in result.output
    assert "copied 8 entries" in result.output
    copied, original = target(), source.store()
    assert copied.get("2024-08-30", 0).id == occupant.id
    assert copied.get("2024-08-30", 0).prompt == "Already in the database"
    rest = source.permalinks[1:]
    assert [copied.get(*p) for p in rest] == [original.get(*p) for p in rest]


def test_migrate_from_another_directory(make_app, tmp_path, pg_url, target):
    old = tmp_path / "old-data"
    old.mkdir()
    elsewhere = build_history(old)
    app = make_app()  # its own DATA_DIR is empty

    result = migrate(app, "--to", pg_url, "--from", str(old))

    assert result.exit_code == 0, result.output
    assert "copied 9 entries" in result.output
    assert target().export_full() == elsewhere.store().export_full()


def test_migrate_to_an_unreachable_database_fails_clearly_without_the_password(cli_app, caplog):
    port = free_port()

    with caplog.at_level(logging.DEBUG):
        result = migrate(cli_app, "--to", f"postgresql://app:{SECRET}@127.0.0.1:{port}/history")

    assert result.exit_code != 0
    assert f"127.0.0.1:{port}" in result.output
    assert "reach" in result.output.lower()
    assert SECRET not in result.output
    assert SECRET not in caplog.text


def test_a_day_lost_to_damage_never_hands_out_its_old_indexes_after_migrating(
    make_app, data_dir, pg_url, target
):
    # TinyDB keeps a damaged day's permalinks unused (sequence.json); the copy must keep them too.
    log = ChatLog(data_dir, clock=Clock(DAY_ONE))
    for n in range(3):
        log.begin("code", f"lost {n}", "m")
    log.checkpoint("2024-08-30")  # the entries are in the day file alone now, not in a journal
    (data_dir / "history" / "2024-08-30.json").write_bytes(b"\x00\xff nothing readable at all")
    assert ChatLog(data_dir).days() == [] and ChatLog(data_dir).quarantined()
    app = make_app()

    result = migrate(app, "--to", pg_url)

    assert result.exit_code == 0, result.output
    entry = target(Clock(DAY_ONE)).begin("code", "after the migration", "m")
    assert entry.index > 2, f"{entry.permalink} was handed out before the day file was lost"


# -- images --------------------------------------------------------------------------------------


def test_migrate_copies_the_images_to_s3_once(cli_app, source, pg_url, s3_bucket, s3_env):
    endpoint, bucket = s3_bucket
    images = ("--images-to", f"s3://{bucket}/prefix", "--images-endpoint-url", endpoint)

    first = migrate(cli_app, "--to", pg_url, *images)

    assert first.exit_code == 0, first.output
    assert "Images: copied 2, 0 were already there" in first.output
    objects = s3_objects(endpoint, bucket, "prefix/")
    assert set(objects) == {f"prefix/{name}" for name in source.image_names()}
    assert objects[f"prefix/{source.picture.image_file}"] == source.original

    second = migrate(cli_app, "--to", pg_url, *images)

    assert second.exit_code == 0, second.output
    assert "Images: copied 0, 2 were already there" in second.output
    assert "copied 0 entries" in second.output
    assert s3_objects(endpoint, bucket, "prefix/") == objects


def test_an_app_on_the_shared_stores_serves_what_was_migrated(
    cli_app, make_app, source, pg_url, s3_bucket, s3_env
):
    endpoint, bucket = s3_bucket
    result = migrate(
        cli_app, "--to", pg_url, "--images-to", f"s3://{bucket}/prefix", "--images-endpoint-url", endpoint
    )
    assert result.exit_code == 0, result.output
    shared = make_app(
        history_url=pg_url,
        image_store_url=f"s3://{bucket}/prefix",
        image_store_endpoint_url=endpoint,
        image_store_region="us-east-1",
    )
    client = shared.test_client()
    picture = source.picture

    page = client.get(picture.permalink)
    png = client.get(f"/images/{picture.image_file}")
    code = client.get("/chatlog/2024-08-30/0")
    tomb = client.get(source.tombstone.permalink)

    assert page.status_code == 200
    assert "A red square" in page.get_data(as_text=True)
    assert f"/images/{picture.image_file}" in page.get_data(as_text=True)
    assert (png.status_code, png.mimetype) == (200, "image/png")
    assert png.get_data() == source.original
    assert code.status_code == 200 and "Write a prime test" in code.get_data(as_text=True)
    assert tomb.status_code == 410


# -- running it again before the switch-over ----------------------------------------------------


def test_a_rerun_brings_copied_entries_up_to_date_and_removes_deleted_images(
    cli_app, source, pg_url, target, s3_bucket, s3_env
):
    endpoint, bucket = s3_bucket
    images = ("--images-to", f"s3://{bucket}/prefix", "--images-endpoint-url", endpoint)
    assert migrate(cli_app, "--to", pg_url, *images).exit_code == 0
    log = ChatLog(source.data_dir)
    pending = log.get("2024-09-01", 1)
    assert pending.status == "pending"
    # Meanwhile, on the old server: the pending answer arrives, the image entry is deleted.
    log.finish(pending, "late answer")
    log.delete(source.picture.date, source.picture.index)
    FileImageStore(source.data_dir).delete(source.picture.image_file)

    again = migrate(cli_app, "--to", pg_url, *images)

    assert again.exit_code == 0, again.output
    assert "copied 0 entries, updated 2, 7 were already there" in again.output
    assert "removed 1 of entries deleted since the last run" in again.output
    copied = target()
    assert (copied.get("2024-09-01", 1).status, copied.get("2024-09-01", 1).response) == (
        "done",
        "late answer",
    )
    gone = copied.get(source.picture.date, source.picture.index)
    assert gone.deleted and gone.prompt == "" and gone.image_file is None
    assert copied.search("A red square") == []
    assert s3_objects(endpoint, bucket, "prefix/") == {}


def test_a_rerun_never_brings_back_an_entry_deleted_in_the_database(cli_app, source, pg_url, target):
    assert migrate(cli_app, "--to", pg_url).exit_code == 0
    target().delete("2024-08-30", 0)

    again = migrate(cli_app, "--to", pg_url)

    assert again.exit_code == 0, again.output
    assert target().get("2024-08-30", 0).deleted
    assert target().search("prime test") == []


def test_the_database_url_may_come_from_history_url_instead_of_the_command_line(
    cli_app, source, pg_url, target, monkeypatch
):
    monkeypatch.setenv("HISTORY_URL", pg_url)

    result = migrate(cli_app)

    assert result.exit_code == 0, result.output
    assert "copied 9 entries" in result.output
    assert target().count() == source.store().count()
