"""Backup and restore: `GET /backup.zip`, the restore form and the CLI, across engines.

A history with code answers, images, a conversation, a failed entry and a deleted one is made
through the app (demo mode draws real PNGs), backed up over HTTP, and restored into fresh apps:
TinyDB → TinyDB, TinyDB → PostgreSQL + S3 and PostgreSQL + S3 → TinyDB. The exports and every
image's bytes must be equal afterwards, every permalink must answer as before, and restoring twice
must add nothing. Damaged and foreign ZIPs are refused with nothing changed.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from ..support.html import parse
from ..support.htmx import HX

EXPORTS = ("/chatlog.json", "/chatlog.full.json", "/chatlog.md")


def make_history(app) -> dict[str, str]:
    """Entries of every sort through the app; their permalinks by name."""
    client = app.test_client()
    code = client.post("/generate_code", data={"prompt": "Sort a list in Python, naïvely 🦊"}).get_json()
    follow = client.post("/generate_code", data={"prompt": "Now in reverse", "parent": code["entry"]})
    image = client.post("/generate_image", data={"prompt": "a red fox in the snow"}).get_json()
    gone = client.post("/generate_code", data={"prompt": "delete me"}).get_json()
    assert client.delete(gone["entry"]).status_code == 200
    store = app.extensions["chatlog"]
    failed = store.fail(store.begin("code", "this one failed", "gpt-test"), "The upstream timed out.")
    return {
        "code": code["entry"],
        "follow": follow.get_json()["entry"],
        "image": image["entry"],
        "image_url": image["image_url"],
        "gone": gone["entry"],
        "failed": failed.permalink,
    }


def snapshot(app) -> dict[str, bytes]:
    """What a user can see of an app's data: the exports and every image's bytes."""
    client = app.test_client()
    seen = {path: client.get(path).get_data() for path in EXPORTS}
    for name in app.extensions["images"].names():
        seen[f"/images/{name}"] = client.get(f"/images/{name}").get_data()
    return seen


def backup_of(app) -> bytes:
    response = app.test_client().get("/backup.zip")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.is_streamed
    return response.get_data()


def restore_upload(app, data: bytes, headers: dict[str, str] | None = None):
    return app.test_client().post(
        "/chatlog/restore",
        data={"file": (io.BytesIO(data), "backup.zip")},
        content_type="multipart/form-data",
        headers=headers or {},
    )


@pytest.fixture
def source(make_app, tmp_path: Path):
    app = make_app(data_dir=tmp_path / "source")
    app.permalinks = make_history(app)
    return app


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def shared_app(make_app, tmp_path: Path, pg_url: str, s3_bucket: tuple[str, str]):
    endpoint, bucket = s3_bucket
    return make_app(
        data_dir=tmp_path / "shared",
        history_url=pg_url,
        image_store_url=f"s3://{bucket}/images",
        image_store_endpoint_url=endpoint,
        image_store_region="us-east-1",
    )


# -- the ZIP --------------------------------------------------------------------------------------


def test_the_backup_holds_history_images_seed_export_markdown_and_a_manifest(source):
    archive = zipfile.ZipFile(io.BytesIO(backup_of(source)))
    names = archive.namelist()
    manifest = json.loads(archive.read("manifest.json"))

    assert {"history.json", "chatlog.json", "manifest.json"} <= set(names)
    assert sorted(n for n in names if n.startswith("images/")) == [
        f"images/{n}" for n in source.extensions["images"].names()
    ]
    assert (
        len([n for n in names if n.startswith("markdown/")]) == 3
    )  # the conversation, the image, the failure
    assert manifest["format"] == "flask-chat-backup" and manifest["format_version"] == 1
    assert manifest["counts"] == {"entries": 5, "deleted": 1, "days": 1, "conversations": 3, "images": 2}
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(archive.read(name)).hexdigest() == meta["sha256"]
        assert len(archive.read(name)) == meta["size"]


def test_history_json_keeps_every_field_and_the_tombstone(source):
    archive = zipfile.ZipFile(io.BytesIO(backup_of(source)))
    history = json.loads(archive.read("history.json"))
    by_link = {f"/chatlog/{e['date']}/{e['index']}": e for e in history["entries"]}

    assert by_link[source.permalinks["gone"]]["deleted"] is True
    assert by_link[source.permalinks["gone"]]["prompt"] == ""
    assert by_link[source.permalinks["follow"]]["parent"] == source.permalinks["code"]
    assert by_link[source.permalinks["failed"]]["error"] == "The upstream timed out."
    assert set(by_link[source.permalinks["code"]]) >= {"id", "usage", "options", "root", "followups", "model"}


def test_the_markdown_of_a_conversation_links_its_images_relatively(source):
    archive = zipfile.ZipFile(io.BytesIO(backup_of(source)))
    markdown = {n: archive.read(n).decode() for n in archive.namelist() if n.startswith("markdown/")}
    picture = next(text for text in markdown.values() if "red fox" in text)
    conversation = next(text for text in markdown.values() if "Sort a list" in text)
    image_name = source.permalinks["image_url"].removeprefix("/images/")

    assert f"](../images/{image_name})" in picture
    assert f"images/{image_name}" in archive.namelist()
    assert "Now in reverse" in conversation and "naïvely 🦊" in conversation


def test_the_seed_export_in_the_backup_equals_chatlog_json(source):
    archive = zipfile.ZipFile(io.BytesIO(backup_of(source)))

    assert json.loads(archive.read("chatlog.json")) == source.test_client().get("/chatlog.json").get_json()


# -- round trips ----------------------------------------------------------------------------------


def check_round_trip(source, target) -> None:
    before = snapshot(source)
    restored = restore_upload(target, backup_of(source))

    assert restored.status_code == 200, restored.get_data(as_text=True)
    assert restored.get_json() == {
        "restored": 5,
        "already_present": 0,
        "conflicts": [],
        "images_restored": 2,
        "images_present": 0,
    }
    assert snapshot(target) == before
    client = target.test_client()
    for name, permalink in source.permalinks.items():
        if name != "image_url":
            assert client.get(permalink).status_code == (410 if name == "gone" else 200), name
    again = restore_upload(target, backup_of(source)).get_json()
    assert (again["restored"], again["already_present"], again["images_restored"]) == (0, 5, 0)
    assert snapshot(target) == before


def test_round_trip_tinydb_to_tinydb(source, make_app, tmp_path):
    check_round_trip(source, make_app(data_dir=tmp_path / "target"))


def test_round_trip_tinydb_to_postgresql_and_s3(source, make_app, tmp_path, pg_url, s3_bucket, s3_env):
    check_round_trip(source, shared_app(make_app, tmp_path, pg_url, s3_bucket))


def test_round_trip_postgresql_and_s3_to_tinydb(make_app, tmp_path, pg_url, s3_bucket, s3_env):
    shared = shared_app(make_app, tmp_path, pg_url, s3_bucket)
    shared.permalinks = make_history(shared)

    check_round_trip(shared, make_app(data_dir=tmp_path / "target"))


def test_new_entries_after_a_restore_never_reuse_a_restored_permalink(source, make_app, tmp_path):
    target = make_app(data_dir=tmp_path / "target")
    restore_upload(target, backup_of(source))

    new = target.test_client().post("/generate_code", data={"prompt": "after the restore"}).get_json()

    assert new["entry"] not in source.permalinks.values()
    assert target.test_client().get(source.permalinks["gone"]).status_code == 410


def test_a_restore_into_a_non_empty_history_reports_conflicting_permalinks(source, make_app, tmp_path):
    target = make_app(data_dir=tmp_path / "target")
    mine = target.test_client().post("/generate_code", data={"prompt": "mine, not the backup's"}).get_json()

    report = restore_upload(target, backup_of(source)).get_json()

    assert mine["entry"] == source.permalinks["code"]  # the same first permalink of the same day
    assert source.permalinks["code"] in report["conflicts"]
    assert target.test_client().get(mine["entry"], headers={"Accept": "application/json"}).get_json()[
        "prompt"
    ] == ("mine, not the backup's")


def test_the_restore_form_reports_in_the_page(source, make_app, tmp_path):
    target = make_app(data_dir=tmp_path / "target")

    response = restore_upload(target, backup_of(source), HX)

    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "history-changed"
    assert "Restored 5 entries and 2 images; 0 entries were already there." in response.get_data(as_text=True)


def test_the_history_page_has_the_backup_link_and_the_restore_form(source):
    html = source.test_client().get("/chatlog").get_data(as_text=True)
    doc = parse(html)

    assert any(a.attrs.get("href") == "/backup.zip" for a in doc.find_all("a"))
    forms = [f for f in doc.find_all("form") if f.attrs.get("action") == "/chatlog/restore"]
    assert len(forms) == 1 and 'name="file"' in html and "Restore a backup" in html


# -- refused ZIPs ---------------------------------------------------------------------------------


def rewritten(data: bytes, change=None, extra: dict[str, bytes] | None = None) -> bytes:
    """The backup with one member's bytes changed (manifest kept) or extra members added."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            body = source.read(name)
            target.writestr(name, change(name, body) if change else body)
        for name, body in (extra or {}).items():
            target.writestr(name, body)
    return out.getvalue()


def _edit_history(name: str, body: bytes) -> bytes:
    return body.replace(b"Sort a list", b"Sort a LIST") if name == "history.json" else body


BAD = {
    "truncated": (lambda data: data[: len(data) // 2], "not a complete ZIP"),
    "wrong checksum": (lambda data: rewritten(data, _edit_history), "does not match its checksum"),
    "path escaping": (lambda data: rewritten(data, extra={"../../x": b"boom"}), "not part of a backup"),
    "zip bomb": (
        lambda data: rewritten(data, extra={"markdown/bomb.md": b"\0" * (64 * 1024 * 1024)}),
        "ZIP bomb",
    ),
    "not a backup": (
        lambda data: rewritten(data, lambda n, b: b"{}" if n == "manifest.json" else b),
        "manifest",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_damaged_or_foreign_zip_is_refused_with_nothing_changed(source, make_app, tmp_path, case):
    check_refused(source, make_app(data_dir=tmp_path / "target"), case)


@pytest.mark.parametrize("case", ["truncated", "wrong checksum", "path escaping"])
def test_a_damaged_zip_is_refused_by_postgresql_and_s3_with_nothing_changed(
    source, make_app, tmp_path, pg_url, s3_bucket, s3_env, case
):
    check_refused(source, shared_app(make_app, tmp_path, pg_url, s3_bucket), case)


def check_refused(source, target, case: str) -> None:
    damage, message = BAD[case]
    target.test_client().post("/generate_code", data={"prompt": "already here"})
    before = snapshot(target)

    response = restore_upload(target, damage(backup_of(source)))

    assert response.status_code == 400
    assert message in response.get_json()["error"]
    assert snapshot(target) == before


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_backup_then_restore_into_another_data_dir(source, make_app, tmp_path):
    path = tmp_path / "backup.zip"
    made = source.test_cli_runner().invoke(args=["backup", str(path)])
    target = make_app(data_dir=tmp_path / "target")

    restored = target.test_cli_runner().invoke(args=["restore", str(path)])

    assert made.exit_code == 0, made.output
    assert restored.exit_code == 0, restored.output
    assert "Restored 5 entries and 2 images" in restored.output
    assert "Restoring" in restored.output  # the progress bar's label
    assert snapshot(target) == snapshot(source)


def test_cli_restore_refuses_a_truncated_zip_and_exits_non_zero(source, make_app, tmp_path):
    path = tmp_path / "broken.zip"
    path.write_bytes(backup_of(source)[:1000])
    target = make_app(data_dir=tmp_path / "target")

    result = target.test_cli_runner().invoke(args=["restore", str(path)])

    assert result.exit_code == 1
    assert "was not restored: The file is not a complete ZIP" in result.output
    assert target.extensions["chatlog"].count() == 0


# -- who may restore ------------------------------------------------------------------------------


def test_a_cross_site_restore_is_refused(source, make_app, tmp_path):
    target = make_app(data_dir=tmp_path / "target")

    response = restore_upload(target, backup_of(source), {"Sec-Fetch-Site": "cross-site"})

    assert response.status_code == 403
    assert target.extensions["chatlog"].count() == 0


def test_backup_and_restore_need_the_login_when_one_is_set(source, make_app, tmp_path):
    target = make_app(data_dir=tmp_path / "target", app_password="hunter2-long-password")
    client = target.test_client()

    download = client.get("/backup.zip", headers={"Accept": "application/json"})
    upload = restore_upload(target, backup_of(source))

    assert download.status_code == 401 and upload.status_code == 401
    assert target.extensions["chatlog"].count() == 0


# -- the daily backup -----------------------------------------------------------------------------


def test_the_upkeep_writes_a_dated_backup_once_a_day_and_keeps_the_newest(make_app, tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    for day in ("2020-01-01", "2020-01-02", "2020-01-03"):
        (backups / f"backup-{day}.zip").write_bytes(b"an old backup")
    app = make_app(data_dir=tmp_path / "live", backup_dir=backups, backup_keep=2)
    store = app.extensions["chatlog"]  # no request: the upkeep runs only when the test says so
    store.finish(store.begin("code", "keep me safe", "gpt-test"), "an answer")
    today = backups / f"backup-{app.extensions['chatlog'].today()}.zip"

    app.extensions["maintenance"].run()
    written = today.stat().st_mtime_ns
    app.extensions["maintenance"].run()

    assert sorted(p.name for p in backups.glob("*.zip")) == ["backup-2020-01-03.zip", today.name]
    assert today.stat().st_mtime_ns == written  # once a day
    assert not list(backups.glob("*.tmp"))
    target = make_app(data_dir=tmp_path / "restored")
    assert target.test_cli_runner().invoke(args=["restore", str(today)]).exit_code == 0
    assert [e.prompt for e in target.extensions["chatlog"].search("keep me safe")] == ["keep me safe"]


def test_without_backup_dir_the_upkeep_writes_no_backup(make_app, tmp_path):
    app = make_app(data_dir=tmp_path / "live")

    app.extensions["maintenance"].run()

    assert not list(tmp_path.rglob("backup-*.zip"))


def test_backup_settings_are_read_and_checked(tmp_path, monkeypatch):
    from app.config import ConfigError, load_settings

    monkeypatch.chdir(tmp_path)
    settings = load_settings({"BACKUP_DIR": "backups", "BACKUP_KEEP": "3"}, env_file=None)

    assert settings.backup_dir == tmp_path / "backups" and settings.backup_keep == 3
    with pytest.raises(ConfigError, match="BACKUP_KEEP must be between 1 and 3650"):
        load_settings({"BACKUP_KEEP": "0"}, env_file=None)
