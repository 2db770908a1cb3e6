"""CLI commands: `flask --app app import-chatlog FILE` and `export-chatlog [FILE]` (seed format),
`backup FILE.zip` and `restore FILE.zip` (everything, either engine), `migrate-history --to
postgresql://…` (TinyDB files and images → the shared stores) and `upgrade-history` (the
PostgreSQL schema, which the app also upgrades when it starts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .messages import N_

if TYPE_CHECKING:  # imported where used: a CLI run needs only its own command's modules
    from .history.sql import SQLChatLog
    from .images import ImageStore


@click.command("import-chatlog")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@with_appcontext
def import_chatlog(file) -> None:
    """Import a chatlog.json in the seed's format; entries already present are skipped."""
    from .services.importing import import_chatlog as import_text

    try:
        text = file.read()
    except UnicodeDecodeError:
        raise click.ClickException(f"{file.name} is not UTF-8 text") from None
    try:
        added, skipped = import_text(
            text,
            current_app.extensions["chatlog"],
            current_app.extensions["images"],
            current_app.config["SETTINGS"],
        )
    except ValueError as e:  # ImportFileError included: each names what is wrong
        raise click.ClickException(f"{file.name}: {e}") from None
    click.echo(
        N_("Imported %(added)s entries, skipped %(skipped)s already present.", added=added, skipped=skipped)
    )


@click.command("export-chatlog")
@click.argument("file", required=False, type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def export_chatlog(file: str | None) -> None:
    """Write the history in the seed's chatlog.json format to FILE (default: standard output)."""
    text = json.dumps(current_app.extensions["chatlog"].export_seed(), ensure_ascii=False, indent=4) + "\n"
    if file is None:
        sys.stdout.write(text)
        return
    from .files import atomic_write

    atomic_write(Path(file).resolve(), text)
    click.echo(f"Exported the history to {file}.", err=True)


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@with_appcontext
def backup(file: Path) -> None:
    """Write a backup ZIP of the whole history and every image to FILE (as GET /backup.zip)."""
    from .backup.daily import write_backup

    write_backup(current_app._get_current_object(), file.resolve())  # type: ignore[attr-defined]
    click.echo(f"Wrote the backup {file}.", err=True)


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@with_appcontext
def restore(file: Path) -> None:
    """Restore a backup ZIP into this app's history and image store (either engine).

    The whole backup is checked first; a damaged or foreign one changes nothing. Entries already
    here are kept, so restoring twice adds nothing; a permalink holding another entry is named
    and left alone, and the command then exits non-zero.
    """
    from .backup import BackupRefused, planned_steps
    from .backup import restore as restore_backup

    steps = planned_steps(str(file)) or 1
    store, images = current_app.extensions["chatlog"], current_app.extensions["images"]
    try:
        with click.progressbar(length=steps, label="Restoring", file=sys.stderr) as bar:
            report = restore_backup(str(file), store, images, bar.update)
    except BackupRefused as e:
        raise click.ClickException(f"{file} was not restored: {e}") from None
    click.echo(
        f"Restored {report.added} entries and {report.images_added} images; "
        f"{report.present} entries and {report.images_present} images were already there."
    )
    if report.conflicts:
        listed = ", ".join(report.conflicts[:10]) + (" …" if len(report.conflicts) > 10 else "")
        raise click.ClickException(
            f"{len(report.conflicts)} permalinks already hold other entries and were left alone: {listed}"
        )


@click.command("migrate-history")
@click.option(
    "--to",
    "to_url",
    required=True,
    envvar="HISTORY_URL",
    metavar="URL",
    help="postgresql://user:password@host/db (default: HISTORY_URL; keeps the password out of `ps`).",
)
@click.option(
    "--from",
    "from_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The DATA_DIR to copy from (default: this app's DATA_DIR).",
)
@click.option("--images-to", metavar="S3_URL", help="s3://bucket/prefix (default: IMAGE_STORE_URL if set).")
@click.option(
    "--images-endpoint-url", metavar="URL", help="The S3 endpoint (default: IMAGE_STORE_ENDPOINT_URL)."
)
@with_appcontext
def migrate_history(
    to_url: str, from_dir: Path | None, images_to: str | None, images_endpoint_url: str | None
):
    """Copy a TinyDB history (and its images) into PostgreSQL (and S3-compatible storage).

    Permalinks stay the same and deleted entries stay deleted. Run it as often as you like
    while the files are still in use: each run adds what is new, brings entries copied before up
    to date (answers finished, entries deleted since) and never brings a deleted entry back.
    """
    from .history import ChatLog
    from .images import FileImageStore
    from .services.migration import copy_history, copy_images

    settings = current_app.config["SETTINGS"]
    source_dir = from_dir or settings.data_dir
    if not (source_dir / "history").is_dir():
        raise click.ClickException(f"{source_dir} has no history folder to copy.")
    target = _history_target(to_url)
    remote = _image_target(images_to or settings.image_store_url, images_endpoint_url)
    source = ChatLog(source_dir)
    sizes = {date: source.day_size(date) for date in source.dates()}
    # One day in memory at a time (a day file is read, copied in batches, then dropped), so
    # the size of the whole history does not matter; the bar counts the bytes of the day files.
    with click.progressbar(length=sum(sizes.values()) or 1, label="History", file=sys.stderr) as bar:
        copied = copy_history(source, target, sizes, bar.update)
    click.echo(
        f"History: copied {copied.added} entries, updated {copied.updated}, "
        f"{copied.unchanged} were already there."
    )
    if quarantined := source.quarantined():
        click.echo(f"Not copied (damaged, moved aside): {', '.join(quarantined)}.")
    if remote is not None:
        local = FileImageStore(source_dir)
        names = local.names()
        with click.progressbar(names, label="Images ", show_pos=True, file=sys.stderr) as bar:
            added = copy_images(local, remote, bar)
        removed = sum(1 for name in copied.orphaned_images if remote.delete(name))
        click.echo(
            f"Images: copied {added}, {len(names) - added} were already there, "
            f"removed {removed} of entries deleted since the last run."
        )
    target.close()
    if copied.conflicts:
        listed = ", ".join(copied.conflicts[:10]) + (" …" if len(copied.conflicts) > 10 else "")
        raise click.ClickException(
            f"{len(copied.conflicts)} permalinks already hold other entries in the database "
            f"and were left alone: {listed}"
        )


def _history_target(url: str) -> SQLChatLog:
    """The PostgreSQL history to copy into, its schema up to date; ClickException when not."""
    from .config import redact_url_password
    from .history.sql import SQLChatLog

    try:
        target = SQLChatLog(url)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if not target.ensure_schema():
        raise click.ClickException(f"Cannot reach {redact_url_password(url)}.")
    return target


def _image_target(url: str | None, endpoint_url: str | None) -> ImageStore | None:
    """The object store to copy images into (None: images stay where they are)."""
    if not url:
        return None
    from .config import ConfigError, s3_url
    from .images.s3 import S3ImageStore

    try:
        url = s3_url(url)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    settings = current_app.config["SETTINGS"]
    return S3ImageStore(
        url,
        endpoint_url=endpoint_url or settings.image_store_endpoint_url,
        region=settings.image_store_region,
        access_key_id=settings.aws_access_key_id,
        secret_access_key=settings.aws_secret_access_key,
    )


@click.command("upgrade-history")
@with_appcontext
def upgrade_history() -> None:
    """Create or upgrade the PostgreSQL schema of HISTORY_URL (the app also does this at start)."""
    store = current_app.extensions["chatlog"]
    if store.backend != "postgresql":
        raise click.ClickException("HISTORY_URL is not set: the history is in DATA_DIR and has no schema.")
    store.migrate()
    click.echo("The history schema is up to date.")


def init_app(app: Flask) -> None:
    app.cli.add_command(import_chatlog)
    app.cli.add_command(export_chatlog)
    app.cli.add_command(backup)
    app.cli.add_command(restore)
    app.cli.add_command(migrate_history)
    app.cli.add_command(upgrade_history)
