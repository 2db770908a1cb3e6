"""CLI commands: `flask --app app import-chatlog FILE` and `export-chatlog [FILE]` (seed format),
`backup FILE.zip` and `restore FILE.zip` (everything, either engine), `migrate-history --to
postgresql://…` (TinyDB files and images → the shared stores) and `upgrade-history` (the
PostgreSQL schema, which the app also upgrades when it starts)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from .messages import N_


@click.command("import-chatlog")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@with_appcontext
def import_chatlog(file) -> None:
    """Import a chatlog.json in the seed's format; entries already present are skipped."""
    from .importing import import_chatlog as import_text

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


BATCH = 500


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
    from .config import ConfigError, _s3_url, redact_url_password
    from .history import ChatLog
    from .history.sql_store import SQLChatLog
    from .images import ImageStore

    settings = current_app.config["SETTINGS"]
    source_dir = from_dir or settings.data_dir
    if not (source_dir / "history").is_dir():
        raise click.ClickException(f"{source_dir} has no history folder to copy.")
    try:
        target = SQLChatLog(to_url)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if not target.ensure_schema():
        raise click.ClickException(f"Cannot reach {redact_url_password(to_url)}.")
    remote = None
    images_url = images_to or settings.image_store_url
    if images_url:
        from .images_s3 import S3ImageStore

        try:
            images_url = _s3_url(images_url)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
        remote = S3ImageStore(
            images_url,
            endpoint_url=images_endpoint_url or settings.image_store_endpoint_url,
            region=settings.image_store_region,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
        )

    source = ChatLog(source_dir)
    dates = source.dates()
    # Days whose file was lost to damage keep their used indexes only in the sequence: carry
    # them over too, so the database never hands out those permalinks again.
    target.import_entries([], source.lost_days())
    sizes = {d: source.paths.doc(d).stat().st_size for d in dates}
    added = updated = unchanged = 0
    conflicts: list[str] = []
    orphaned: list[str] = []
    # One day in memory at a time (a day file is read, copied in batches, then dropped), so
    # the size of the whole history does not matter; the bar counts the bytes of the day files.
    with click.progressbar(length=sum(sizes.values()) or 1, label="History", file=sys.stderr) as bar:
        for date in dates:
            rows, next_index = source.day_for_copy(date)
            for start in range(0, max(len(rows), 1), BATCH):
                result = target.import_entries(rows[start : start + BATCH], {date: next_index})
                added, updated = added + result.added, updated + result.updated
                unchanged += result.unchanged
                conflicts += result.conflicts
                orphaned += result.orphaned_images
            bar.update(sizes[date])
    click.echo(f"History: copied {added} entries, updated {updated}, {unchanged} were already there.")
    if quarantined := source.quarantined():
        click.echo(f"Not copied (damaged, moved aside): {', '.join(quarantined)}.")

    if remote is not None:
        local = ImageStore(source_dir)
        names = local.names()
        copied = 0
        with click.progressbar(names, label="Images ", show_pos=True, file=sys.stderr) as bar:
            for name in bar:
                if not remote.exists(name):
                    remote.put(name, local.read(name))
                    copied += 1
        removed = sum(1 for name in orphaned if remote.delete(name))
        click.echo(
            f"Images: copied {copied}, {len(names) - copied} were already there, "
            f"removed {removed} of entries deleted since the last run."
        )
    target.close()
    if conflicts:
        listed = ", ".join(conflicts[:10]) + (" …" if len(conflicts) > 10 else "")
        raise click.ClickException(
            f"{len(conflicts)} permalinks already hold other entries in the database "
            f"and were left alone: {listed}"
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
