"""Staff accounts under separation of duties, through the /admin/staff pages: one admin asks for a role, a
second approves it; nobody approves their own request or a role for themselves; every step is audited."""
import threading

import pytest
from sqlalchemy import func, select

from backoffice.models import (
    Account,
    AccountRole,
    AuditEvent,
    Notification,
    Role,
    RoleGrantRequest,
    RoleGrantState,
)
from backoffice.services import concurrency, staff
from backoffice.services.errors import DomainError
from tests.concurrency import race
from tests.conftest import PASSWORD
from tests.portal_helpers import latest_mail, mailed_path
from tests.security_helpers import audit_events, new_client, page_text, signed_in

NEW_PASSWORD = "a completely new passphrase"
NO_ROLE_YET = "Your account has no role yet."
SECOND_ADMIN = "A second admin must approve this: you asked for it."
NOT_FOR_YOURSELF = "You cannot approve a role for yourself: another admin must."
LAST_ADMIN = "This is the last active admin: give someone else the admin role first."


def _add_staff(browser, *, email="new.person@example.org", roles=("researcher", "auditor"),
               reason="Joins the research team", name="New Person"):
    return browser.post("/admin/staff/new", data={"name": name, "email": email, "roles": list(roles),
                                                  "reason": reason})


def _person(session, email="new.person@example.org") -> Account:
    session.expire_all()
    return session.scalar(select(Account).where(Account.email == email))


def _grants(session, account: Account) -> dict[Role, RoleGrantRequest]:
    session.expire_all()
    grants = session.scalars(select(RoleGrantRequest).where(RoleGrantRequest.account_id == account.id))
    return {grant.role: grant for grant in grants}


def _approve_url(grant) -> str:
    return f"/admin/staff/grants/{grant.id}/approve"


def _counts(session) -> dict[str, int]:
    session.expire_all()
    return {model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (Account, AccountRole, RoleGrantRequest, AuditEvent, Notification)}


def _staff_member(session, admin, roles=("researcher",), email="new.person@example.org") -> Account:
    """A person added by `admin` with roles waiting for a second admin (the page flow is tested apart)."""
    person = staff.create_staff(session, admin, email=email, name="New Person", roles=list(roles),
                                reason="Joins the research team")
    session.commit()
    return person


def _sign_in_password(client, email, password=PASSWORD):
    return client.post("/login", data={"email": email, "password": password})


# -- adding a staff member ----------------------------------------------------------------------------------


def test_adding_a_staff_member_asks_for_roles_and_mails_a_password_link(app, session, make_account):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    browser = signed_in(app, first)

    added = _add_staff(browser)
    person = _person(session)
    assert added.status_code == 302 and added.headers["Location"] == f"/admin/staff/{person.id}"
    assert person.roles == [] and person.is_active and not person.has_second_factor
    grants = _grants(session, person)
    assert set(grants) == {Role.RESEARCHER, Role.AUDITOR}
    assert all(g.state == RoleGrantState.PENDING and g.requested_by_id == first.id for g in grants.values())
    [created] = audit_events(session, "account.created", person.id)
    assert (created.actor, created.reason) == (f"user:{first.id}", "Joins the research team")
    requested = audit_events(session, "role_grant.requested", person.id)
    assert sorted(e.after["role"] for e in requested) == ["auditor", "researcher"]
    assert {(e.actor, e.reason) for e in requested} == {(f"user:{first.id}", "Joins the research team")}

    mail = latest_mail(session, person.email, "staff_welcome")
    assert mail.recipient_account_id == person.id and "choose your password" in mail.body
    link = mailed_path(session, person.email, "staff_welcome")
    newcomer = new_client(app)
    assert "Choose a new password" in page_text(newcomer.get(link))
    chosen = newcomer.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/login"

    # No role is active until a second admin approves one.
    refused = _sign_in_password(newcomer, person.email, NEW_PASSWORD)
    assert refused.status_code == 200 and NO_ROLE_YET in page_text(refused)
    assert newcomer.get("/admin/").status_code == 302
    approver = signed_in(app, second)
    assert approver.post(_approve_url(grants[Role.RESEARCHER]),
                         data={"row_version": grants[Role.RESEARCHER].row_version}).status_code == 302
    assert _sign_in_password(newcomer, person.email, NEW_PASSWORD).headers["Location"] == "/login/enrol"


def test_the_requesting_admin_cannot_approve_and_a_second_admin_can(app, session, make_account):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    person = _staff_member(session, first)
    grant = _grants(session, person)[Role.RESEARCHER]
    requester = signed_in(app, first)

    for url in ("/admin/staff/", f"/admin/staff/{person.id}"):
        page = page_text(requester.get(url))
        assert grant.account.email in page and _approve_url(grant) not in page, url
    assert "another admin approves" in page_text(requester.get("/admin/staff/"))
    forced = requester.post(_approve_url(grant), data={"row_version": grant.row_version})
    assert forced.status_code == 400 and SECOND_ADMIN in page_text(forced)
    assert _grants(session, person)[Role.RESEARCHER].state == RoleGrantState.PENDING
    assert _person(session).roles == []
    assert audit_events(session, "role_grant.approved") == []

    approver = signed_in(app, second)
    assert _approve_url(grant) in page_text(approver.get("/admin/staff/"))
    approved = approver.post(_approve_url(grant), data={"row_version": grant.row_version})
    assert approved.status_code == 302
    shown = page_text(approver.get(approved.headers["Location"]))
    assert f"Approved: {person.email} now has the researcher role." in shown
    grant = _grants(session, person)[Role.RESEARCHER]
    assert (grant.state, grant.decided_by_id) == (RoleGrantState.APPROVED, second.id)
    [role] = _person(session).roles
    assert (role.role, role.granted_by_id) == (Role.RESEARCHER, second.id)
    [event] = audit_events(session, "role_grant.approved", person.id)
    assert event.actor == f"user:{second.id}"
    assert event.after == {"grant_id": grant.id, "role": "researcher", "requested_by": first.id}


def test_an_admin_cannot_approve_a_role_for_themselves(app, session, make_account):
    me, second, third = make_account(Role.ADMIN), make_account(Role.ADMIN), make_account(Role.ADMIN)
    mine = signed_in(app, me)
    for role in ("auditor", "research_lead"):
        asked = mine.post(f"/admin/staff/{me.id}/request-role", data={"role": role, "reason": "Covering audits"})
        assert asked.status_code == 302, role
    staff.request_role(session, second, me, Role.RESEARCHER, "Helps with the backlog")
    session.commit()
    grants = _grants(session, me)

    own_page = page_text(mine.get(f"/admin/staff/{me.id}"))
    for role, message in ((Role.AUDITOR, SECOND_ADMIN), (Role.RESEARCH_LEAD, SECOND_ADMIN),
                          (Role.RESEARCHER, NOT_FOR_YOURSELF)):
        assert _approve_url(grants[role]) not in own_page
        forced = mine.post(_approve_url(grants[role]), data={"row_version": grants[role].row_version})
        assert forced.status_code == 400 and message in page_text(forced), role
    session.refresh(me)
    assert me.role_set == {Role.ADMIN}

    # The admin who asked for someone cannot approve it either; a third admin can.
    other = signed_in(app, second)
    assert other.post(_approve_url(grants[Role.RESEARCHER]), data={}).status_code == 400
    assert other.post(_approve_url(grants[Role.AUDITOR]), data={}).status_code == 302
    assert signed_in(app, third).post(_approve_url(grants[Role.RESEARCHER]), data={}).status_code == 302
    session.refresh(me)
    assert me.role_set == {Role.ADMIN, Role.AUDITOR, Role.RESEARCHER}
    assert _grants(session, me)[Role.RESEARCH_LEAD].state == RoleGrantState.PENDING
    approvals = {e.after["role"]: e.actor for e in audit_events(session, "role_grant.approved", me.id)}
    assert approvals == {"auditor": f"user:{second.id}", "researcher": f"user:{third.id}"}


def test_a_request_can_be_declined_by_another_admin_or_withdrawn_by_its_author(app, session, make_account):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    person = _staff_member(session, first, roles=("researcher", "auditor"))
    grants = _grants(session, person)
    author, other = signed_in(app, first), signed_in(app, second)
    assert "Withdraw" in page_text(author.get(f"/admin/staff/{person.id}"))
    assert "Decline" in page_text(other.get(f"/admin/staff/{person.id}"))

    decline_url = f"/admin/staff/grants/{grants[Role.RESEARCHER].id}/decline"
    no_reason = other.post(decline_url, data={"reason": " "})
    assert no_reason.status_code == 400 and "Give a reason" in page_text(no_reason)
    assert _grants(session, person)[Role.RESEARCHER].state == RoleGrantState.PENDING

    assert other.post(decline_url, data={"reason": "Not in the research team"}).status_code == 302
    assert author.post(f"/admin/staff/grants/{grants[Role.AUDITOR].id}/decline",
                       data={"reason": "Asked by mistake"}).status_code == 302
    grants = _grants(session, person)
    researcher, auditor = grants[Role.RESEARCHER], grants[Role.AUDITOR]
    assert (researcher.state, researcher.decided_by_id) == (RoleGrantState.DECLINED, second.id)
    assert (auditor.state, auditor.decided_by_id) == (RoleGrantState.WITHDRAWN, first.id)
    [declined] = audit_events(session, "role_grant.declined", person.id)
    [withdrawn] = audit_events(session, "role_grant.withdrawn", person.id)
    assert (declined.actor, declined.reason) == (f"user:{second.id}", "Not in the research team")
    assert (withdrawn.actor, withdrawn.reason) == (f"user:{first.id}", "Asked by mistake")

    late = other.post(_approve_url(grants[Role.AUDITOR]), data={"row_version": grants[Role.AUDITOR].row_version})
    assert late.status_code in (400, 409) and "This request is already withdrawn." in page_text(late)
    assert _person(session).roles == []


# -- taking access away -----------------------------------------------------------------------------------


def test_revoking_a_role_ends_the_persons_sessions(app, session, make_account):
    admin, member = make_account(Role.ADMIN), make_account(Role.RESEARCHER)
    member_browser = signed_in(app, member)
    admin_browser = signed_in(app, admin)

    missing = admin_browser.post(f"/admin/staff/{member.id}/revoke-role", data={"role": "auditor", "reason": "Left"})
    assert missing.status_code == 400 and f"{member.email} does not have the auditor role." in page_text(missing)
    assert member_browser.get("/admin/").status_code == 200

    revoked = admin_browser.post(f"/admin/staff/{member.id}/revoke-role",
                                 data={"role": "researcher", "reason": "Moved to another team"})
    assert revoked.status_code == 302
    session.refresh(member)
    assert member.roles == []
    assert member_browser.get("/admin/").status_code == 302
    refused = _sign_in_password(new_client(app), member.email)
    assert NO_ROLE_YET in page_text(refused)
    [event] = audit_events(session, "account.role_revoked", member.id)
    assert (event.actor, event.reason, event.before) == (f"user:{admin.id}", "Moved to another team",
                                                         {"role": "researcher"})


def test_the_last_active_admin_keeps_the_admin_role_and_stays_active(app, session, make_account):
    admin, other_admin = make_account(Role.ADMIN), make_account(Role.ADMIN)
    browser = signed_in(app, admin)
    assert browser.post(f"/admin/staff/{other_admin.id}/deactivate",
                        data={"reason": "On leave"}).status_code == 302

    own_revoke = browser.post(f"/admin/staff/{admin.id}/revoke-role", data={"role": "admin", "reason": "Stepping down"})
    assert own_revoke.status_code == 400 and LAST_ADMIN in page_text(own_revoke)
    own_deactivate = browser.post(f"/admin/staff/{admin.id}/deactivate", data={"reason": "Stepping down"})
    assert own_deactivate.status_code == 400
    assert "You cannot deactivate or reactivate your own account." in page_text(own_deactivate)
    session.refresh(admin)
    assert admin.role_set == {Role.ADMIN} and admin.is_active
    assert browser.get("/admin/staff/").status_code == 200

    # The rule holds in the service whoever asks, even an admin account that is itself deactivated.
    with pytest.raises(DomainError, match="last active admin"):
        staff.set_active(session, other_admin, admin, False, "Take over")
    session.rollback()
    # A deactivated admin's role can go: it leaves the active admins as they are.
    assert browser.post(f"/admin/staff/{other_admin.id}/revoke-role",
                        data={"role": "admin", "reason": "Not coming back"}).status_code == 302
    session.refresh(admin)
    assert admin.is_active and admin.role_set == {Role.ADMIN}
    assert [e.actor for e in audit_events(session, "account.role_revoked")] == [f"user:{admin.id}"]


@pytest.mark.parametrize("removal", ["revoke", "deactivate"])
def test_two_admins_removing_each_other_at_once_leave_one_admin(app, session, make_account, removal):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    ids = {first.id: second.id, second.id: first.id}
    session.commit()
    barrier = threading.Barrier(2)

    def remove(own, actor_id: int):
        actor, target = own.get(Account, actor_id), own.get(Account, ids[actor_id])
        barrier.wait(timeout=10)
        if removal == "revoke":
            staff.revoke_role(own, actor, target, Role.ADMIN, "Only one admin is needed")
        else:
            staff.set_active(own, actor, target, False, "Only one admin is needed")

    outcomes, errors = race(app, remove, ids)
    assert errors == []
    assert sorted(outcomes) == [LAST_ADMIN, "done"]
    session.expire_all()
    active_admins = select(func.count()).select_from(AccountRole).join(Account, Account.id == AccountRole.account_id)
    assert session.scalar(active_admins.where(AccountRole.role == Role.ADMIN, Account.is_active.is_(True))) == 1


def test_deactivating_ends_sessions_and_refuses_sign_in(app, session, make_account):
    admin, member = make_account(Role.ADMIN), make_account(Role.RESEARCHER)
    member_browser = signed_in(app, member)
    admin_browser = signed_in(app, admin)

    assert admin_browser.post(f"/admin/staff/{member.id}/deactivate", data={"reason": "Left"}).status_code == 302
    session.refresh(member)
    assert not member.is_active
    assert member_browser.get("/admin/").status_code == 302
    refused = _sign_in_password(new_client(app), member.email)
    assert "That e-mail address and password do not match an active account." in page_text(refused)
    again = admin_browser.post(f"/admin/staff/{member.id}/deactivate", data={"reason": "Left"})
    assert again.status_code == 400 and "The account is already deactivated." in page_text(again)
    [off] = audit_events(session, "account.deactivated", member.id)
    assert (off.actor, off.reason, off.after) == (f"user:{admin.id}", "Left", {"is_active": False})


def test_reactivating_asks_again_for_the_roles_held_so_one_admin_cannot_bring_access_back(
        app, session, make_account):
    admin, second_admin = make_account(Role.ADMIN), make_account(Role.ADMIN)
    member = make_account(Role.RESEARCHER, Role.AUDITOR)
    admin_browser = signed_in(app, admin)
    assert admin_browser.post(f"/admin/staff/{member.id}/deactivate", data={"reason": "Left"}).status_code == 302

    back = admin_browser.post(f"/admin/staff/{member.id}/reactivate", data={"reason": "Came back"},
                              follow_redirects=True)
    assert "The roles it held are asked for again" in page_text(back)
    session.expire_all()
    assert member.is_active and member.role_set == set()
    refused = _sign_in_password(new_client(app), member.email)
    assert "Your account has no role yet." in page_text(refused)
    [on] = audit_events(session, "account.reactivated", member.id)
    assert (on.actor, on.reason, on.after) == (f"user:{admin.id}", "Came back", {"is_active": True})
    # The roles' removal is in the trail like any other revocation, so role history reads from one kind of event.
    revoked = audit_events(session, "account.role_revoked", member.id)
    assert sorted(e.before["role"] for e in revoked) == ["auditor", "researcher"]
    assert {e.actor for e in revoked} == {f"user:{admin.id}"}
    grants = session.scalars(select(RoleGrantRequest).where(RoleGrantRequest.account_id == member.id)
                             .order_by(RoleGrantRequest.role)).all()
    assert [(g.role, g.state, g.requested_by_id) for g in grants] == [
        (Role.AUDITOR, RoleGrantState.PENDING, admin.id), (Role.RESEARCHER, RoleGrantState.PENDING, admin.id)]

    # The admin who reactivated cannot approve them; a second admin can.
    mine = admin_browser.post(f"/admin/staff/grants/{grants[1].id}/approve", data={})
    assert mine.status_code == 400 and "A second admin must approve this" in page_text(mine)
    second_browser = signed_in(app, second_admin)
    assert second_browser.post(f"/admin/staff/grants/{grants[1].id}/approve", data={}).status_code == 302
    session.expire_all()
    assert member.role_set == {Role.RESEARCHER}
    assert _sign_in_password(new_client(app), member.email).headers["Location"] == "/login/code"


# -- who may use the pages, and bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.RESEARCHER, Role.RESEARCH_LEAD, Role.AUDITOR, Role.PROVIDER],
                         ids=lambda r: r.value)
def test_only_admins_reach_any_staff_page(app, session, make_account, role):
    admin, target = make_account(Role.ADMIN), make_account(Role.RESEARCHER)
    grant = staff.request_role(session, admin, target, Role.AUDITOR, "Covering audits")
    session.commit()
    gets = ["/admin/staff/", f"/admin/staff/{target.id}"]
    posts = {
        "/admin/staff/new": {"name": "Mallory", "email": "mallory@example.org", "roles": ["admin"], "reason": "me"},
        f"/admin/staff/{target.id}/request-role": {"role": "admin", "reason": "Because"},
        f"/admin/staff/{target.id}/revoke-role": {"role": "researcher", "reason": "Because"},
        f"/admin/staff/{target.id}/deactivate": {"reason": "Because"},
        f"/admin/staff/{target.id}/reactivate": {"reason": "Because"},
        f"/admin/staff/{target.id}/reset-second-factor": {"reason": "Because"},
        f"/admin/staff/grants/{grant.id}/approve": {"row_version": grant.row_version},
        f"/admin/staff/grants/{grant.id}/decline": {"reason": "Because", "row_version": grant.row_version},
    }
    before = _counts(session)
    anonymous = new_client(app)
    for url in gets + list(posts):
        response = anonymous.get(url) if url in gets else anonymous.post(url, data=posts[url])
        assert response.status_code == 302 and response.headers["Location"].startswith("/login"), url
    assert _counts(session) == before

    browser = signed_in(app, make_account(role))
    before = _counts(session)
    for url in gets:
        assert browser.get(url).status_code == 403, url
    for url, data in posts.items():
        assert browser.post(url, data=data).status_code == 403, url
    assert _counts(session) == before
    session.refresh(target)
    assert target.is_active and target.role_set == {Role.RESEARCHER} and target.has_second_factor


def test_bad_input_gives_a_message_and_changes_nothing(app, session, make_account):
    admin, member, provider = make_account(Role.ADMIN), make_account(Role.RESEARCHER), make_account(Role.PROVIDER)
    browser = signed_in(app, admin)
    before = _counts(session)

    new_staff_cases = [
        (dict(roles=()), "Choose at least one role."),
        (dict(email="not-an-address"), "Enter a valid e-mail address"),
        (dict(email=member.email.upper()), f"An account with the e-mail address {member.email} already exists."),
        (dict(email=provider.email), f"An account with the e-mail address {provider.email} already exists."),
        (dict(reason=""), "Give a reason"),
        (dict(reason="  "), "Give a reason"),
        (dict(roles=("superuser",)), "Not a valid choice"),
        (dict(roles=("researcher", "provider")), "Not a valid choice"),
        (dict(name=""), "Give the person's name."),
    ]
    for fields, message in new_staff_cases:
        response = _add_staff(browser, **fields)
        assert response.status_code == 400, fields
        assert message.lower() in page_text(response).lower(), (fields, message)

    role_cases = [
        ({"role": "superuser", "reason": "Because"}, "Not a valid choice"),
        ({"role": "provider", "reason": "Because"}, "Not a valid choice"),
        ({"role": "auditor", "reason": ""}, "Give a reason"),
        ({"role": "researcher", "reason": "Because"}, f"{member.email} already has the researcher role."),
    ]
    for data, message in role_cases:
        response = browser.post(f"/admin/staff/{member.id}/request-role", data=data)
        assert response.status_code == 400, data
        assert message.lower() in page_text(response).lower(), (data, message)

    # A provider account is not a staff account: its id is unknown here, as is a missing one.
    for url in (f"/admin/staff/{provider.id}", "/admin/staff/99999"):
        assert browser.get(url).status_code == 404, url
    for url in (f"/admin/staff/{provider.id}/request-role", f"/admin/staff/{provider.id}/deactivate",
                f"/admin/staff/{provider.id}/reset-second-factor", "/admin/staff/grants/99999/approve"):
        assert browser.post(url, data={"role": "researcher", "reason": "Because"}).status_code == 404, url

    assert _counts(session) == before
    session.refresh(member)
    session.refresh(provider)
    assert member.role_set == {Role.RESEARCHER} and provider.role_set == {Role.PROVIDER} and provider.is_active


# -- two admins at once -------------------------------------------------------------------------------------


def test_a_second_approval_from_a_stale_page_gets_a_conflict_message(app, session, make_account):
    first, second, third = make_account(Role.ADMIN), make_account(Role.ADMIN), make_account(Role.ADMIN)
    person = _staff_member(session, first)
    grant = _grants(session, person)[Role.RESEARCHER]
    b, c = signed_in(app, second), signed_in(app, third)
    shown_version = str(grant.row_version)
    assert f'name="row_version" value="{shown_version}"' in b.get("/admin/staff/").get_data(as_text=True)
    assert f'name="row_version" value="{shown_version}"' in c.get("/admin/staff/").get_data(as_text=True)

    assert b.post(_approve_url(grant), data={"row_version": shown_version}).status_code == 302
    stale = c.post(_approve_url(grant), data={"row_version": shown_version})
    assert stale.status_code in (400, 409) and "This request is already approved." in page_text(stale)
    assert [r.role for r in _person(session).roles] == [Role.RESEARCHER]
    assert [e.actor for e in audit_events(session, "role_grant.approved")] == [f"user:{second.id}"]


def test_two_admins_approving_at_the_same_moment_one_wins_the_other_gets_a_conflict(app, session, make_account):
    first, second, third = make_account(Role.ADMIN), make_account(Role.ADMIN), make_account(Role.ADMIN)
    person = _staff_member(session, first)
    grant_id = _grants(session, person)[Role.RESEARCHER].id
    session.commit()
    barrier = threading.Barrier(2)

    def approve(own, actor_id: int):
        actor, grant = own.get(Account, actor_id), own.get(RoleGrantRequest, grant_id)
        version = grant.row_version
        grant.account.roles  # noqa: B018 - everything read before the race, as a page would have
        barrier.wait(timeout=10)
        staff.approve(own, actor, grant, version)

    outcomes, errors = race(app, approve, [second.id, third.id])
    assert errors == []
    assert sorted(outcomes) == sorted(["done", concurrency.CONFLICT_MESSAGE])
    assert [r.role for r in _person(session).roles] == [Role.RESEARCHER]
    [event] = audit_events(session, "role_grant.approved", person.id)
    grant = session.get(RoleGrantRequest, grant_id)
    assert grant.state == RoleGrantState.APPROVED and event.actor == f"user:{grant.decided_by_id}"


class _FlushTogether:
    """Stands in for the concurrency module inside the staff service: both racers pass their checks, then meet
    here, then write, so the database's unique constraint is what separates them."""

    def __init__(self):
        self.barrier = threading.Barrier(2)
        self.met = threading.local()

    def flush(self, session):
        if not getattr(self.met, "done", False):  # only a racer's first write waits for the other
            self.met.done = True
            self.barrier.wait(timeout=10)
        concurrency.flush(session)


def test_two_admins_adding_the_same_address_at_once_one_wins_the_other_gets_a_conflict(
        app, session, make_account, monkeypatch):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    session.commit()
    monkeypatch.setattr(staff, "concurrency", _FlushTogether())

    def add(own, actor_id):
        staff.create_staff(own, own.get(Account, actor_id), email="same.person@example.org", name="Same Person", roles=["auditor"],
                           reason="Joins the audit team")

    outcomes, errors = race(app, add, [first.id, second.id])
    assert errors == []
    assert sorted(outcomes) == sorted(
        ["done", "An account with the e-mail address same.person@example.org was added a moment ago, by someone else."])
    person = _person(session, "same.person@example.org")
    assert list(_grants(session, person)) == [Role.AUDITOR]
    assert len(audit_events(session, "account.created", person.id)) == 1


def test_two_admins_asking_for_the_same_role_at_once_leave_one_request(app, session, make_account, monkeypatch):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    member = make_account(Role.RESEARCHER)
    session.commit()
    monkeypatch.setattr(staff, "concurrency", _FlushTogether())

    def ask(own, actor_id):
        staff.request_role(own, own.get(Account, actor_id), own.get(Account, member.id), Role.AUDITOR,
                           "Covering audits")

    outcomes, errors = race(app, ask, [first.id, second.id])
    assert errors == []
    assert sorted(outcomes) == sorted(
        ["done", f"The auditor role for {member.email} was asked for a moment ago, by someone else."])
    session.expire_all()
    pending = session.scalars(select(RoleGrantRequest).where(RoleGrantRequest.account_id == member.id)).all()
    assert [(g.role, g.state) for g in pending] == [(Role.AUDITOR, RoleGrantState.PENDING)]
    assert len(audit_events(session, "role_grant.requested", member.id)) == 1


def test_a_refusal_is_shown_beside_the_field_or_form_it_is_about(app, session, make_account):
    admin, other_admin = make_account(Role.ADMIN), make_account(Role.ADMIN)
    browser = signed_in(app, admin)

    # "Choose at least one role" comes from the service; it is shown under the roles, not the address.
    page = _add_staff(browser, roles=()).get_data(as_text=True)
    roles_at, reason_at = page.index("Roles to ask for"), page.index("Why this person needs these roles")
    assert roles_at < page.index("Choose at least one role.") < reason_at

    person = _staff_member(session, other_admin)
    grant = _grants(session, person)[Role.RESEARCHER]
    refused = browser.post(f"/admin/staff/grants/{grant.id}/decline", data={"reason": "x"})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    decline_form = page[page.index(f'action="/admin/staff/grants/{grant.id}/decline"'):]
    decline_form = decline_form[:decline_form.index("</form>")]
    assert "Field must be between 3 and 2000 characters long." in decline_form
    account_form = page[page.index('id="account-actions"'):]
    assert "Field must be between" not in account_form[:account_form.index("</form>")]
    assert _grants(session, person)[Role.RESEARCHER].state == RoleGrantState.PENDING


def test_a_role_is_not_approved_for_an_account_that_became_a_provider(app, session, make_account):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    person = _staff_member(session, first)
    grant = _grants(session, person)[Role.RESEARCHER]
    person.roles.append(AccountRole(role=Role.PROVIDER))
    session.commit()
    with pytest.raises(DomainError, match="A provider account cannot hold a staff role."):
        staff.approve(session, second, grant)
    session.rollback()
    assert _person(session).role_set == {Role.PROVIDER}


def test_reactivating_keeps_a_request_already_waiting_instead_of_refusing(app, session, make_account):
    admin, second_admin = make_account(Role.ADMIN), make_account(Role.ADMIN)
    member = make_account(Role.RESEARCHER)
    staff.set_active(session, admin, member, False, "On leave")
    session.commit()
    # A request for a role the account still holds (the command-line bootstrap can leave one waiting).
    session.add(RoleGrantRequest(account_id=member.id, role=Role.RESEARCHER, reason="Earlier request",
                                 requested_by_id=second_admin.id))
    session.commit()

    staff.set_active(session, admin, member, True, "Back from leave")
    session.commit()
    session.expire_all()
    assert member.is_active and member.role_set == set()
    pending = session.scalars(select(RoleGrantRequest).where(RoleGrantRequest.account_id == member.id)).all()
    assert [(g.role, g.reason, g.state) for g in pending] == [
        (Role.RESEARCHER, "Earlier request", RoleGrantState.PENDING)]


def test_two_admins_adding_the_same_address_through_the_page_the_second_gets_409_under_the_address(
        app, session, make_account, monkeypatch):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    browsers = [signed_in(app, first), signed_in(app, second)]
    monkeypatch.setattr(staff, "concurrency", _FlushTogether())
    responses = []

    def add(browser):
        responses.append(_add_staff(browser, email="same.person@example.org"))

    threads = [threading.Thread(target=add, args=(browser,)) for browser in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.status_code for r in responses) == [302, 409]
    [lost] = [r for r in responses if r.status_code == 409]
    page = lost.get_data(as_text=True)
    message = "An account with the e-mail address same.person@example.org was added a moment ago, by someone else."
    email_at = page.index('name="email"')
    assert email_at < page.index(message) < page.index("Roles to ask for")
    assert len(_grants(session, _person(session, "same.person@example.org"))) == 2


def test_a_reason_of_spaces_around_two_letters_is_refused_beside_its_field(app, session, make_account):
    admin, member = make_account(Role.ADMIN), make_account(Role.RESEARCHER)
    browser = signed_in(app, admin)
    refused = browser.post(f"/admin/staff/{member.id}/deactivate", data={"reason": "   ab   "})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    account_form = page[page.index('id="account-actions"'):]
    assert "Field must be between 3 and 2000 characters long." in account_form[:account_form.index("</form>")]
    # The other forms on the page do not show what was typed into this one.
    role_form = page[page.index('id="request-role"'):]
    assert "   ab   " not in role_form[:role_form.index("</form>")]
    session.refresh(member)
    assert member.is_active


@pytest.mark.parametrize("version, status", [
    ("\u00b2", 400), ("9" * 5000, 400), ("-1x", 400),
    ("\u0669\u0669", 409),  # Arabic-Indic 99 is a number, just not this request's version: stale
], ids=["superscript", "huge", "junk", "arabic-99"])
def test_a_mangled_row_version_is_refused_not_a_500(app, session, make_account, version, status):
    first, second = make_account(Role.ADMIN), make_account(Role.ADMIN)
    person = _staff_member(session, first)
    grant = _grants(session, person)[Role.RESEARCHER]
    browser = signed_in(app, second)
    for url, data in ((_approve_url(grant), {"row_version": version}),
                      (f"/admin/staff/grants/{grant.id}/decline", {"row_version": version, "reason": "Not now"})):
        response = browser.post(url, data=data)
        assert response.status_code == status, url
    assert _grants(session, person)[Role.RESEARCHER].state == RoleGrantState.PENDING
