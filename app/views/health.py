"""Health checks for load balancers and `make run`: `GET /healthz` (alive) and `GET /readyz`
(ready for requests). Both answer without a login."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from ..services.readiness import readiness
from .plumbing import generator, history, images

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Alive: the process serves requests."""
    return jsonify(status="ok", demo=generator().provider.demo)


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready: the history and image stores take writes and an upstream (or the demo) is set up.

    A load balancer stops sending requests to a server whose database or object store it
    cannot reach (503), and sends them again when they are back.
    """
    report = readiness(history(), images(), generator().provider)
    return jsonify(report), 200 if report["ready"] else 503
