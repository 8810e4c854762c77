"""The re-verification cycle: the daily sweep opens one request per verification period, the provider is told what
to confirm, the research team reviews it with carried-over assessments, and approval renews the verification; an
unanswered one lets it lapse as before."""
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

import config
from backoffice.models import (
    AuditEvent,
    DecisionOutcome,
    Notification,
    Provider,
    Reverification,
    ReverificationCause,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, expiry, listing_requests, reverification, review
from backoffice.services.errors import DomainError, InvalidTransition
from backoffice.services.review import ReviewPolicy
from backoffice.zones import day_text
from tasks.sweeps import open_reverifications, reverification_sweep
from tests.conftest import login
from tests.page_text import visible_text
from tests.portal_helpers import latest_mail, provider_with_draft, reload, submit_data
from tests.review_helpers import assess_all, in_review, publish_catalogue

SHORT = ReviewPolicy(verification_validity_days=50)  # inside the 60-day lead time from the start
YEAR = ReviewPolicy()


def verified_through_portal(session, make_account, client, policy=YEAR, **form):
    """A provider listed through the portal and approved under `policy`; its account signed in on `client`."""
    account, provider, draft = provider_with_draft(session, make_account, client)
    assert client.post(f"/portal/requests/{draft.id}/edit", data=submit_data(**form)).status_code == 302
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    assess_all(session, researcher, submission)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", policy, None)
    session.commit()
    session.expire_all()
    return account, session.get(Provider, provider.id), researcher


def on_day(moment) -> str:
    """The day as a Virginia organisation reads it (its first location's state's zone)."""
    return day_text(moment.astimezone(ZoneInfo("America/New_York")).date())


def reverifications(session, provider_id=None):
    query = select(Submission).where(Submission.kind == SubmissionKind.REVERIFICATION).order_by(Submission.id)
    if provider_id is not None:
        query = query.where(Submission.provider_id == provider_id)
    session.expire_all()
    return session.scalars(query).all()


def test_the_sweep_opens_one_request_once_reaches_the_provider_and_approval_renews_verification(
        session, make_account, client):
    publish_catalogue(session)
    account, provider, researcher = verified_through_portal(session, make_account, client, SHORT)
    ends = provider.verified_until
    first_decision = provider.verified_decision_id

    assert reverification_sweep() == 1
    assert reverification_sweep() == 0  # a second sweep opens nothing new
    [opened] = reverifications(session, provider.id)
    assert opened.state == SubmissionState.DRAFT and opened.created_by_id is None
    assert opened.proposed["phone"] == provider.phone  # pre-filled from the listing in force
    record = session.get(Reverification, opened.id)
    assert (record.cause, record.respond_by, record.renews_until) == (ReverificationCause.DUE, ends, ends)

    mail = latest_mail(session, account.email, "reverification_opened")
    deadline = on_day(ends)
    assert mail.subject == f"{provider.public_name}: confirm your listing by {deadline} to stay verified"
    assert f"Your verification runs until {deadline}." in mail.body
    assert f"Please submit it by {deadline}." in mail.body
    assert "- VA licence L-123: current until" in mail.body
    assert "- Sign the attestation again: no referral fees, no lead generation, no patient brokering." in mail.body
    assert mail.link == f"/portal/requests/{opened.id}"

    page = visible_text(client.get(f"/portal/requests/{opened.id}").get_data(as_text=True))
    assert "Request #%d: re-verification" % opened.id in page
    assert "Re-verification: verification ends soon" in page
    assert f"Submit it by {deadline}." in page
    assert "Confirm that your 1 location is still where you treat people." in page
    organisation = visible_text(client.get(f"/portal/organisations/{provider.id}").get_data(as_text=True))
    assert f"Request\n#{opened.id} (re-verification)\nis draft." in organisation
    assert f"submit the request by {deadline}" in organisation
    edit = visible_text(client.get(f"/portal/requests/{opened.id}/edit").get_data(as_text=True))
    assert f"Re-verification of your listing #{opened.id} (draft)" in edit

    # The provider updates its phone and submits; the research team reviews it from the decision in force.
    answered = client.post(f"/portal/requests/{opened.id}/edit", data=submit_data(phone="(434) 296-9999"))
    assert answered.status_code == 302, answered.get_data(as_text=True)
    submission = in_review(session, researcher, reload(session, opened))
    carried = review.unconfirmed_codes(submission)
    assert carried and "STATE_LICENCE" in carried
    with pytest.raises(DomainError, match="Confirm or change each assessment carried over"):
        review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", YEAR, None)
    session.rollback()
    submission = reload(session, submission)
    for code in carried:
        review.confirm_assessment(session, researcher, submission, code, None)
    decision = review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", YEAR, None)
    session.commit()

    provider = session.get(Provider, provider.id)
    assert provider.verification_status == VerificationStatus.VERIFIED
    assert provider.verified_decision_id == decision.id != first_decision
    assert provider.verified_until > ends + timedelta(days=300)  # a year from now, not 50 days
    assert provider.phone == "+1 434-296-9999"
    assert "was approved" in latest_mail(session, account.email, "decided").body
    assert reverification_sweep() == 0  # renewed: nothing is due for a year
    assert audit.verify_chain(session).ok


def test_with_the_clock_moved_it_opens_once_and_an_unanswered_one_lets_verification_lapse(
        session, make_account, client):
    publish_catalogue(session)
    account, provider, _ = verified_through_portal(session, make_account, client)
    ends = provider.verified_until
    now = utcnow()

    assert open_reverifications(now) == 0  # a year away: nothing due yet
    assert open_reverifications(ends - timedelta(days=61)) == 0
    assert open_reverifications(ends - timedelta(days=59)) == 1
    assert open_reverifications(ends - timedelta(days=30)) == 0  # the same period: not twice
    [opened] = reverifications(session, provider.id)
    assert session.scalar(select(func.count()).select_from(Notification).where(
        Notification.kind == "reverification_opened")) == 1

    # Nobody answers: the hourly expiry sweep lapses the verification at verified_until, as before.
    assert expiry.expire_lapsed(session, "system:test", ends + timedelta(hours=1)) == 1
    session.commit()
    provider = session.get(Provider, provider.id)
    assert provider.verification_status == VerificationStatus.EXPIRED
    assert reload(session, opened).state == SubmissionState.DRAFT  # still there to answer
    assert open_reverifications(ends + timedelta(hours=2)) == 0  # not verified: nothing opens
    organisation = visible_text(client.get(f"/portal/organisations/{provider.id}").get_data(as_text=True))
    assert "expired" in organisation.lower()


def test_a_withdrawn_reverification_is_not_opened_again_for_the_same_period(session, make_account, client):
    publish_catalogue(session)
    account, provider, _ = verified_through_portal(session, make_account, client, SHORT)
    assert reverification_sweep() == 1
    [opened] = reverifications(session, provider.id)
    listing_requests.withdraw(session, account, opened, "we will send an update instead")
    session.commit()
    assert reverification_sweep() == 0
    assert len(reverifications(session, provider.id)) == 1


def test_a_provider_with_an_update_open_gets_no_second_request(session, make_account, client):
    publish_catalogue(session)
    account, provider, _ = verified_through_portal(session, make_account, client, SHORT)
    update = listing_requests.start_listing_request(session, account, provider)
    session.commit()
    assert reverification_sweep() == 0
    assert reverifications(session, provider.id) == []
    # ...and once one is open, the provider cannot start another listing request beside it.
    listing_requests.withdraw(session, account, update)
    session.commit()
    assert reverification_sweep() == 1
    with pytest.raises(InvalidTransition, match=r"Request #\d+ is still draft: finish or withdraw it"):
        listing_requests.start_listing_request(session, account, session.get(Provider, provider.id))


def test_open_for_refuses_an_unverified_provider_or_a_past_deadline_and_changes_nothing(session, make_provider,
                                                                                          make_account, client):
    publish_catalogue(session)
    unverified = make_provider()
    lead = make_account(Role.RESEARCH_LEAD)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(InvalidTransition, match=f"Only a verified, listed provider is re-verified; "
                                                f"{unverified.public_name} is unlisted with its verification unverified."):
        reverification.open_for(session, lead, unverified, reason="Criteria changed.",
                                respond_by=utcnow() + timedelta(days=30))
    session.rollback()
    _, provider, _ = verified_through_portal(session, make_account, client)
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    with pytest.raises(DomainError, match=r"The deadline \(.*\) must be in the future."):
        reverification.open_for(session, lead, provider, reason="Criteria changed.",
                                respond_by=utcnow() - timedelta(days=1))
    session.rollback()
    with pytest.raises(DomainError, match="Say why the provider is asked to re-verify."):
        reverification.open_for(session, lead, provider, reason="  ", respond_by=utcnow() + timedelta(days=1))
    session.rollback()
    assert reverifications(session) == []
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events

    first = reverification.open_for(session, lead, provider, reason="Criteria changed.",
                                    respond_by=utcnow() + timedelta(days=30), cause=ReverificationCause.CRITERIA)
    session.commit()
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    assert reverification.open_for(session, lead, provider, reason="Again.",
                                   respond_by=utcnow() + timedelta(days=30)) is None
    session.commit()
    assert [s.id for s in reverifications(session)] == [first.id]
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_the_queue_shows_reverifications_apart_and_the_case_page_says_why(session, make_account, client):
    publish_catalogue(session)
    account, provider, _ = verified_through_portal(session, make_account, client, SHORT)
    assert reverification_sweep() == 1
    [opened] = reverifications(session, provider.id)
    assert client.post(f"/portal/requests/{opened.id}/edit", data=submit_data()).status_code == 302
    other_account, other, draft = provider_with_draft(session, make_account, legal_name="Bayside Clinic LLC",
                                                      public_name="Bayside Clinic")
    review.submit(session, other_account, reload(session, draft), YEAR)
    session.commit()

    client.get("/logout")
    researcher = make_account(Role.RESEARCHER)
    assert login(client, researcher).status_code == 302
    every = visible_text(client.get("/admin/review/").get_data(as_text=True))
    assert "Bayside Clinic" in every and provider.public_name in every
    apart = visible_text(client.get("/admin/review/?view=reverification").get_data(as_text=True))
    ends = on_day(provider.verified_until)
    assert "1 open request in Re-verifications" in apart
    assert f"Re-verification: verification ends {ends}" in apart
    assert "Bayside Clinic" not in apart

    case = visible_text(client.get(f"/admin/review/case/{opened.id}").get_data(as_text=True))
    assert f"Renew the verification of {provider.public_name} (ends {ends}): the provider confirms or updates" in case
    assert f"Why it was opened\nVerification ends soon: Your verification runs until {ends}." in case
    assert f"The provider was asked to submit it by {ends}." in case


def test_a_lead_time_as_long_as_the_validity_is_refused():
    with pytest.raises(config.SettingsError, match="REVERIFICATION_LEAD_DAYS 365 is not shorter than "
                       "VERIFICATION_VALIDITY_DAYS 365: every approval would open the next re-verification at once"):
        config.load("testing", {"REVERIFICATION_LEAD_DAYS": 365, "VERIFICATION_VALIDITY_DAYS": 365})
