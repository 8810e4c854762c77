"""GET /hsds/...: the verified listings as an Open Referral HSDS 3.0 API, with our profile (docs/HSDS.md)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request

from backoffice import links
from backoffice.api import hsds_openapi, hsds_profile
from backoffice.api.views import _json, error
from backoffice.auth.access import public
from backoffice.extensions import csrf, db
from backoffice.models import utcnow
from backoffice.services import hsds

bp = Blueprint("hsds", __name__)
csrf.exempt(bp)


def _url(endpoint: str, **values) -> str:
    """Absolute, on PUBLIC_BASE_URL where it is set: the profile's address must not depend on the Host sent."""
    return links.mailed_url(endpoint, **values)


def _receipt_url(provider_id: int) -> str:
    return _url("api.verification_receipt", provider_id=provider_id)


def _args() -> dict[str, str]:
    return request.args.to_dict(flat=True)


def _refuse_parameters() -> Response | None:
    if request.args:
        return error(400, f"unknown parameter(s) {', '.join(sorted(request.args))}; this address takes none")
    return None


def _list(endpoint: str, read: Callable[[hsds.Query], tuple[hsds.Found, list[dict[str, Any]]]]) -> Response:
    try:
        query = hsds.parse_query(endpoint, _args())
    except hsds.BadRequest as exc:
        return error(400, str(exc))
    found, contents = read(query)
    return _json(hsds.page(found, query, contents))


def _totals() -> hsds.Totals:
    """This app's kept list totals (one set per app: each app is one database)."""
    kept = current_app.extensions.get("hsds_totals")
    return kept if kept is not None else current_app.extensions.setdefault("hsds_totals", hsds.Totals())


def _context(providers, with_metadata: bool) -> hsds.Context:
    return hsds.context(db.session, providers, utcnow(), _receipt_url, with_metadata)


@bp.route("/")
@public
def index():
    refused = _refuse_parameters()
    if refused:
        return refused
    return _json({
        "version": hsds.HSDS_VERSION,
        "profile": _url("hsds.profile"),
        "openapi_url": _url("hsds.openapi"),
        "links": {name: _url(f"hsds.{name}") for name in
                  ("services", "organizations", "service_at_locations", "taxonomies", "taxonomy_terms")},
    }, cache_seconds=3600)


@bp.route("/organizations")
@public
def organizations():
    def read(query: hsds.Query):
        found = hsds.organizations(db.session, query, utcnow(), _totals())
        ctx = _context(found.rows, with_metadata=query.full)
        return found, [hsds.organization(p, ctx, query.full_service) if query.full
                       else hsds.organization_summary(p, ctx) for p in found.rows]
    return _list("organizations", read)


@bp.route("/organizations/<string:organization_id>")
@public
def organization(organization_id: str):
    try:
        query = hsds.parse_single("organizations", _args())
    except hsds.BadRequest as exc:
        return error(400, str(exc))
    provider = hsds.find_organization(db.session, organization_id, utcnow())
    if provider is None:
        return error(404, "No listed, currently verified organization has this id.")
    return _json(hsds.organization(provider, _context([provider], True), query.full_service))


@bp.route("/services")
@public
def services():
    def read(query: hsds.Query):
        found = hsds.services(db.session, query, utcnow(), _totals())
        if query.minimal:
            return found, [hsds.minimal_service(p, level) for p, level in found.rows]
        ctx = _context(list({p.id: p for p, _ in found.rows}.values()), with_metadata=query.full)
        return found, [hsds.service(p, level, ctx) if query.full else hsds.service_summary(p, level, ctx)
                       for p, level in found.rows]
    return _list("services", read)


@bp.route("/services/<string:service_id>")
@public
def service(service_id: str):
    refused = _refuse_parameters()
    if refused:
        return refused
    found = hsds.find_service(db.session, service_id, utcnow())
    if found is None:
        return error(404, "No service of a listed, currently verified organization has this id.")
    provider, level = found
    return _json(hsds.service(provider, level, _context([provider], True)))


@bp.route("/service_at_locations")
@public
def service_at_locations():
    def read(query: hsds.Query):
        found = hsds.service_at_locations(db.session, query, utcnow(), _totals())
        ctx = _context(list({p.id: p for p, _, _ in found.rows}.values()), with_metadata=query.full)
        return found, [hsds.service_at_location(p, level, loc, ctx, query.full) for p, level, loc in found.rows]
    return _list("service_at_locations", read)


@bp.route("/service_at_locations/<string:service_at_location_id>")
@public
def service_at_location(service_at_location_id: str):
    refused = _refuse_parameters()
    if refused:
        return refused
    found = hsds.find_service_at_location(db.session, service_at_location_id, utcnow())
    if found is None:
        return error(404, "No service at a location of a listed, currently verified organization has this id.")
    provider, level, place = found
    return _json(hsds.service_at_location(provider, level, place, _context([provider], True), full=True))


@bp.route("/taxonomies")
@public
def taxonomies():
    def read(query: hsds.Query):
        found = hsds.taxonomies(query)
        return found, [hsds.taxonomy(t, _url("hsds.taxonomy", taxonomy_id=hsds.ids.taxonomy(t)))
                       for t in found.rows]
    return _list("taxonomies", read)


@bp.route("/taxonomies/<string:taxonomy_id>")
@public
def taxonomy(taxonomy_id: str):
    refused = _refuse_parameters()
    if refused:
        return refused
    item = hsds.find_taxonomy(taxonomy_id)
    if item is None:
        return error(404, "No taxonomy of this API has this id.")
    return _json(hsds.taxonomy(item, _url("hsds.taxonomy", taxonomy_id=taxonomy_id)), cache_seconds=3600)


@bp.route("/taxonomy_terms")
@public
def taxonomy_terms():
    def read(query: hsds.Query):
        found = hsds.taxonomy_terms(query)
        return found, [hsds.taxonomy_term(t) for t in found.rows]
    return _list("taxonomy_terms", read)


@bp.route("/taxonomy_terms/<string:term_id>")
@public
def taxonomy_term(term_id: str):
    refused = _refuse_parameters()
    if refused:
        return refused
    item = hsds.find_term(term_id)
    if item is None:
        return error(404, "No term of this API's taxonomies has this id.")
    return _json(hsds.taxonomy_term(item), cache_seconds=3600)


@bp.route("/openapi.json")
@public
def openapi():
    refused = _refuse_parameters()
    if refused:
        return refused
    # The contact page is the published listing criteria: what the research team checks, and how to reach it.
    return _json(hsds_openapi.document(_url("hsds.index"), _url("hsds.profile"), _url("public.criteria_page")),
                 cache_seconds=3600)


@bp.route("/profile/")
@public
def profile():
    refused = _refuse_parameters()
    if refused:
        return refused
    return _json(hsds_profile.document(_url("hsds.profile"), _url("hsds.profile") + "schema/", _url("hsds.index")),
                 cache_seconds=3600)


@bp.route("/profile/schema/<string:schema_name>")
@public
def profile_schema(schema_name: str):
    refused = _refuse_parameters()
    if refused:
        return refused
    found = hsds_profile.schema(schema_name, _url("hsds.profile") + "schema/")
    if found is None:
        return error(404, f"The profile has no schema file {schema_name!r}; /hsds/profile/ lists them.")
    return _json(found, cache_seconds=3600)

