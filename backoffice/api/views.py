"""GET /api/v1/listings, a listing's verification receipt (JSON or signed), the status list of signed receipts,
the public keys that sign them, and the OpenAPI description."""
from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, current_app, request, url_for

from backoffice.api.openapi import JOSE, document
from backoffice.auth.access import public
from backoffice.extensions import csrf, db
from backoffice.links import mailed_url
from backoffice.models import utcnow
from backoffice.services import listings, receipts
from backoffice.signing import SigningKeys

bp = Blueprint("api", __name__)
csrf.exempt(bp)
# /.well-known/ sits at the root of the site (RFC 8615), outside the API's prefix.
well_known = Blueprint("well_known", __name__)
# The receipt in either form from one URL: caches keep them apart by the Accept header.
FORMATS = {"json": "application/json", "jws": JOSE}


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


def _keys() -> SigningKeys:
    return current_app.extensions["signing"]


def _issuer() -> str:
    """PUBLIC_BASE_URL (the request's own host only outside production, as mailed links are built)."""
    return mailed_url("auth.root").rstrip("/")


def _signed(token: str, cache_seconds: int) -> Response:
    response = Response(token, mimetype=JOSE)
    response.headers["Cache-Control"] = f"public, max-age={cache_seconds}"
    return response


def _wanted_format() -> str | None:
    """"json" or "jws", from ?format= first, then the Accept header; None for a format we do not answer in."""
    if "format" in request.args:
        named = request.args["format"]
        return named if named in FORMATS else None
    best = request.accept_mimetypes.best_match([FORMATS["json"], FORMATS["jws"]], default=FORMATS["json"])
    return "jws" if best == JOSE else "json"


@bp.route("/listings/<int:provider_id>/verification")
@public
def verification_receipt(provider_id: int):
    wanted = _wanted_format()
    if wanted is None:
        return error(400, f"format {request.args['format']!r} is not one of {', '.join(FORMATS)}")
    now = utcnow()
    provider = listings.listed_provider(db.session, provider_id, now)
    if provider is None:
        response = error(404, f"No listed, currently verified provider has id {provider_id}.")
    elif wanted == "json":
        response = _json(listings.receipt(db.session, provider))
    else:
        claims = receipts.receipt_claims(db.session, provider, now, _issuer(),
                                         mailed_url("api.verification_receipt", provider_id=provider_id),
                                         mailed_url("api.receipt_status"))
        if claims is None:
            response = error(404, f"Provider {provider_id} is verified, but no decision is recorded as having "
                                  "granted it, so no signed receipt can name one.")
        else:
            response = _signed(_keys().sign(claims, receipts.RECEIPT_TYPE), cache_seconds=60)
    response.vary.add("Accept")
    return response


@bp.route("/receipts/status")
@public
def receipt_status():
    """The signed list, made again only when something was audited since, or after STATUS_LIST_REUSE: making
    it reads every decision still valid (benchmarks/NOTES.md), checking for a change reads one index entry."""
    now, issuer = utcnow(), _issuer()
    version = receipts.state_version(db.session)
    made = current_app.extensions.setdefault("receipt_status", {})
    kept = made.get(issuer)
    if kept is None or kept[0] != version or now - kept[1] >= receipts.STATUS_LIST_REUSE:
        token = _keys().sign(receipts.status_list_claims(db.session, now, issuer), receipts.STATUS_LIST_TYPE)
        kept = made[issuer] = (version, now, token)
    return _signed(kept[2], cache_seconds=300)


@bp.route("/openapi.json")
@public
def openapi():
    return _json(document(), cache_seconds=3600)


@well_known.route("/.well-known/jwks.json")
@public
def jwks():
    """The keys that sign receipts, current first, retired ones with the period they signed in."""
    return _json(_keys().jwks(), cache_seconds=300)
