"""The case page as the research team works it: the summary says what blocks the approval in words, every
criterion is assessed in one post (one transaction, one audit event per criterion changed), and a review of an
update or an advertiser application starts from the assessments of the decision in force, which count only once
a researcher confirms or changes them."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backoffice.models import (
    AdvertisingStatus,
    Assessment,
    AuditEvent,
    CheckKind,
    CheckOutcome,
    CheckRun,
    Criterion,
    DecisionOutcome,
    Finding,
    FindingSeverity,
    Provider,
    Role,
    SubmissionKind,
    SubmissionState,
    utcnow,
)
from backoffice.services import audit, review
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import (
    POLICY,
    assess_all,
    assessment_post,
    in_review,
    provider_member,
    publish_catalogue,
    submitted,
)


def version(page: str) -> str:
    return re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)


def section(page: str, element_id: str) -> str:
    """The text a person reads in the element with this id (up to its closing tag of the same name)."""
    opening = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>', page)
    assert opening, f"no #{element_id} on the page"
    tag, start = opening.group(1), opening.start()
    depth, position = 0, start
    for match in re.finditer(rf"<(/?){tag}\b[^>]*>", page[start:]):
        depth += -1 if match.group(1) else 1
        if depth == 0:
            position = start + match.end()
            break
    return visible_text(page[start:position])


def assert_unique_ids(page: str) -> None:
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def events(session, action: str | None = None) -> int:
    query = select(func.count()).select_from(AuditEvent)
    return session.scalar(query.where(AuditEvent.action == action) if action else query)


def codes_on(page: str) -> list[str]:
    return re.findall(r'<fieldset class="card mb-2" id="criterion-([A-Z_]+)"', page)


@pytest.fixture
def world(session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Shenandoah Valley Recovery")
    return {"provider": provider, "member": provider_member(session, make_account, provider),
            "researcher": make_account(Role.RESEARCHER), "other": make_account(Role.RESEARCHER),
            "lead": make_account(Role.RESEARCH_LEAD)}


@pytest.fixture
def listed(session, world):
    """The provider listed by a decision of ours, every criterion assessed met with a note and a source."""
    listing = in_review(session, world["other"], submitted(session, world["member"], world["provider"]))
    assess_all(session, world["other"], listing)
    decision = review.decide(session, world["other"], listing, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    return {**world, "listing": listing, "decision": decision}


def test_a_researcher_takes_a_new_request_found_by_search_to_a_decision_with_one_assessment_post(
        client, session, world):
    submission = submitted(session, world["member"], world["provider"],
                           proposed={"public_name": "Shenandoah Valley Recovery", "phone": "540-555-0199"})
    login(client, world["researcher"])
    found = client.get("/admin/review/?q=shenandoah").get_data(as_text=True)
    assert f'href="/admin/review/case/{submission.id}"' in found
    case_url = f"/admin/review/case/{submission.id}"

    page = client.get(case_url).get_data(as_text=True)
    summary = section(page, "summary")
    assert "List Shenandoah Valley Recovery in the directory for the first time." in summary
    assert "1 field differs from the listing now: Phone" in summary
    assert "The criteria are fixed when someone claims the request." in summary
    assert "Claim this request" in summary and "Decide" not in summary
    assert client.post(f"{case_url}/claim", data={"version": version(page)}).status_code == 302

    page = client.get(case_url).get_data(as_text=True)
    summary = section(page, "summary")
    assert "Licence: not assessed" in summary and "Legal entity: not assessed" in summary
    assert "Claim this request" not in summary and "Assess the criteria" in summary and "Decide" in summary
    assert '<details class="case-section mb-2" id="criteria-section" open>' in page
    codes = codes_on(page)
    assert "STATE_LICENCE" in codes and "ADVERTISER_STANDARDS" not in codes
    # Every field has its own id and a label that names its criterion.
    assert_unique_ids(page)
    assert re.search(r'<label class="small font-weight-bold mb-0" for="assess-STATE_LICENCE-note">Note'
                     r'<span class="sr-only"> of STATE_LICENCE</span></label>', page)

    before = events(session)
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        code: {"status": "met", "note": f"{code} checked against the source", "source": "research team"}
        for code in codes}))
    assert response.status_code == 302
    assert sorted(session.scalars(select(AuditEvent.reason).where(AuditEvent.action == "assessment.recorded"))) \
        == sorted(codes)
    assert events(session) == before + len(codes)

    page = client.get(case_url).get_data(as_text=True)
    assert f"{len(codes)} criteria assessed" in visible_text(page)
    assert "Every required criterion is met." in section(page, "summary")
    response = client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "approved",
                                                       "provider_note": "Listed: welcome."})
    assert response.status_code == 302
    page = client.get(case_url).get_data(as_text=True)
    assert section(page, "final-decision").startswith("approved\nby ")
    assert "Decided." in section(page, "summary")
    assert audit.verify_chain(session).ok


def test_a_second_post_records_only_what_changed(client, session, world):
    submission = in_review(session, world["researcher"], submitted(session, world["member"], world["provider"]))
    login(client, world["researcher"])
    case_url = f"/admin/review/case/{submission.id}"
    page = client.get(case_url).get_data(as_text=True)
    client.post(f"{case_url}/assess", data=assessment_post(page, {
        "LEGAL_ENTITY": {"status": "met", "note": "SCC record"}, "STATE_LICENCE": {"status": "met", "note": "L-1"}}))
    page = client.get(case_url).get_data(as_text=True)
    before = events(session)
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        "STATE_LICENCE": {"status": "not_met", "note": "L-1 expired last month"}}))
    assert response.status_code == 302
    assert events(session) == before + 1
    assert session.scalar(select(AuditEvent.reason).order_by(AuditEvent.seq.desc()).limit(1)) == "STATE_LICENCE"
    page = client.get(case_url).get_data(as_text=True)
    assert client.post(f"{case_url}/assess", data=assessment_post(page, {})).status_code == 302
    assert events(session) == before + 1
    assert "No assessment was changed." in client.get(case_url).get_data(as_text=True)


def test_a_refused_assessment_post_keeps_everything_typed_and_changes_nothing(client, session, world):
    submission = in_review(session, world["researcher"], submitted(session, world["member"], world["provider"]))
    login(client, world["researcher"])
    case_url = f"/admin/review/case/{submission.id}"
    page = client.get(case_url).get_data(as_text=True)
    before = events(session)
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        "LEGAL_ENTITY": {"status": "met", "note": "Registered with the SCC since 2011", "source": "SCC"},
        "STATE_LICENCE": {"status": "met", "note": "Licence 123 on the board register",
                          "url": "ftp://board.example.gov/licence/123"},
        "NPI_ACTIVE": {"status": "not_met", "note": "NPPES shows the NPI deactivated"}}))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    banner = section(page, "refusal")
    assert "Nothing was assessed: STATE_LICENCE was refused." in banner
    assert "STATE_LICENCE, URL: Enter an http or https address." in banner
    assert 'href="#assess-STATE_LICENCE-url" id="refusal-link"' in page
    assert "Enter an http or https address." in section(page, "criterion-STATE_LICENCE")
    for typed in ("Registered with the SCC since 2011</textarea>", 'value="SCC"',
                  "Licence 123 on the board register</textarea>", 'value="ftp://board.example.gov/licence/123"',
                  "NPPES shows the NPI deactivated</textarea>"):
        assert typed in page, typed
    npi = page[page.index('id="assess-NPI_ACTIVE-status"'):]
    assert re.search(r'<option selected value="not_met">', npi[:npi.index("</select>")])
    assert events(session) == before
    assert session.scalar(select(func.count()).select_from(Assessment)) == 0


def test_an_advertiser_application_starts_from_the_decision_in_force_and_a_lead_signs_it_off(
        client, session, listed):
    application = submitted(session, listed["member"], listed["provider"], SubmissionKind.ADVERTISER_APPLICATION, {})
    login(client, listed["researcher"])
    case_url = f"/admin/review/case/{application.id}"
    page = client.get(case_url).get_data(as_text=True)
    assert client.post(f"{case_url}/claim", data={"version": version(page)}).status_code == 302

    earlier = {a.criterion.code: a for a in listed["listing"].assessments}
    carried = {a.criterion.code: a for a in session.scalars(select(Assessment).where(
        Assessment.submission_id == application.id))}
    assert set(carried) == set(earlier)  # ADVERTISER_STANDARDS was never assessed: nothing to carry
    for code, assessment in carried.items():
        assert assessment.carried_from_id == earlier[code].id and assessment.assessed_by_id is None
        assert assessment.status == earlier[code].status and assessment.note == earlier[code].note
    assert events(session, "assessment.carried_over") == len(carried)

    page = client.get(case_url).get_data(as_text=True)
    assert_unique_ids(page)
    summary = section(page, "summary")
    assert "Licence: carried over, not confirmed" in summary
    assert "Advertiser standards: not assessed" in summary
    card = section(page, "criterion-STATE_LICENCE")
    assert "Carried over from the decision of" in card and "evidence source: test; note: “checked STATE_LICENCE”" in card
    refused = client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "approved"})
    assert refused.status_code == 400
    assert "Confirm or change each assessment carried over from the decision in force first" in visible_text(
        refused.get_data(as_text=True))

    before = events(session)
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        **{code: {"confirm": "y"} for code in carried},
        "ADVERTISER_STANDARDS": {"status": "met", "note": "Accredited, no open finding, claims accurate"}}))
    assert response.status_code == 302, section(response.get_data(as_text=True), "refusal")
    assert events(session, "assessment.confirmed") == len(carried)
    assert events(session) == before + len(carried) + 1
    session.expire_all()
    assert all(a.assessed_by_id == listed["researcher"].id for a in session.scalars(
        select(Assessment).where(Assessment.submission_id == application.id)))

    page = client.get(case_url).get_data(as_text=True)
    assert "Every required criterion is met." in section(page, "summary")
    assert client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "approved"}).status_code == 302
    page = client.get(case_url).get_data(as_text=True)
    assert "awaiting a second sign-off" in section(page, "pending-decision")
    assert "Sign off this decision" not in page  # nobody signs off their own decision

    client.post("/logout")
    login(client, listed["lead"])
    waiting = client.get("/admin/review/?view=signoff").get_data(as_text=True)
    assert f'href="/admin/review/case/{application.id}"' in waiting
    page = client.get(case_url).get_data(as_text=True)
    assert_unique_ids(page)
    assert "Sign off this decision (approved)" in section(page, "summary")
    assert client.post(f"{case_url}/sign-off", data={"version": version(page)}).status_code == 302
    session.expire_all()
    assert session.get(Provider, listed["provider"].id).advertising_status == AdvertisingStatus.ACTIVE
    assert application.state == SubmissionState.APPROVED
    assert audit.verify_chain(session).ok


def test_an_update_is_decided_with_its_carried_over_assessments_confirmed_or_changed(client, session, listed):
    update = submitted(session, listed["member"], listed["provider"], SubmissionKind.UPDATE,
                       {"public_name": listed["provider"].public_name, "phone": "540-555-0123"})
    login(client, listed["researcher"])
    case_url = f"/admin/review/case/{update.id}"
    page = client.get(case_url).get_data(as_text=True)
    client.post(f"{case_url}/claim", data={"version": version(page)})
    page = client.get(case_url).get_data(as_text=True)
    assert "Change the listing of Shenandoah Valley Recovery." in section(page, "summary")
    codes = codes_on(page)
    assert 'id="assess-CONTACT_CONFIRMED-confirm"' in page
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        **{code: {"confirm": "y"} for code in codes if code != "CONTACT_CONFIRMED"},
        "CONTACT_CONFIRMED": {"status": "met", "note": "Called the new number 540-555-0123: admissions answered"}}))
    assert response.status_code == 302
    changed = session.scalar(select(Assessment).join(Criterion).where(
        Assessment.submission_id == update.id, Criterion.code == "CONTACT_CONFIRMED"))
    assert changed.carried_from_id is None and changed.assessed_by_id == listed["researcher"].id
    page = client.get(case_url).get_data(as_text=True)
    assert client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "approved"}).status_code == 302
    session.expire_all()
    assert update.state == SubmissionState.APPROVED
    assert session.get(Provider, listed["provider"].id).phone == "540-555-0123"


def test_an_unconfirmed_carried_over_assessment_never_counts_as_met(client, session, listed):
    application = in_review(session, listed["researcher"], submitted(
        session, listed["member"], listed["provider"], SubmissionKind.ADVERTISER_APPLICATION, {}))
    assert {c.code for c in review.approval_blockers(session, application)} == {
        c.code for c in review.applicable_criteria(session, application) if review.is_required(c, application)}
    login(client, listed["researcher"])
    case_url = f"/admin/review/case/{application.id}"
    page = client.get(case_url).get_data(as_text=True)
    codes = [c for c in codes_on(page) if c not in ("ADVERTISER_STANDARDS", "NOT_EXCLUDED")]
    client.post(f"{case_url}/assess", data=assessment_post(page, {
        **{code: {"confirm": "y"} for code in codes},
        "ADVERTISER_STANDARDS": {"status": "met", "note": "Accredited, no open finding"}}))
    session.expire_all()
    assert [c.code for c in review.approval_blockers(session, application)] == ["NOT_EXCLUDED"]
    page = client.get(case_url).get_data(as_text=True)
    summary = section(page, "summary")
    assert "Not excluded: carried over, not confirmed" in summary and "Licence" not in summary
    before = events(session)
    response = client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "approved"})
    assert response.status_code == 400
    assert "NOT_EXCLUDED" in visible_text(response.get_data(as_text=True))
    assert events(session) == before and not review.pending_decision(application)


def test_evidence_older_than_the_freshness_limit_cannot_be_confirmed(client, session, listed):
    listed["listing"].assessments[0].criterion.freshness_days = 365
    legal = next(a for a in listed["listing"].assessments if a.criterion.code == "LEGAL_ENTITY")
    legal.criterion.freshness_days = 365
    legal.assessed_at = utcnow() - timedelta(days=400)
    session.commit()
    application = in_review(session, listed["researcher"], submitted(
        session, listed["member"], listed["provider"], SubmissionKind.ADVERTISER_APPLICATION, {}))
    login(client, listed["researcher"])
    case_url = f"/admin/review/case/{application.id}"
    page = client.get(case_url).get_data(as_text=True)
    summary = section(page, "summary")
    assert re.search(r"Legal entity: evidence from \d+ \w+ \d{4} is older than 365 days: assess again", summary), summary
    assert "is older than 365 days: assess again" in section(page, "criterion-LEGAL_ENTITY")

    before = events(session)
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        "LEGAL_ENTITY": {"confirm": "y"}, "STATE_LICENCE": {"confirm": "y"}}))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    banner = section(page, "refusal")
    assert "Nothing was assessed: LEGAL_ENTITY was refused." in banner
    assert "older than the 365 days this criterion allows: assess it again." in banner
    assert events(session) == before
    session.expire_all()
    assert all(a.assessed_at is None for a in session.scalars(
        select(Assessment).where(Assessment.submission_id == application.id)))

    response = client.post(f"{case_url}/assess", data=assessment_post(client.get(case_url).get_data(as_text=True), {
        "LEGAL_ENTITY": {"status": "met", "note": "SCC record looked up again today"}}))
    assert response.status_code == 302
    assert events(session, "assessment.recorded") >= 1
    page = client.get(case_url).get_data(as_text=True)
    assert "Legal entity" not in section(page, "summary")


def test_a_check_result_older_than_the_freshness_limit_is_not_evidence_and_an_open_warning_is_named(
        client, session, world):
    submission = in_review(session, world["researcher"], submitted(session, world["member"], world["provider"]))
    npi = next(c for c in review.applicable_criteria(session, submission) if c.code == "NPI_ACTIVE")
    npi.freshness_days = 30
    old = CheckRun(provider_id=world["provider"].id, check=CheckKind.NPI, outcome=CheckOutcome.PASS,
                   summary="NPI active, name and address match", started_at=utcnow() - timedelta(days=45))
    session.add(old)
    session.add(Finding(provider_id=world["provider"].id, check=CheckKind.NPI, subject_key="npi",
                        severity=FindingSeverity.WARNING, title="NPI address differs", opened_at=utcnow()))
    session.commit()
    login(client, world["researcher"])
    case_url = f"/admin/review/case/{submission.id}"
    page = client.get(case_url).get_data(as_text=True)
    assert "NPI active: open warning" in section(page, "summary")
    assert "1 open, the worst warning" in section(page, "summary")
    before = events(session)
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        "NPI_ACTIVE": {"status": "met", "check_run_id": str(old.id)}}))
    assert response.status_code == 400
    assert "older than the 30 days this criterion allows" in section(response.get_data(as_text=True), "refusal")
    assert events(session) == before
