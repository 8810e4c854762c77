"""The research team is told what waits for them, as each person chose: at once, in a daily digest, or not at all;
every staff page shows what waits for the signed-in person."""
from __future__ import annotations

import email
import email.policy
from pathlib import Path

from sqlalchemy import select

from backoffice.models import (
    AssessmentStatus,
    AuditEvent,
    CheckKind,
    DecisionOutcome,
    FindingSeverity,
    NoticeMode,
    Notification,
    Role,
    StaffDigestItem,
    SubmissionKind,
)
from backoffice.services import findings, review, staff_notices
from backoffice.services.review import Evidence
from tests.conftest import login
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted


def notes(session, kind: str) -> list[Notification]:
    session.expire_all()
    return list(session.scalars(select(Notification).where(Notification.kind == kind).order_by(Notification.id)))


def deliver(app) -> None:
    from tasks.sweeps import deliver_notifications

    with app.app_context():
        deliver_notifications.apply().get()


def eml(app, note: Notification) -> email.message.EmailMessage:
    path = Path(app.config["OUTBOX_FOLDER"]) / f"{note.id:08d}-{note.kind}.eml"
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_a_submission_tells_every_researcher_while_nobody_has_it_and_then_only_the_assignee(
        app, session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Harbor Recovery")
    member = provider_member(session, make_account, provider)
    first, second = make_account(Role.RESEARCHER), make_account(Role.RESEARCHER)
    lead = make_account(Role.RESEARCH_LEAD)
    submission = submitted(session, member, provider)
    told = notes(session, "staff_provider_answered")
    assert sorted(n.recipient_email for n in told) == sorted([first.email, second.email])
    assert lead.email not in {n.recipient_email for n in told} and member.email not in {n.recipient_email for n in told}
    assert told[0].subject == f"Harbor Recovery: request #{submission.id} submitted (new listing)"
    assert told[0].link == f"/admin/review/case/{submission.id}"

    in_review(session, first, submission)
    review.request_info(session, first, submission, "Which licence covers the site?", None)
    session.commit()
    review.answer_info_request(session, member, submission, "VA-123, attached.")
    session.commit()
    answered = notes(session, "staff_provider_answered")[2:]
    assert [n.recipient_email for n in answered] == [first.email]
    assert answered[0].subject == f"Harbor Recovery answered your question on request #{submission.id}"
    assert "VA-123" not in answered[0].body, "what a provider typed is read on the case page, not in mail"

    deliver(app)
    message = eml(app, answered[0])
    assert f"http://localhost/admin/review/case/{submission.id}" in message.get_body(("plain",)).get_content()


def test_a_decision_awaiting_sign_off_tells_the_other_research_leads(app, session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Harbor Recovery")
    member = provider_member(session, make_account, provider)
    deciding, other, retired = (make_account(Role.RESEARCH_LEAD) for _ in range(3))
    retired.is_active = False
    researcher = make_account(Role.RESEARCHER)
    session.commit()
    submission = submitted(session, member, provider, kind=SubmissionKind.REINSTATEMENT)
    in_review(session, deciding, submission)
    assess_all(session, deciding, submission)
    review.decide(session, deciding, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    waiting = notes(session, "staff_signoff_waiting")
    assert [n.recipient_email for n in waiting] == [other.email]
    assert researcher.email not in {n.recipient_email for n in waiting}
    assert waiting[0].subject == f"Harbor Recovery: a decision on request #{submission.id} awaits your sign-off"


def test_a_critical_finding_tells_the_assignee_of_the_open_request(app, session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Harbor Recovery")
    member = provider_member(session, make_account, provider)
    holder, other = make_account(Role.RESEARCHER), make_account(Role.RESEARCHER)
    submission = in_review(session, holder, submitted(session, member, provider))
    finding, new = findings.open_or_update(session, "system:test", provider, CheckKind.EXCLUSION, "oig:1",
                                           FindingSeverity.CRITICAL, "Principal on the OIG exclusion list", {})
    session.commit()
    told = notes(session, "staff_critical_finding")
    assert new and [n.recipient_email for n in told] == [holder.email]
    assert told[0].subject == "Harbor Recovery: critical finding: Principal on the OIG exclusion list"
    assert told[0].link == f"/admin/review/provider/{provider.id}"
    findings.open_or_update(session, "system:test", provider, CheckKind.EXCLUSION, "oig:1",
                            FindingSeverity.CRITICAL, "Principal on the OIG exclusion list", {"again": True})
    session.commit()
    assert len(notes(session, "staff_critical_finding")) == 1, "seen again is not a new alarm"
    findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, "site", FindingSeverity.WARNING,
                            "Website moved", {})
    session.commit()
    assert len(notes(session, "staff_critical_finding")) == 1, "only critical findings are told"
    assert other.email not in {n.recipient_email for n in notes(session, "staff_critical_finding")}
    assert submission.assignee_id == holder.id


def test_nobody_gets_what_their_choice_turns_off_and_a_digest_gathers_the_rest_once(
        app, session, make_account, make_provider):
    publish_catalogue(session)
    off, daily, now = (make_account(Role.RESEARCHER) for _ in range(3))
    staff_notices.set_preferences(session, off, {"provider_answered": NoticeMode.OFF})
    staff_notices.set_preferences(session, daily, {"provider_answered": NoticeMode.DAILY})
    session.commit()
    for name in ("Harbor Recovery", "Bay Clinic"):
        provider = make_provider(public_name=name)
        submitted(session, provider_member(session, make_account, provider), provider)
    told = notes(session, "staff_provider_answered")
    assert {n.recipient_email for n in told} == {now.email}
    assert len(told) == 2
    waiting = session.scalars(select(StaffDigestItem).where(StaffDigestItem.account_id == daily.id)).all()
    assert len(waiting) == 2 and off.id not in {i.account_id for i in session.scalars(select(StaffDigestItem))}

    from tasks.sweeps import staff_digest

    with app.app_context():
        assert staff_digest.apply().get() == 1
        assert staff_digest.apply().get() == 0, "a notice goes into one digest only"
    [digest] = notes(session, "staff_digest")
    assert digest.recipient_email == daily.email and digest.subject == "Your daily digest: 2 items"
    assert "- Harbor Recovery: request #" in digest.body and "- Bay Clinic: request #" in digest.body
    assert digest.body.count("  http://localhost/admin/review/case/") == 2, "each item links to its case"
    changed = session.scalars(select(AuditEvent).where(AuditEvent.action == "account.notice_preferences_changed")
                              ).all()
    assert {e.entity_id for e in changed} == {str(off.id), str(daily.id)}


def test_the_notifications_page_saves_choices_and_refuses_a_value_it_does_not_offer(
        app, session, make_account):
    researcher = make_account(Role.RESEARCHER)
    client = app.test_client()
    login(client, researcher)
    page = client.get("/admin/notifications/").get_data(as_text=True)
    assert "A provider submits a request or answers a question" in page and "in the daily digest" in page
    saved = client.post("/admin/notifications/", data={"provider_answered": "daily", "signoff_waiting": "off",
                                                         "critical_finding": "immediately"}, follow_redirects=True)
    assert "Your notification choices are saved." in saved.get_data(as_text=True)
    session.expire_all()
    assert staff_notices.preferences(session, researcher) == {
        "provider_answered": NoticeMode.DAILY, "signoff_waiting": NoticeMode.OFF,
        "critical_finding": NoticeMode.IMMEDIATELY}
    refused = client.post("/admin/notifications/", data={"provider_answered": "hourly", "signoff_waiting": "off",
                                                           "critical_finding": "immediately"})
    assert refused.status_code == 400
    assert "Your choices were not saved." in refused.get_data(as_text=True)
    session.expire_all()
    assert staff_notices.preferences(session, researcher)["provider_answered"] == NoticeMode.DAILY
    for role in (Role.AUDITOR, Role.ADMIN, Role.PROVIDER):
        other = app.test_client()
        login(other, make_account(role))
        assert other.get("/admin/notifications/").status_code == 403


def test_every_staff_page_shows_what_waits_for_the_signed_in_person(app, session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Harbor Recovery")
    member = provider_member(session, make_account, provider)
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)
    submission = in_review(session, researcher, submitted(session, member, provider))
    review.request_info(session, researcher, submission, "Which licence?", None)
    session.commit()
    review.answer_info_request(session, member, submission, "VA-123.")
    session.commit()
    findings.open_or_update(session, "system:test", provider, CheckKind.EXCLUSION, "oig:1",
                            FindingSeverity.CRITICAL, "Principal excluded", {})
    session.commit()
    other = make_provider(public_name="Bay Clinic")
    reinstatement = in_review(session, lead, submitted(session, provider_member(session, make_account, other), other,
                                                       kind=SubmissionKind.REINSTATEMENT))
    assess_all(session, lead, reinstatement)
    review.record_assessment(session, lead, reinstatement, "CONTACT_CONFIRMED", AssessmentStatus.MET,
                             Evidence(note="called"), None)
    session.commit()
    review.decide(session, lead, reinstatement, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    second_lead = make_account(Role.RESEARCH_LEAD)

    client = app.test_client()
    login(client, researcher)
    for path in ("/admin/", "/admin/review/", "/admin/mail/"):
        page = client.get(path).get_data(as_text=True)
        assert 'id="my-work"' in page and ">2</span>" in page.split('id="my-work"')[1][:600], path
    lead_client = app.test_client()
    login(lead_client, second_lead)
    page = lead_client.get("/admin/").get_data(as_text=True)
    assert "1 awaiting your sign-off" in page.split('id="my-work"')[1][:600]
    auditor = app.test_client()
    login(auditor, make_account(Role.AUDITOR))
    assert 'id="my-work"' not in auditor.get("/admin/").get_data(as_text=True)
