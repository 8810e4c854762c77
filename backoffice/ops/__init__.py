"""Endpoints for the machines that run the deployment: liveness, readiness and Prometheus metrics."""
from __future__ import annotations

import json

from flask import Blueprint, Response, abort, current_app, request

from backoffice.auth.access import public
from backoffice.ops import health, metrics

bp = Blueprint("ops", __name__)


def _json(payload: dict, status: int = 200) -> Response:
    response = Response(json.dumps(payload), status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/healthz")
@public
def healthz():
    """The process is up and serving requests; nothing else is asked."""
    return _json({"status": health.OK})


@bp.route("/readyz")
@public
def readyz():
    """Whether this process can do its work: the database and the broker, each "ok" or "unavailable"."""
    payload, status = health.readiness(current_app)
    return _json(payload, status)


@bp.route("/metrics", endpoint="metrics")
@public
def prometheus_metrics():
    """Prometheus text, only to the networks or the bearer token the settings admit (metrics.admitted)."""
    if not metrics.admitted(current_app.config, request.remote_addr, request.headers.get("Authorization")):
        abort(403)
    body, content_type = metrics.render(request.headers.get("Accept"))
    response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response
