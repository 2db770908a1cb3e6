"""CLI commands: `flask --app app import-chatlog FILE` and `export-chatlog [FILE]` (seed format)."""

from __future__ import annotations

import json
import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


@click.command("import-chatlog")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@with_appcontext
def import_chatlog(file) -> None:
    """Import a chatlog.json in the seed's format; entries already present are skipped."""
    try:
        data = json.load(file)
    except json.JSONDecodeError as e:
        raise click.ClickException(
            f"{file.name} is not valid JSON (line {e.lineno}, column {e.colno})"
        ) from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{file.name} is not UTF-8 text") from None
    images = current_app.extensions["images"]
    try:
        added, skipped = current_app.extensions["chatlog"].import_seed(data, images.name_for_url)
    except ValueError as e:
        raise click.ClickException(f"{file.name}: {e}") from None
    click.echo(f"Imported {added} entries, skipped {skipped} already present.")


@click.command("export-chatlog")
@click.argument("file", required=False, type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def export_chatlog(file: str | None) -> None:
    """Write the history in the seed's chatlog.json format to FILE (default: standard output)."""
    text = json.dumps(current_app.extensions["chatlog"].export_seed(), ensure_ascii=False, indent=4) + "\n"
    if file is None:
        sys.stdout.write(text)
        return
    from pathlib import Path

    from .history import atomic_write_text

    atomic_write_text(Path(file).resolve(), text)
    click.echo(f"Exported the history to {file}.", err=True)


def init_app(app: Flask) -> None:
    app.cli.add_command(import_chatlog)
    app.cli.add_command(export_chatlog)
