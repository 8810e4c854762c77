"""GET /api/v1/listings, a listing's verification receipt, and the OpenAPI description of both."""
from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, request, url_for

from backoffice.api.openapi import document
from backoffice.auth.access import public
from backoffice.extensions import csrf, db
from backoffice.models import utcnow
from backoffice.services import listings

bp = Blueprint("api", __name__)
csrf.exempt(bp)


def _encode(payload: dict) -> bytes:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # Provider text (and a query parameter echoed in an error) stays data even if a client drops this JSON
    # into HTML: no raw <, > or & in the bytes.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


def _json(payload: dict, status: int = 200, cache_seconds: int = 60) -> Response:
    """A JSON response with a strong ETag over its bytes; a matching If-None-Match gets 304."""
    body = _encode(payload)
    etag = hashlib.sha256(body).hexdigest()[:32]
    if status == 200 and etag in request.if_none_match:
        response = Response(status=304)
    else:
        response = Response(body, status=status, mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"public, max-age={cache_seconds}"
    return response


def error(status: int, message: str) -> Response:
    return Response(_encode({"error": {"status": status, "message": message}}), status=status,
                    mimetype="application/json")


@bp.route("/listings")
@public
def listings_feed():
    try:
        query = listings.parse_query(request.args.to_dict(flat=True))
    except listings.BadRequest as exc:
        return error(400, str(exc))
    now = utcnow()
    providers, cursor = listings.page(db.session, query, now)
    versions = listings.catalogue_versions(db.session, providers)
    copies = listings.advertisements(db.session, providers, now)
    confirmed = listings.confirmations(db.session, providers)
    payload = {"listings": [listings.listing(p, versions, copies, confirmed) for p in providers],
               "next_cursor": cursor}
    if cursor:
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        payload["next"] = url_for(".listings_feed", cursor=cursor, **args)
    return _json(payload)


@bp.route("/listings/<int:provider_id>/verification")
@public
def verification_receipt(provider_id: int):
    provider = listings.listed_provider(db.session, provider_id, utcnow())
    if provider is None:
        return error(404, f"No listed, currently verified provider has id {provider_id}.")
    return _json(listings.receipt(db.session, provider))


@bp.route("/openapi.json")
@public
def openapi():
    return _json(document(), cache_seconds=3600)
