"""Deny by default, route by route: every rule and method of the app, as anonymous and as every role.

The routes come from the app's url_map, so a route added later is in the matrix without being listed here,
and one that names no roles fails it. URLs are filled with real rows so each admitted request reaches its
view's code.
"""
from __future__ import annotations

import pytest
from flask_admin import BaseView, expose

from backoffice.admin.base import SecuredView
from backoffice.models import Role
from tests.route_helpers import (
    ALL_ROLES,
    STATE_CHANGING,
    admin_views,
    build_world,
    changed_tables,
    routes,
    row_counts,
    signed_in_client,
    undeclared,
    url,
)

DENY_REDIRECT = "/login?next="
# Admitted GET requests answer 200, except these, each for a reason that holds for the world's rows.
NOT_200 = {
    "auth.root": 302,  # sends everyone to their home page
    "auth.second_factor": 302,  # no sign-in is half done: back to the sign-in page
    "auth.enrol": 302,
    "account.confirm": 302,  # a plain word is no valid token
    "account.reset": 302,
    "portal.edit_request": 302,  # only a draft is edited; the world's first request is in review
    # HSDS ids are UUIDs computed from the rows; a plain word names none (tests/test_hsds.py opens real ones).
    "hsds.organization": 404, "hsds.service": 404, "hsds.service_at_location": 404,
}
NO_AJAX_LOOKUPS = 404  # no model view declares ajax lookups, so every lookup name is unknown


def expected_get_status(endpoint: str) -> int:
    if endpoint.endswith(".ajax_lookup"):
        return NO_AJAX_LOOKUPS
    return NOT_200.get(endpoint, 200)


@pytest.fixture
def world(app, session, make_account, make_provider):
    return build_world(session, make_account, make_provider, app.config["UPLOAD_FOLDER"])


def in_request_order(all_routes):
    """Reads first, then writes, signing out last: a write may change what a later read finds."""
    return sorted(all_routes, key=lambda r: (r.method != "GET", r.endpoint == "auth.logout"))


def problem(route, target: str, response, expected: str) -> str:
    """One line saying which request got what instead of what."""
    location = response.headers.get("Location", "")
    got = f"{response.status_code}" + (f" -> {location}" if location else "")
    return f"{route.method} {target} ({route.rule.rule}, {route.endpoint}): expected {expected}, got {got}"


@pytest.mark.parametrize("role", [None, *ALL_ROLES], ids=lambda r: r.value if r else "anonymous")
def test_every_route_admits_exactly_its_roles(app, session, make_account, world, role):
    client = app.test_client() if role is None else signed_in_client(app, world.account(role, make_account))
    mismatches, checked, all_routes = [], 0, routes(app)
    for route in in_request_order(all_routes):
        if route.roles is None:
            mismatches.append(f"{route} ({route.endpoint}) declares no roles")
            continue
        target = url(app, route, world)
        refused = not route.public and (role is None or role not in route.roles)
        counts = row_counts(session) if refused else None
        response = client.open(target, method=route.method, data={})
        status, location = response.status_code, response.headers.get("Location", "")
        checked += 1
        if role is None and not route.public:
            if status != 302 or not location.startswith(DENY_REDIRECT):
                mismatches.append(problem(route, target, response, f"302 -> {DENY_REDIRECT}..."))
        elif refused:
            if status != 403:
                mismatches.append(problem(route, target, response, "403"))
        elif status == 403 or status >= 500 or location.startswith(DENY_REDIRECT):
            mismatches.append(problem(route, target, response, "admitted (not 403, not 5xx, no sign-in redirect)"))
        elif route.method == "GET" and status != expected_get_status(route.endpoint):
            mismatches.append(problem(route, target, response, str(expected_get_status(route.endpoint))))
        if refused:
            changed = changed_tables(counts, row_counts(session))
            if changed:
                mismatches.append(f"{route.method} {target} was refused but changed rows: {changed}")
    assert mismatches == [], f"{len(mismatches)} of {checked} requests as {role or 'anonymous'}:\n" + \
        "\n".join(mismatches)
    assert checked == len(all_routes) > 100


def test_every_route_declares_its_roles(app):
    assert undeclared(app) == []


# The matrix checks each route against what it declares; these pin the declarations that carry the policy,
# so a route made public, a portal page opened to staff or an auditor given a write fails here.
PUBLIC_ENDPOINTS = {
    "auth.root", "auth.login", "auth.second_factor", "auth.enrol", "auth.logout", "account.register",
    "account.confirm", "account.resend_confirmation", "account.reset_request", "account.reset",
    "api.listings_feed", "api.verification_receipt", "api.openapi", "static", "admin.static",
    # Signed receipts: the status list of those that no longer hold, and the public keys that sign them.
    "api.receipt_status", "well_known.jwks",
    "public.criteria_page", "public.favicon",
    # The same verified listings as Open Referral HSDS 3.0, its OpenAPI document and our profile.
    "hsds.index", "hsds.organizations", "hsds.organization", "hsds.services", "hsds.service",
    "hsds.service_at_locations", "hsds.service_at_location", "hsds.taxonomies", "hsds.taxonomy",
    "hsds.taxonomy_terms", "hsds.taxonomy_term", "hsds.openapi", "hsds.profile", "hsds.profile_schema",
    # For the machines that run the deployment: anonymous probes that say only "ok" or "unavailable", and the
    # metrics, which the view itself serves only to the allowed networks or token (tests/test_ops_endpoints.py).
    "ops.healthz", "ops.readyz", "ops.metrics",
}
# An auditor's writes: the record of their own export and of a verification of the chain they run, and their
# own password and recovery codes.
# An auditor's own export and verification run, their security settings and the time zone they read dates in.
AUDITOR_WRITES = {"audit.export", "audit.verify", "auth.security", "time_zone.save"}


def test_only_sign_in_pages_the_feed_the_criteria_the_probes_and_static_files_are_public(app):
    assert {r.endpoint for r in routes(app) if r.public} == PUBLIC_ENDPOINTS


def test_providers_and_staff_keep_to_their_own_side(app):
    staff_views = set(admin_views(app))
    for route in routes(app):
        if route.endpoint.startswith("portal.") and route.endpoint != "portal.document":
            assert route.roles == {Role.PROVIDER}, route
        if route.endpoint.rpartition(".")[0] in staff_views and not route.public:
            assert Role.PROVIDER not in route.roles, route


def test_an_auditor_writes_only_their_own_export_and_settings(app):
    writes = {r.endpoint for r in routes(app) if r.method in STATE_CHANGING and not r.public
              and Role.AUDITOR in r.roles}
    assert writes == AUDITOR_WRITES


class _UnsecuredView(BaseView):
    @expose("/")
    def index(self):
        return "open"


class _NobodyView(SecuredView):
    @expose("/")
    def index(self):
        return "open"


def test_a_route_added_without_roles_is_reported_as_undeclared(make_app):
    app = make_app()
    app.add_url_rule("/forgotten", "forgotten", lambda: "secret", methods=["GET", "POST"])
    admin = app.extensions["admin"][0]
    admin.add_view(_UnsecuredView(name="Unsecured", endpoint="unsecured", url="/admin/unsecured"))
    admin.add_view(_NobodyView(name="Nobody", endpoint="nobody", url="/admin/nobody"))
    assert undeclared(app) == ["/admin/nobody/", "/admin/unsecured/", "/forgotten"]
    not_in_matrix = [str(r) for r in routes(app) if r.roles is None]
    assert not_in_matrix == ["GET /admin/nobody/", "GET /admin/unsecured/", "GET /forgotten", "POST /forgotten"]


def test_the_matrix_sees_narrower_and_closed_admin_actions(app):
    by_endpoint = {r.endpoint: r.roles for r in routes(app)}
    assert by_endpoint["catalogue.publish"] == {Role.RESEARCH_LEAD}
    assert by_endpoint["finding_work.act"] == {Role.RESEARCHER, Role.RESEARCH_LEAD}
    assert by_endpoint["providers.edit_view"] == frozenset()
    assert by_endpoint["providers.index_view"] == {Role.RESEARCHER, Role.RESEARCH_LEAD, Role.AUDITOR}
    assert by_endpoint["api.listings_feed"] == "public"
