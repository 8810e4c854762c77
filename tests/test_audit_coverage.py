"""Every state change is audited: each column of each table is decided audited or bookkeeping in one place
(backoffice/models/audit_coverage.py), and the operations of the pages, the tasks and the commands, walked one
by one with every table snapshotted around each, never change an audited column without an audit event of
the same commit that names the row."""
from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import Column, Integer, MetaData, Table, select, update

from backoffice import formatting
from backoffice.models import (
    AuditEvent,
    Base,
    CheckRun,
    Finding,
    Licence,
    ListingStatus,
    Provider,
    Role,
    Submission,
    VerificationStatus,
    audit_coverage,
    utcnow,
)
from backoffice.services import audit, rechecks
from tests.audit_helpers import AuditWalk
from tests.conftest import PASSWORD, fresh_code, login
from tests.portal_helpers import PDF, mailed_path, provider_with_draft, submit_data
from tests.review_helpers import ad_form, assessment_post, provider_member, publish_catalogue
from tests.security_helpers import new_client, without_nonces
from tests.servers import LocalServer, html_page

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "public"


# -- the decision for every column ---------------------------------------------------------------------------


def test_every_column_of_every_table_is_decided_audited_or_bookkeeping():
    assert audit_coverage.problems(Base.metadata) == []
    for name, entry in audit_coverage.TABLES.items():
        assert all(reason.strip() for reason in entry.bookkeeping.values()), name


def test_a_new_column_a_new_table_or_a_column_gone_is_caught():
    tables = dict(Base.metadata.tables)
    extra = MetaData()
    columns = {name: Base.metadata.tables[name].columns for name in ("provider", "account")}
    tables["provider"] = Table("provider", extra, *(Column(c.name, c.type) for c in columns["provider"]),
                               Column("ranking_boost", Integer))
    tables["ranking"] = Table("ranking", extra, Column("id", Integer, primary_key=True))
    tables["account"] = Table("account", extra, *(Column(c.name, c.type) for c in columns["account"]
                                                  if c.name != "last_login_at"))
    found = audit_coverage.problems(SimpleNamespace(tables=tables))
    assert "provider.ranking_boost is neither audited nor bookkeeping" in found
    assert "table ranking is not in backoffice/models/audit_coverage.py TABLES" in found
    assert "account.last_login_at is listed but the table has no such column" in found


def test_docs_audit_md_is_the_table_the_code_decides():
    assert (ROOT / "docs" / "AUDIT.md").read_text(encoding="utf-8") == audit_coverage.markdown()
    assert "(AUDIT.md)" in (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")


def test_every_action_the_code_records_has_words():
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "backoffice").rglob("*.py"))
    recorded = set(re.findall(r"audit\.record\(\s*[\w.]+,\s*[^,]+,\s*\"([a-z_]+\.[a-z_]+)\"", source))
    recorded |= set(re.findall(r"\"(finding\.[a-z_]+)\"", source))
    assert len(recorded) > 50
    assert sorted(recorded - formatting.EVENT_WORDS.keys()) == []


# -- the walk -------------------------------------------------------------------------------------------------


def version(client, url: str) -> str:
    return re.search(r'name="version" type="hidden" value="(\d+)"', client.get(url).get_data(as_text=True)).group(1)


def staff_sign_in(walk: AuditWalk, app, account, name: str):
    """Password, then the code: two operations, the second starts the session."""
    client = new_client(app)
    walk.step(f"{name}: password", lambda: client.post("/login", data={"email": account.email, "password": PASSWORD}))
    code = fresh_code(account)
    response = walk.step(f"{name}: second factor", lambda: client.post("/login/code", data={"code": code}),
                         expect=("account.second_factor_passed", "account.signed_in"))
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def work_case(walk: AuditWalk, client, submission_id: int, name: str, portal=None) -> None:
    """Claim, (with the provider's browser: ask a question, which the provider answers with a document), assess
    every applicable criterion met, approve: one page post each."""
    case_url = f"/admin/review/case/{submission_id}"
    claimed = version(client, case_url)
    assert walk.step(f"{name}: claim", lambda: client.post(f"{case_url}/claim", data={"version": claimed}),
                     expect=("submission.assigned", "submission.catalogue_fixed")).status_code == 302
    if portal is not None:
        data = {"version": version(client, case_url), "message": "Please send the current licence."}
        asked = walk.step(f"{name}: ask the provider", lambda: client.post(f"{case_url}/request-info", data=data),
                          expect=("submission.transitioned",))
        assert asked.status_code == 302, asked.get_data(as_text=True)
        request_url = f"/portal/requests/{submission_id}"
        data = {"version": version(portal, request_url), "message": "Attached.",
                "files": [(io.BytesIO(PDF), "licence.pdf")]}
        answered = walk.step(f"{name}: the provider answers", lambda: portal.post(
            f"{request_url}/answer", data=data, content_type="multipart/form-data"),
            expect=("document.uploaded", "submission.transitioned"))
        assert answered.status_code == 302, answered.get_data(as_text=True)
    page = client.get(case_url).get_data(as_text=True)
    codes = re.findall(r'id="criterion-([A-Z_]+)"', page)
    assert codes
    # An assessment carried over from the decision in force is confirmed as it stands; the others are assessed.
    carried = {code for code in codes if f'id="assess-{code}-confirm"' in page}
    data = assessment_post(page, {code: {"confirm": "y"} if code in carried else {
        "status": "met", "note": f"{code} checked against the source", "source": "research team"} for code in codes})
    expect = ("assessment.recorded", "assessment.confirmed") if carried else ("assessment.recorded",)
    response = walk.step(f"{name}: assess every criterion in one post",
                         lambda: client.post(f"{case_url}/assess", data=data), expect=expect)
    assert response.status_code == 302, response.get_data(as_text=True)
    data = {"version": version(client, case_url), "outcome": "approved", "provider_note": "Welcome.",
            "internal_note": "every criterion met"}
    response = walk.step(f"{name}: decide", lambda: client.post(f"{case_url}/decide", data=data),
                         expect=("decision.recorded",))
    assert response.status_code == 302, response.get_data(as_text=True)


def test_a_provider_account_from_registration_to_sign_out_is_audited(app, session, make_account):
    from tasks.sweeps import deliver_notifications

    walk = AuditWalk(session)
    browser = new_client(app)
    email = "intake@harbor.example.org"
    form = {"name": "Ada Byron", "email": email, "password": PASSWORD, "confirm": PASSWORD}
    first = walk.step("register", lambda: browser.post("/register", data=form), expect=("account.created",))
    again = walk.step("register an address that has an account", lambda: browser.post("/register", data=form),
                      expect=("account.registration_repeated",))
    # The requester learns nothing: the same page either way.
    assert again.status_code == first.status_code
    assert without_nonces(again.get_data(as_text=True)) == without_nonces(first.get_data(as_text=True))
    walk.step("resend the confirmation link", lambda: browser.post("/confirm", data={"email": email}),
              expect=("account.confirmation_resent",))
    walk.step("resend for an unknown address", lambda: browser.post("/confirm", data={"email": "nobody@example.org"}))
    link = mailed_path(session, email, "confirm_email")
    walk.step("confirm the address", lambda: browser.get(link), expect=("account.email_confirmed",))
    sent = walk.step("outbox delivery", lambda: deliver_notifications.apply().get(), expect=("notification.sent",))

    signed_in = walk.step("sign in", lambda: browser.post("/login", data={"email": email, "password": PASSWORD}),
                          expect=("account.signed_in",))
    assert signed_in.status_code == 302
    created = walk.step("create an organisation", lambda: browser.post(
        "/portal/organisations/new", data={"legal_name": "Harbor Recovery Center LLC",
                                           "public_name": "Harbor Recovery Center"}), expect=("provider.created",))
    edit = created.headers["Location"]
    submitted = walk.step("submit the listing request", lambda: browser.post(edit, data=submit_data()),
                          expect=("submission.attested", "submission.transitioned"))
    assert submitted.status_code == 302, submitted.get_data(as_text=True)
    walk.step("sign out", lambda: browser.post("/logout"), expect=("account.signed_out",))
    assert browser.get("/portal/").status_code == 302  # every session ended
    walk.assert_clean()
    # One event per message delivered: the welcome, the note to the registered address, the second link.
    assert sent == 3 and walk.events("outbox delivery").count("notification.sent") == 3
    assert audit.verify_chain(session).ok

    # The auditor reads the security events in words, with who, when and what changed.
    reader = new_client(app)
    assert login(reader, make_account(Role.AUDITOR)).status_code == 302
    log = reader.get("/admin/audit/?actor=" + email).get_data(as_text=True)
    for words in ("signed in", "signed out: every session of the account ended", "e-mail address confirmed"):
        assert words in log, words
    log = reader.get("/admin/audit/?action=account.*").get_data(as_text=True)
    assert "registration tried again for an address that has an account (a note mailed to it)" in log
    assert "confirmation link mailed again" in log
    signed_out = _last_event(session, "account.signed_out")
    page = reader.get(f"/admin/audit/event/{signed_out.seq}").get_data(as_text=True)
    assert "signed out: every session of the account ended" in page and "session_version" in page


def test_the_review_of_a_listing_and_of_an_advertiser_application_is_audited(app, session, make_account):
    walk = AuditWalk(session)
    publish_catalogue(session)
    member, provider, draft = provider_with_draft(session, make_account)
    portal = new_client(app)
    assert login(portal, member).status_code == 302
    assert portal.post(f"/portal/requests/{draft.id}/edit", data=submit_data()).status_code == 302
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)

    desk = staff_sign_in(walk, app, researcher, "researcher")
    work_case(walk, desk, draft.id, "new listing", portal)
    assert "verification.granted" in walk.events("new listing: decide")

    applied = walk.step("apply to advertise", lambda: portal.post(f"/portal/organisations/{provider.id}/advertise",
                                                                  data=ad_form(provider)),
                        expect=("submission.created", "advertising.copy_submitted"))
    assert applied.status_code == 302, applied.get_data(as_text=True)
    session.rollback()
    application = session.scalars(select(Submission).where(Submission.provider_id == provider.id)
                                  .order_by(Submission.id.desc())).first()
    work_case(walk, desk, application.id, "advertiser application")

    second = staff_sign_in(walk, app, lead, "research lead")
    case_url = f"/admin/review/case/{application.id}"
    data = {"version": version(second, case_url)}
    response = walk.step("sign off", lambda: second.post(f"{case_url}/sign-off", data=data),
                         expect=("decision.signed_off", "advertising.active"))
    assert response.status_code == 302, response.get_data(as_text=True)
    # Reading changes nothing that is audited: the queue, the case, the provider, the feed and the receipt.
    for page in ("/admin/review/", case_url, f"/admin/review/provider/{provider.id}", "/api/v1/listings",
                 f"/api/v1/listings/{provider.id}/verification", f"/portal/requests/{application.id}"):
        browser = portal if page.startswith("/portal") else second
        assert walk.step(f"read {page}", lambda: browser.get(page)).status_code == 200, page  # noqa: B023 - called within this step
    walk.step("sign out", lambda: desk.post("/logout"), expect=("account.signed_out",))

    first_admin, second_admin = make_account(Role.ADMIN), make_account(Role.ADMIN)
    one = staff_sign_in(walk, app, first_admin, "first admin")
    added = walk.step("add a staff member", lambda: one.post("/admin/staff/new", data={
        "name": "Nia New", "email": "nia@example.org", "roles": ["researcher"], "reason": "joins the research team"}),
        expect=("account.created", "role_grant.requested"))
    assert added.status_code == 302, added.get_data(as_text=True)
    two = staff_sign_in(walk, app, second_admin, "second admin")
    page = two.get("/admin/staff/").get_data(as_text=True)
    approve = re.search(r'action="(/admin/staff/grants/\d+/approve)"', page).group(1)
    row_version = re.search(r'name="row_version" value="(\d+)"', page).group(1)
    approved = walk.step("approve the role", lambda: two.post(approve, data={"row_version": row_version}),
                         expect=("role_grant.approved",))
    assert approved.status_code == 302, approved.get_data(as_text=True)
    walk.assert_clean()
    assert audit.verify_chain(session).ok


def _work_id(session, provider_id: int, check: str, window: str) -> int:
    """The work row that asked for this check in this window (tasks carry only its id)."""
    from backoffice.models import Work

    session.expire_all()
    return session.scalar(select(Work.id).where(Work.idempotency_key == f"{check}:{provider_id}:{window}")
                          .order_by(Work.id.desc()).limit(1))


def test_rechecks_findings_sweeps_and_commands_are_audited(app, session, make_account, make_provider, tmp_path):
    from tasks.checks import recheck_sweep, run_check

    site = LocalServer(lambda path, headers: html_page("<title>Another clinic</title><p>Nothing about them</p>"))
    app.config.update(OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS=True, OUTBOUND_PER_HOST_INTERVAL_MS=1)
    try:
        walk = AuditWalk(session)
        provider = make_provider(website=site.url(), listing_status=ListingStatus.LISTED)
        researcher, auditor = make_account(Role.RESEARCHER), make_account(Role.AUDITOR)
        desk = staff_sign_in(walk, app, researcher, "researcher")
        walk.step("re-check now", lambda: desk.post(f"/admin/finding-work/provider/{provider.id}/recheck"),
                  expect=("recheck.requested",))
        window = _last_event(session, "recheck.requested").after["window"]
        for check, expected in (("website", "finding.opened"), ("npi", "finding.opened"),
                                ("exclusion", "recheck.completed")):
            walk.step(f"{check} check", lambda: run_check.apply(args=[_work_id(session, provider.id, check, window)]).get(),  # noqa: B023 - called within this step
                      expect=(expected,))

        finding = session.scalar(select(Finding).where(Finding.provider_id == provider.id,
                                                       Finding.subject_key == "website:not_named"))
        assert finding is not None
        acknowledged = walk.step("acknowledge the finding", lambda: desk.post(
            f"/admin/finding-work/{finding.id}/acknowledge", data={"row_version": finding.row_version}),
            expect=("finding.acknowledged",))
        assert acknowledged.status_code == 302, acknowledged.get_data(as_text=True)

        # A month later (set by hand, outside the walk): the schedule claims the provider and runs its checks.
        due = utcnow().replace(microsecond=0) - timedelta(minutes=1)
        session.execute(update(Provider).where(Provider.id == provider.id).values(recheck_due_at=due))
        session.commit()
        assert walk.step("re-check sweep", lambda: recheck_sweep.apply().get(), expect=("recheck.claimed",)) == 1
        window = rechecks.window_for(due, utcnow())  # the window the sweep sent the provider's checks in
        # The same problems found again change no finding's state, but what the findings show comes from the new runs.
        for check, expected in (("website", "finding.seen_again"), ("npi", "finding.seen_again"),
                                ("exclusion", "recheck.completed")):
            walk.step(f"{check} check again", lambda: run_check.apply(args=[_work_id(session, provider.id, check, window)]).get(),  # noqa: B023 - called within this step
                      expect=(expected,))

        runner = app.test_cli_runner()
        facilities = tmp_path / "facilities.json"
        sample = json.loads((DATA / "findtreatment_gov_api_listing_sample_2019.json").read_text())
        facilities.write_text(json.dumps({**sample, "rows": sample["rows"][:3]}))
        result = walk.step("import facilities",
                           lambda: runner.invoke(args=["import", "findtreatment", str(facilities)]),
                           expect=("provider.imported",))
        assert result.exit_code == 0, result.output
        leie = tmp_path / "leie.csv"
        lines = (DATA / "oig_leie_monthly_exclusions_2016-01_to_2023-06.csv").read_text().splitlines()
        leie.write_text("\n".join(lines[:4]) + "\n")
        result = walk.step("import the LEIE", lambda: runner.invoke(args=["import", "leie", str(leie)]),
                           expect=("exclusion_list.imported",))
        assert result.exit_code == 0, result.output
        result = walk.step("create a staff user", lambda: runner.invoke(args=[
            "create-staff-user", "ops@example.org", "--name", "Ops Person", "--role", "auditor",
            "--password", PASSWORD]), expect=("account.created",))
        assert result.exit_code == 0, result.output
        result = walk.step("verify the chain", lambda: runner.invoke(args=["audit", "verify"]))
        assert result.exit_code == 0, result.output
        walk.assert_clean()

        claimed = _last_event(session, "recheck.claimed")
        assert claimed.provider_id == provider.id and claimed.after["window"] == window
        assert claimed.before["recheck_due_at"] == audit.jsonable(due)
        assert claimed.after["recheck_due_at"] > claimed.before["recheck_due_at"]
        completed = _last_event(session, "recheck.completed")
        session.refresh(provider)
        assert completed.after["last_rechecked_at"] == audit.jsonable(provider.last_rechecked_at)
        runs = session.execute(select(CheckRun.check, CheckRun.outcome)
                               .where(CheckRun.idempotency_key.like(f"%:{provider.id}:{window}"))).all()
        assert completed.after["outcomes"] == {check.value: outcome.value for check, outcome in runs}
        assert len(runs) == 3

        reader = staff_sign_in(walk, app, auditor, "auditor")
        log = reader.get("/admin/audit/").get_data(as_text=True)
        for words in ("re-check completed: every check of the window ran", "re-check started by the schedule",
                      "finding seen again by a check", "signed in", "re-check asked for"):
            assert words in log, words
        history = reader.get(f"/admin/audit/provider/{provider.id}").get_data(as_text=True)
        assert "re-check completed: every check of the window ran" in history
        assert "finding seen again by a check" in history
        event = reader.get(f"/admin/audit/event/{completed.seq}").get_data(as_text=True)
        assert "re-check completed: every check of the window ran" in event and "last_rechecked_at" in event
        assert audit.verify_chain(session).ok
    finally:
        site.close()


def test_the_daily_and_hourly_sweeps_are_audited(app, session, make_account, make_provider):
    from tasks.checks import expiry_sweep, sla_sweep
    from tasks.sweeps import audit_verification, deliver_notifications, verification_expiry_sweep

    walk = AuditWalk(session)
    now = utcnow()
    lapsed = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                           verified_at=now - timedelta(days=400), verified_until=now - timedelta(hours=1))
    renewing = make_provider(listing_status=ListingStatus.LISTED)
    renewing.licences.append(Licence(state="VA", number="L-1", licence_type="Outpatient SUD",
                                     expires_on=(now + timedelta(days=30)).date()))
    renewing.licences.append(Licence(state="VA", number="L-0", licence_type="Outpatient SUD",
                                     expires_on=(now - timedelta(days=1)).date()))
    session.commit()
    provider_member(session, make_account, renewing)
    publish_catalogue(session)
    member, provider, draft = provider_with_draft(session, make_account)
    portal = new_client(app)
    assert login(portal, member).status_code == 302
    assert portal.post(f"/portal/requests/{draft.id}/edit", data=submit_data()).status_code == 302
    session.execute(update(Submission).where(Submission.id == draft.id)
                    .values(first_response_due=now - timedelta(days=1), decision_due=now - timedelta(hours=1)))
    session.commit()

    lead = make_account(Role.RESEARCH_LEAD)
    desk = staff_sign_in(walk, app, lead, "research lead")
    walk.step("ask for the verification-expiry sweep", lambda: desk.post("/admin/sweeps/verification-expiry"),
              expect=("sweep.requested",))
    assert walk.step("verification-expiry sweep", lambda: verification_expiry_sweep.apply().get(),
                     expect=("verification.expired",)) == 1
    assert walk.step("expiry sweep", lambda: expiry_sweep.apply().get(), expect=("expiry.reminder_sent",))["reminders"]
    assert walk.step("SLA sweep", lambda: sla_sweep.apply().get(), expect=("finding.opened",)) >= 1
    walk.step("outbox delivery", lambda: deliver_notifications.apply().get(), expect=("notification.sent",))
    assert walk.step("audit verification", lambda: audit_verification.apply().get()) is True
    walk.assert_clean()
    assert walk.commits["expiry sweep"] >= 2  # each of its commits was read on its own: reminders, then lapses
    session.refresh(lapsed)
    assert lapsed.verification_status == VerificationStatus.EXPIRED


def test_revocation_reinstatement_suspension_and_account_security_are_audited(app, session, make_account,
                                                                             make_provider):
    walk = AuditWalk(session)
    publish_catalogue(session)
    now = utcnow()
    verified = dict(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                    verified_at=now - timedelta(days=10), verified_until=now + timedelta(days=300))
    revoked, suspended = make_provider(**verified), make_provider(**verified)
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)
    auditor = make_account(Role.AUDITOR)
    admin = make_account(Role.ADMIN)

    desk = staff_sign_in(walk, app, researcher, "researcher")
    url = f"/admin/review/provider/{revoked.id}"
    asked = walk.step("ask to revoke", lambda: desk.post(f"{url}/revoke", data={"reason": "licence withdrawn"}),
                      expect=("revocation.requested",))
    assert asked.status_code == 302, asked.get_data(as_text=True)
    action_id = _last_event(session, "revocation.requested").entity_id
    second = staff_sign_in(walk, app, lead, "research lead")
    signed = walk.step("sign off the revocation",
                       lambda: second.post(f"/admin/review/revocations/{action_id}/sign-off"),
                       expect=("verification.revoked",))
    assert signed.status_code == 302, signed.get_data(as_text=True)
    reopened = walk.step("open a reinstatement", lambda: desk.post(f"{url}/reinstate", data={"reason": "licence back"}),
                         expect=("reinstatement.opened",))
    assert reopened.status_code == 302, reopened.get_data(as_text=True)
    held = walk.step("suspend a listing", lambda: desk.post(f"/admin/review/provider/{suspended.id}/suspend",
                                                            data={"reason": "critical finding"}),
                     expect=("listing.suspended",))
    assert held.status_code == 302, held.get_data(as_text=True)

    member = provider_member(session, make_account, suspended)
    browser = new_client(app)
    walk.step("ask for a password reset", lambda: browser.post("/reset", data={"email": member.email}),
              expect=("account.password_reset_requested",))
    link = mailed_path(session, member.email, "password_reset")
    new_password = "a completely new passphrase"
    done = walk.step("reset the password", lambda: browser.post(link, data={"password": new_password,
                                                                            "confirm": new_password}),
                     expect=("account.password_reset", "account.sessions_ended"))
    assert done.status_code == 302, done.get_data(as_text=True)
    assert walk.step("sign in", lambda: browser.post("/login", data={"email": member.email,
                                                                    "password": new_password}),
                     expect=("account.signed_in",)).status_code == 302
    changed = walk.step("change the password", lambda: browser.post("/account/security", data={
        "current": new_password, "password": PASSWORD, "confirm": PASSWORD, "submit": "Change password"}),
        expect=("account.password_changed", "account.sessions_ended"))
    assert changed.status_code in (200, 302), changed.get_data(as_text=True)

    ops = staff_sign_in(walk, app, admin, "admin")
    walk.step("reset a second factor", lambda: ops.post(f"/admin/staff/{researcher.id}/reset-second-factor",
                                                        data={"reason": "lost phone"}),
              expect=("account.second_factor_reset", "account.sessions_ended"))
    walk.step("take a role away", lambda: ops.post(f"/admin/staff/{auditor.id}/revoke-role",
                                                   data={"role": "auditor", "reason": "left the audit team"}),
              expect=("account.role_revoked", "account.sessions_ended"))
    walk.step("deactivate an account", lambda: ops.post(f"/admin/staff/{lead.id}/deactivate",
                                                        data={"reason": "left"}),
              expect=("account.deactivated", "account.sessions_ended"))
    walk.assert_clean()
    assert audit.verify_chain(session).ok


def _last_event(session, action: str) -> AuditEvent:
    session.rollback()
    return session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.seq.desc())).first()
