"""The history in and out: the exports (`GET /chatlog.json` in the seed's format,
`/chatlog.full.json`, `/chatlog.md`), the import (`POST /chatlog/import`), and the backup
(`GET /backup.zip`, streamed) with its restore (`POST /chatlog/restore`).

Every body is streamed, so no export sits in the server's memory at once. The backup and the
restore sit behind the login when one is set, and the restore and the import, writes, are
refused cross-site like every other (app.auth).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, get_template_attribute, render_template, request
from flask.typing import ResponseReturnValue

from ..backup import BackupRefused, backup_chunks, restore
from ..i18n import N_
from ..messages import message_of
from ..services import exports
from ..services.importing import import_chatlog as import_chatlog_text
from .plumbing import error_response, history, htmx_or_json, images, settings

bp = Blueprint("transfer", __name__)
IMPORT_MAX_BYTES = 256 * 1024 * 1024  # a chatlog.json of many years
RESTORE_MAX_BYTES = 16 * 1024**3  # an upload is spooled to a temporary file, never held in memory


@bp.get("/chatlog.json")
def chatlog_json() -> Response:
    """The whole history in the seed's chatlog.json format."""
    return seed_json_response()


@bp.get("/chatlog.full.json")
def chatlog_full_json() -> Response:
    """Every live entry with all its fields, oldest first."""
    response = Response(exports.full_json(history()), mimetype="application/json")
    response.headers["Content-Disposition"] = "attachment; filename=chatlog.full.json"
    return response


@bp.get("/chatlog.md")
def chatlog_markdown() -> Response:
    """The whole history as one Markdown document, oldest first, a conversation at a time: each
    follow-up under its conversation's first turn."""
    turn = get_template_attribute("chatlog.md", "turn")
    day = get_template_attribute("chatlog.md", "day")
    # The macros need no request: the body can be dropped unread (see app.services.exports).
    return Response(exports.markdown(history(), turn, day), mimetype="text/markdown")


@bp.post("/chatlog/import")
def import_chatlog() -> ResponseReturnValue:
    """Import an uploaded chatlog.json (the seed's format); entries already present are skipped."""
    request.max_content_length = IMPORT_MAX_BYTES
    upload = request.files.get("file")
    try:
        if upload is None or not upload.filename:
            raise ValueError(N_("Choose a chatlog.json file to import."))
        text = upload.read().decode("utf-8")
        added, skipped = import_chatlog_text(text, history(), images(), settings())
    except UnicodeDecodeError:
        return error_response(400, title=N_("Import failed"), message=N_("The file is not UTF-8 text."))
    except ValueError as e:  # ImportFileError included: each names what is wrong
        return error_response(400, title=N_("Import failed"), message=message_of(e))
    message = N_(
        "Imported %(added)s entries, skipped %(skipped)s already present.", added=added, skipped=skipped
    )
    return htmx_or_json(
        lambda: render_template("partials/_notice.html", message=message),
        lambda: {"imported": added, "skipped": skipped},
        trigger="history-changed",
    )


@bp.get("/backup.zip")
def backup_zip() -> Response:
    """Everything in one ZIP, streamed as it is written (see app.backup.archive)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    name = f"backup-{history().today()}.zip"
    # The body needs the app, not the request: a client that hangs up drops a plain generator.
    response = Response(backup_chunks(app), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.post("/chatlog/restore")
def restore_upload() -> ResponseReturnValue:
    """Restore an uploaded backup ZIP; a damaged or foreign one is refused and changes nothing."""
    request.max_content_length = RESTORE_MAX_BYTES
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return error_response(
            400, title=N_("Restore failed"), message=N_("Choose a backup ZIP file to restore.")
        )
    try:
        report = restore(upload.stream, history(), images())
    except BackupRefused as e:
        return error_response(400, title=N_("Restore failed"), message=e.message)
    return htmx_or_json(
        lambda: render_template("partials/_restore_result.html", report=report),
        lambda: {
            "restored": report.added,
            "already_present": report.present,
            "conflicts": report.conflicts,
            "images_restored": report.images_added,
            "images_present": report.images_present,
        },
        trigger="history-changed",
    )


def seed_json_response() -> Response:
    """The whole history in the seed's format (`/chatlog.json`, and `/chatlog` for JSON clients),
    streamed a batch of entries at a time."""
    return Response(exports.seed_json(history()), mimetype="application/json")
