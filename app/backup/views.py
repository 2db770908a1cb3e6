"""The backup routes: `GET /backup.zip` (streamed) and `POST /chatlog/restore` (the History
page's upload form, or `curl -F file=@backup.zip`). Both sit behind the login when one is set,
and the restore, a write, is refused cross-site like every other (app.auth)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, make_response, render_template, request

from ..i18n import N_
from ..web import error_response, htmx
from . import BackupRefused, backup_chunks, restore

bp = Blueprint("backup", __name__)
RESTORE_MAX_BYTES = 16 * 1024**3  # an upload is spooled to a temporary file, never held in memory


@bp.get("/backup.zip")
def backup_zip() -> Response:
    """Everything in one ZIP, streamed as it is written (see app.backup.archive)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    name = f"backup-{app.extensions['chatlog'].today()}.zip"
    # The body needs the app, not the request: a client that hangs up drops a plain generator.
    response = Response(backup_chunks(app), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@bp.post("/chatlog/restore")
def restore_upload():
    """Restore an uploaded backup ZIP; a damaged or foreign one is refused and changes nothing."""
    request.max_content_length = RESTORE_MAX_BYTES
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return error_response(
            400, title=N_("Restore failed"), message=N_("Choose a backup ZIP file to restore.")
        )
    try:
        report = restore(upload.stream, current_app.extensions["chatlog"], current_app.extensions["images"])
    except BackupRefused as e:
        return error_response(400, title=N_("Restore failed"), message=e.message)
    if htmx:
        body = render_template("partials/_restore_result.html", report=report)
        return make_response(body, 200, {"HX-Trigger": "history-changed"})
    return jsonify(
        restored=report.added,
        already_present=report.present,
        conflicts=report.conflicts,
        images_restored=report.images_added,
        images_present=report.images_present,
    )
