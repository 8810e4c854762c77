"""CSRF: every state-changing route refuses a request without a token, and nothing changes.

With CSRF protection on, as in production: each role signs in through the pages with their tokens, then
sends every POST, PUT, PATCH and DELETE route it may use (the public ones too, and Flask-Admin's) without a
token. Each must answer 400 with the expired-form message, leave every table as it was, and leave the user
signed in. A control sends requests with a valid token to show they get through.
"""
from __future__ import annotations

import pytest

from backoffice.extensions import db
from backoffice.models import Role
from tests.conftest import PASSWORD, fresh_code
from tests.route_helpers import (
    ALL_ROLES,
    STATE_CHANGING,
    audit_event_count,
    build_world,
    changed_tables,
    csrf_token_in,
    routes,
    row_counts,
    url,
    view_roles,
)

CSRF_MESSAGE = "The form was missing its security token or it expired."
# One write per role that a valid token lets through; it must add to the audit trail.
CONTROLS = {
    Role.PROVIDER: ("portal.withdraw", {"reason": "We will apply again later.", "confirm": "y"}),
    Role.RESEARCHER: ("finding_work.act", {"reason": "Seen, looking into it."}),
    Role.RESEARCH_LEAD: ("admin.run_verification_expiry_sweep", {}),
    Role.AUDITOR: ("audit.export", {"format": "jsonl"}),
    Role.ADMIN: ("staff.decline", {"reason": "Not needed after all."}),
}


def sign_in_with_tokens(client, account) -> None:
    """Sign in as a browser does: each form posted with the token its page gave."""
    page = client.get("/login").get_data(as_text=True)
    response = client.post("/login", data={"csrf_token": csrf_token_in(page), "email": account.email,
                                           "password": PASSWORD})
    if response.headers.get("Location") == "/login/code":
        page = client.get("/login/code").get_data(as_text=True)
        response = client.post("/login/code", data={"csrf_token": csrf_token_in(page), "code": fresh_code(account)})
    assert response.status_code == 302 and not response.headers["Location"].startswith("/login"), \
        f"{account.email} could not sign in: {response.status_code} {response.headers.get('Location')}"


def home(account) -> str:
    return "/admin/" if account.is_staff else "/portal/"


def may_send(app, route, role: Role | None) -> bool:
    """Whether the role may send this request: public routes, routes admitting it, and the closed write
    endpoints of the Flask-Admin views it may open (their CSRF check comes before the access check)."""
    if route.public:
        return True
    if role is None:
        return False
    return role in route.roles or (not route.roles and role in view_roles(app, route.endpoint))


@pytest.fixture
def csrf_app(app, make_app):
    """An app with CSRF protection on, as in production; its context is the test's."""
    protected = make_app(WTF_CSRF_ENABLED=True, LOGIN_RATE_LIMIT="1000 per minute")
    with protected.app_context():
        yield protected
        db.session.rollback()


@pytest.mark.parametrize("role", [None, *ALL_ROLES], ids=lambda r: r.value if r else "anonymous")
def test_no_state_changing_request_gets_through_without_a_token(csrf_app, make_account, make_provider, role):
    app, session = csrf_app, db.session
    world = build_world(session, make_account, make_provider, app.config["UPLOAD_FOLDER"])
    client = app.test_client()
    account = world.account(role, make_account) if role else None
    if account:
        sign_in_with_tokens(client, account)
    targets = sorted((r for r in routes(app) if r.method in STATE_CHANGING and may_send(app, r, role)),
                     key=lambda r: r.endpoint == "auth.logout")
    assert targets[-1].endpoint == "auth.logout"
    # A form as it would be filled in, the provider member's right password included: only the token is missing.
    data = {"email": world.accounts[Role.PROVIDER].email, "password": PASSWORD, "reason": "no token",
            "format": "jsonl"}
    failures = []
    for route in targets:
        target = url(app, route, world)
        counts, events = row_counts(session), audit_event_count(session)
        response = client.open(target, method=route.method, data=data)
        if response.status_code != 400 or CSRF_MESSAGE not in response.get_data(as_text=True):
            failures.append(f"{route.method} {target} ({route.endpoint}): {response.status_code}, not the CSRF 400")
        changed = changed_tables(counts, row_counts(session))
        if changed or audit_event_count(session) != events:
            failures.append(f"{route.method} {target} ({route.endpoint}) changed rows without a token: {changed}")
    assert failures == [], f"{len(failures)} of {len(targets)} requests as {role or 'anonymous'}:\n" + \
        "\n".join(failures)
    assert len(targets) >= 8

    # The control: the same kind of request with the page's token gets through, so the 400s were the
    # missing token's doing.
    if account is None:
        for page in ("/portal/", "/admin/"):
            assert client.get(page).headers["Location"].startswith("/login?next="), "signed in without a token"
        token = csrf_token_in(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={"csrf_token": token, "email": "nobody@example.org",
                                               "password": "not the password"})
        assert response.status_code == 200 and "do not match an active account" in response.get_data(as_text=True)
        return
    assert client.get(home(account)).status_code == 200, "a request without a token signed the user out"
    token = csrf_token_in(client.get("/account/security").get_data(as_text=True))
    endpoint, data = CONTROLS[role]
    route = next(r for r in targets if r.endpoint == endpoint)
    events = audit_event_count(session)
    response = client.post(url(app, route, world), data={**data, "csrf_token": token})
    assert response.status_code in (200, 302), f"{endpoint} with a token: {response.status_code}"
    assert audit_event_count(session) > events, f"{endpoint} with a token wrote nothing"
    signed_out = client.post("/logout", data={"csrf_token": token})
    assert signed_out.status_code == 302 and signed_out.headers["Location"] == "/login"
    assert client.get(home(account)).headers["Location"].startswith("/login?next=")


def test_a_token_from_another_session_is_refused(csrf_app, make_account):
    account = make_account(Role.RESEARCHER)
    other, client = csrf_app.test_client(), csrf_app.test_client()
    foreign = csrf_token_in(other.get("/login").get_data(as_text=True))
    client.get("/login")
    response = client.post("/login", data={"csrf_token": foreign, "email": account.email, "password": PASSWORD})
    assert response.status_code == 400 and CSRF_MESSAGE in response.get_data(as_text=True)
    assert client.get("/admin/").headers["Location"].startswith("/login?next=")


def test_every_state_changing_route_is_sent_by_some_role(app):
    unsent = [str(r) for r in routes(app) if r.method in STATE_CHANGING
              and not any(may_send(app, r, role) for role in (None, *ALL_ROLES))]
    assert unsent == []
