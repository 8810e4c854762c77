"""The rules of the research review, each enforced by the services."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice.extensions import db
from backoffice.models import (
    Account,
    AdvertisingStatus,
    AssessmentStatus,
    AuditEvent,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ListingStatus,
    Notification,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, review, sla
from backoffice.services.errors import Conflict, DomainError, InvalidTransition, NotAllowed
from backoffice.services.review import Evidence
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted


@pytest.fixture
def setting(session, make_account, make_provider):
    """A published catalogue, a provider with a member account, a researcher and a lead."""
    catalogue = publish_catalogue(session)
    provider = make_provider()
    return {
        "catalogue": catalogue,
        "provider": provider,
        "member": provider_member(session, make_account, provider),
        "researcher": make_account(Role.RESEARCHER),
        "other": make_account(Role.RESEARCHER),
        "lead": make_account(Role.RESEARCH_LEAD),
    }


def reviewed(session, s, kind=SubmissionKind.NEW_LISTING, proposed=None):
    submission = submitted(session, s["member"], s["provider"], kind, proposed)
    return in_review(session, s["researcher"], submission)


def listed(session, provider, advertising=AdvertisingStatus.NONE):
    """Put the provider in the state the test starts from: listed, verified for 100 more days."""
    provider.verification_status = VerificationStatus.VERIFIED
    provider.verified_until = utcnow() + timedelta(days=100)
    provider.listing_status = ListingStatus.LISTED
    provider.advertising_status = advertising
    session.commit()
    return provider


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_approval_lists_and_verifies_under_the_catalogue_version(session, setting):
    submission = reviewed(session, setting)
    assess_all(session, setting["researcher"], submission)
    decision = review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [],
                             "Welcome to the directory.", "all checks clean", POLICY, submission.row_version)
    session.commit()
    provider = session.get(Provider, setting["provider"].id)
    assert submission.state == SubmissionState.APPROVED
    assert decision.status == DecisionStatus.FINAL and decision.catalogue_id == setting["catalogue"].id
    assert provider.verification_status == VerificationStatus.VERIFIED
    assert provider.listing_status == ListingStatus.LISTED
    assert provider.verified_catalogue_id == setting["catalogue"].id
    assert abs(provider.verified_until - (utcnow() + timedelta(days=365))) < timedelta(minutes=1)
    assert audit.verify_chain(session).ok


def test_approval_is_refused_while_any_required_criterion_is_not_met(session, setting):
    submission = reviewed(session, setting)
    assess_all(session, setting["researcher"], submission, except_codes={"CONTACT_CONFIRMED"})
    with pytest.raises(DomainError, match="CONTACT_CONFIRMED"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.rollback()
    review.record_assessment(session, setting["researcher"], submission, "CONTACT_CONFIRMED",
                             AssessmentStatus.NOT_APPLICABLE, Evidence(note="no phone"), None)
    session.commit()
    with pytest.raises(DomainError, match="CONTACT_CONFIRMED"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.rollback()
    assert count(session, Decision) == 0
    assert session.get(Provider, setting["provider"].id).verification_status == VerificationStatus.UNVERIFIED


def test_optional_criteria_do_not_block_a_listing_but_block_an_advertiser(session, setting):
    submission = reviewed(session, setting)
    assess_all(session, setting["researcher"], submission, except_codes={"ACCREDITATION"})
    assert review.approval_blockers(session, submission) == []
    codes = {c.code for c in review.applicable_criteria(session, submission)}
    assert "ADVERTISER_STANDARDS" not in codes and "PRESCRIBING" not in codes


def test_criteria_apply_by_level_of_care_and_advertising(session, setting):
    otp = reviewed(session, setting, proposed={"levels_of_care": ["otp", "outpatient"]})
    assert "PRESCRIBING" in {c.code for c in review.applicable_criteria(session, otp)}
    setting["provider"].verification_status = VerificationStatus.VERIFIED
    advert = submitted(session, setting["member"], setting["provider"], SubmissionKind.ADVERTISER_APPLICATION)
    in_review(session, setting["researcher"], advert)
    applicable = review.applicable_criteria(session, advert)
    assert "ADVERTISER_STANDARDS" in {c.code for c in applicable}
    accreditation = next(c for c in applicable if c.code == "ACCREDITATION")
    assert review.is_required(accreditation, advert)


def test_rejection_must_cite_criteria_assessed_not_met(session, setting):
    submission = reviewed(session, setting)
    assess_all(session, setting["researcher"], submission, except_codes={"WEBSITE_TRANSPARENT"})
    review.record_assessment(session, setting["researcher"], submission, "WEBSITE_TRANSPARENT",
                             AssessmentStatus.NOT_MET, Evidence(note="site names another company"), None)
    session.commit()
    with pytest.raises(DomainError, match="at least one criterion"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.REJECTED, [], "", "", POLICY, None)
    with pytest.raises(DomainError, match="LEGAL_ENTITY"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.REJECTED,
                      ["LEGAL_ENTITY"], "", "", POLICY, None)
    session.rollback()
    review.decide(session, setting["researcher"], submission, DecisionOutcome.REJECTED, ["WEBSITE_TRANSPARENT"],
                  "Your website must name your organisation.", "looks like a lead-gen site", POLICY, None)
    session.commit()
    assert submission.state == SubmissionState.REJECTED
    note = session.scalars(select(Notification).where(Notification.kind == "decided")).one()
    assert "WEBSITE_TRANSPARENT" in note.body and "must name your organisation" in note.body
    assert "lead-gen" not in note.body
    assert note.recipient_email == setting["member"].email


def _listing_request(session, s, kind, levels):
    """A listing request of this kind for a provider offering these levels of care, claimed for review."""
    provider = s["provider"]
    provider.levels_of_care = levels
    session.commit()
    if kind == SubmissionKind.REINSTATEMENT:
        provider.verification_status = VerificationStatus.REVOKED
        provider.listing_status = ListingStatus.DELISTED
        session.commit()
        submission = review.open_reinstatement(session, s["researcher"], provider, POLICY, "owner changed")
        session.commit()
        return in_review(session, s["researcher"], submission)
    if kind == SubmissionKind.UPDATE:
        listed(session, provider)
    return reviewed(session, s, kind, proposed={"levels_of_care": levels})


@pytest.mark.parametrize("levels", [["outpatient"], ["otp", "outpatient"]], ids=["outpatient", "otp"])
@pytest.mark.parametrize("kind", [SubmissionKind.NEW_LISTING, SubmissionKind.UPDATE, SubmissionKind.REINSTATEMENT],
                         ids=lambda k: k.value)
def test_an_optional_criterion_is_never_the_reason_to_refuse_a_listing(session, setting, kind, levels):
    submission = _listing_request(session, setting, kind, levels)
    assert ("PRESCRIBING" in {c.code for c in review.applicable_criteria(session, submission)}) is ("otp" in levels)
    assess_all(session, setting["researcher"], submission, except_codes={"ACCREDITATION"})
    review.record_assessment(session, setting["researcher"], submission, "ACCREDITATION", AssessmentStatus.NOT_MET,
                             Evidence(note="no current accreditation"), None)
    session.commit()
    events = count(session, AuditEvent)
    with pytest.raises(DomainError, match="ACCREDITATION is optional for a listing: recorded and shown, but never "
                                          "the reason to refuse one") as refused:
        review.decide(session, setting["researcher"], submission, DecisionOutcome.REJECTED, ["ACCREDITATION"],
                      "", "", POLICY, None)
    assert refused.value.field == "reason_codes"
    session.rollback()
    assert count(session, Decision) == 0 and count(session, AuditEvent) == events
    assert session.get(Submission, submission.id).state == SubmissionState.IN_REVIEW
    assert review.rejection_reason_codes(session, submission) == []
    # The centre meets every required criterion, so it can be listed.
    decision = review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "",
                             POLICY, None)
    assert decision.outcome == DecisionOutcome.APPROVED


def test_a_rejection_cites_required_criteria_only_and_an_advertiser_may_cite_accreditation(session, setting):
    submission = reviewed(session, setting, proposed={"levels_of_care": ["otp"]})
    assess_all(session, setting["researcher"], submission, except_codes={"ACCREDITATION", "PRESCRIBING"})
    for code in ("ACCREDITATION", "PRESCRIBING"):
        review.record_assessment(session, setting["researcher"], submission, code, AssessmentStatus.NOT_MET,
                                 Evidence(note=f"{code} not shown"), None)
    session.commit()
    with pytest.raises(DomainError, match="ACCREDITATION is optional"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.REJECTED,
                      ["ACCREDITATION", "PRESCRIBING"], "", "", POLICY, None)
    session.rollback()
    assert review.rejection_reason_codes(session, submission) == ["PRESCRIBING"]
    assert review.optional_not_met_codes(session, submission) == ["ACCREDITATION"]
    decision = review.decide(session, setting["researcher"], submission, DecisionOutcome.REJECTED, ["PRESCRIBING"],
                             "", "", POLICY, None)
    assert decision.reason_codes == ["PRESCRIBING"]
    session.commit()

    listed(session, setting["provider"])
    advert = submitted(session, setting["member"], setting["provider"], SubmissionKind.ADVERTISER_APPLICATION)
    in_review(session, setting["researcher"], advert)
    # ADVERTISER_STANDARDS cannot be met while ACCREDITATION is not: it stays to be assessed.
    assess_all(session, setting["researcher"], advert, except_codes={"ACCREDITATION", "ADVERTISER_STANDARDS"})
    review.record_assessment(session, setting["researcher"], advert, "ACCREDITATION", AssessmentStatus.NOT_MET,
                             Evidence(note="accreditation lapsed"), None)
    session.commit()
    with pytest.raises(DomainError, match="ACCREDITATION is assessed not met"):
        review.record_assessment(session, setting["researcher"], advert, "ADVERTISER_STANDARDS",
                                 AssessmentStatus.MET, Evidence(note="copy checked"), None)
    session.rollback()
    assert review.rejection_reason_codes(session, advert) == ["ACCREDITATION"]
    decision = review.decide(session, setting["researcher"], advert, DecisionOutcome.REJECTED, ["ACCREDITATION"],
                             "", "", POLICY, None)
    assert decision.reason_codes == ["ACCREDITATION"]


@pytest.mark.parametrize("payment, advertising", [
    (["Cash or self-payment"], AdvertisingStatus.NONE),
    ([], AdvertisingStatus.ACTIVE),
    (["Medicaid", "Private health insurance", "Sliding fee scale"], AdvertisingStatus.PENDING),
])
def test_payment_and_advertising_take_no_part_in_the_decision(session, setting, payment, advertising):
    provider = setting["provider"]
    provider.payment_accepted = payment
    if advertising == AdvertisingStatus.ACTIVE:
        provider.verification_status = VerificationStatus.VERIFIED
    provider.advertising_status = advertising
    session.commit()
    submission = reviewed(session, setting, proposed={"payment_accepted": payment})
    assess_all(session, setting["researcher"], submission, except_codes={"NPI_ACTIVE"})
    assert [c.code for c in review.approval_blockers(session, submission)] == ["NPI_ACTIVE"]
    review.record_assessment(session, setting["researcher"], submission, "NPI_ACTIVE", AssessmentStatus.MET,
                             Evidence(note="NPPES active"), None)
    assert review.approval_blockers(session, submission) == []


def test_met_and_not_met_need_evidence_and_not_applicable_needs_a_note(session, setting):
    submission = reviewed(session, setting)
    for status in (AssessmentStatus.MET, AssessmentStatus.NOT_MET, AssessmentStatus.NOT_APPLICABLE):
        with pytest.raises(DomainError):
            review.record_assessment(session, setting["researcher"], submission, "LEGAL_ENTITY", status,
                                     Evidence(), None)
    with pytest.raises(DomainError, match="http or https"):
        review.record_assessment(session, setting["researcher"], submission, "LEGAL_ENTITY", AssessmentStatus.MET,
                                 Evidence(url="javascript:alert(1)"), None)
    with pytest.raises(DomainError, match="not a criterion that applies"):
        review.record_assessment(session, setting["researcher"], submission, "PRESCRIBING", AssessmentStatus.MET,
                                 Evidence(note="x"), None)
    session.rollback()
    assert submission.assessments == []


def test_only_the_assignee_or_a_lead_works_a_claimed_request(session, setting):
    submission = reviewed(session, setting)
    with pytest.raises(NotAllowed, match="Claim this request"):
        review.record_assessment(session, setting["other"], submission, "LEGAL_ENTITY", AssessmentStatus.MET,
                                 Evidence(note="ok"), None)
    with pytest.raises(Conflict, match="already claimed"):
        review.claim(session, setting["other"], submission, None)
    session.rollback()
    review.record_assessment(session, setting["lead"], submission, "LEGAL_ENTITY", AssessmentStatus.MET,
                             Evidence(note="ok"), None)
    review.assign(session, setting["lead"], submission, setting["other"], None)
    session.commit()
    assert submission.assignee_id == setting["other"].id
    with pytest.raises(NotAllowed, match="research lead"):
        review.assign(session, setting["researcher"], submission, setting["researcher"], None)


def test_providers_and_auditors_cannot_review(session, setting, make_account):
    submission = submitted(session, setting["member"], setting["provider"])
    for role in (Role.PROVIDER, Role.AUDITOR, Role.ADMIN):
        with pytest.raises(NotAllowed):
            review.claim(session, make_account(role), submission, None)


def test_request_info_waits_for_the_provider_and_notifies_it(session, setting):
    submission = reviewed(session, setting)
    review.request_info(session, setting["researcher"], submission, "Please upload your current licence.", None)
    session.commit()
    assert submission.state == SubmissionState.NEEDS_INFO
    note = session.scalars(select(Notification).where(Notification.kind == "info_requested")).one()
    assert "current licence" in note.body and note.recipient_email == setting["member"].email
    with pytest.raises(InvalidTransition):
        review.record_assessment(session, setting["researcher"], submission, "LEGAL_ENTITY", AssessmentStatus.MET,
                                 Evidence(note="ok"), None)
    review.answer_info_request(session, setting["member"], submission, "Uploaded.")
    session.commit()
    assert submission.state == SubmissionState.IN_REVIEW
    assert [m.kind.value for m in submission.messages] == ["info_request", "provider_answer"]


def test_a_rolled_back_change_leaves_no_audit_event_and_no_notification(session, setting):
    submission = reviewed(session, setting)
    events, mail = count(session, AuditEvent), count(session, Notification)  # the team was told of the submission
    review.request_info(session, setting["researcher"], submission, "A question", None)
    session.rollback()
    assert count(session, AuditEvent) == events
    assert count(session, Notification) == mail


def test_advertiser_application_needs_a_second_signoff_by_someone_else(session, setting):
    provider = listed(session, setting["provider"], AdvertisingStatus.PENDING)
    submission = reviewed(session, setting, SubmissionKind.ADVERTISER_APPLICATION, proposed={})
    assess_all(session, setting["researcher"], submission)
    decision = review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "",
                             POLICY, None)
    session.commit()
    assert decision.status == DecisionStatus.AWAITING_SIGNOFF
    assert provider.advertising_status == AdvertisingStatus.PENDING
    assert submission.state == SubmissionState.IN_REVIEW
    with pytest.raises(NotAllowed, match="own decision"):
        review.sign_off(session, setting["researcher"], submission, POLICY, None)
    with pytest.raises(InvalidTransition, match="awaiting its second sign-off"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.rollback()
    review.sign_off(session, setting["lead"], submission, POLICY, None)
    session.commit()
    assert submission.state == SubmissionState.APPROVED
    assert provider.advertising_status == AdvertisingStatus.ACTIVE
    assert decision.second_signoff_by_id == setting["lead"].id


def test_an_unverified_provider_cannot_be_approved_to_advertise(session, setting):
    submission = reviewed(session, setting, SubmissionKind.ADVERTISER_APPLICATION, proposed={})
    assess_all(session, setting["researcher"], submission)
    with pytest.raises(DomainError, match="currently verified"):
        review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)


def test_a_declined_signoff_returns_the_request_for_another_decision(session, setting):
    setting["provider"].verification_status = VerificationStatus.REVOKED
    session.commit()
    submission = reviewed(session, setting, SubmissionKind.REINSTATEMENT, proposed={})
    assess_all(session, setting["researcher"], submission)
    review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    with pytest.raises(DomainError, match="why"):
        review.decline_signoff(session, setting["other"], submission, " ", None)
    review.decline_signoff(session, setting["other"], submission, "licence letter is unsigned", None)
    session.commit()
    assert submission.state == SubmissionState.IN_REVIEW
    assert setting["provider"].verification_status == VerificationStatus.REVOKED
    review.decide(session, setting["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    review.sign_off(session, setting["other"], submission, POLICY, None)
    session.commit()
    assert setting["provider"].verification_status == VerificationStatus.VERIFIED
    assert setting["provider"].listing_status == ListingStatus.LISTED
    assert [d.status for d in submission.decisions] == [DecisionStatus.DECLINED, DecisionStatus.FINAL]


def test_revocation_needs_a_second_signoff_and_ends_advertising_with_it(session, setting):
    provider = listed(session, setting["provider"], AdvertisingStatus.ACTIVE)
    action = review.request_revocation(session, setting["researcher"], provider, "confirmed OIG exclusion")
    session.commit()
    assert provider.verification_status == VerificationStatus.VERIFIED
    with pytest.raises(NotAllowed):
        review.sign_off_revocation(session, setting["researcher"], action)
    review.sign_off_revocation(session, setting["lead"], action)
    session.commit()
    assert (provider.verification_status, provider.listing_status, provider.advertising_status) == (
        VerificationStatus.REVOKED, ListingStatus.DELISTED, AdvertisingStatus.SUSPENDED)
    with pytest.raises(InvalidTransition):
        review.sign_off_revocation(session, setting["other"], action)


def test_suspending_a_listing_suspends_its_advertising_at_once(session, setting):
    provider = listed(session, setting["provider"], AdvertisingStatus.ACTIVE)
    with pytest.raises(DomainError, match="reason"):
        review.suspend_listing(session, setting["researcher"], provider, "")
    review.suspend_listing(session, setting["researcher"], provider, "critical finding under review")
    session.commit()
    assert (provider.listing_status, provider.advertising_status) == (ListingStatus.SUSPENDED,
                                                                      AdvertisingStatus.SUSPENDED)


def test_reinstatement_is_a_new_review(session, setting):
    provider = setting["provider"]
    provider.verification_status = VerificationStatus.REVOKED
    provider.listing_status = ListingStatus.DELISTED
    session.commit()
    submission = review.open_reinstatement(session, setting["researcher"], provider, POLICY, "owner changed")
    session.commit()
    assert (submission.kind, submission.state) == (SubmissionKind.REINSTATEMENT, SubmissionState.SUBMITTED)
    with pytest.raises(InvalidTransition, match="already open"):
        review.open_reinstatement(session, setting["researcher"], provider, POLICY, "again")


def test_stale_form_gets_a_conflict_and_writes_nothing(session, setting):
    submission = reviewed(session, setting)
    seen = submission.row_version
    review.record_assessment(session, setting["researcher"], submission, "LEGAL_ENTITY", AssessmentStatus.MET,
                             Evidence(note="registry ok"), seen)
    session.commit()
    events = count(session, AuditEvent)
    with pytest.raises(Conflict, match="Someone else changed"):
        review.record_assessment(session, setting["researcher"], submission, "STATE_LICENCE", AssessmentStatus.MET,
                                 Evidence(note="licence ok"), seen)
    session.rollback()
    assert count(session, AuditEvent) == events
    assert {a.criterion.code for a in submission.assessments} == {"LEGAL_ENTITY"}


def test_two_researchers_deciding_at_once_give_one_decision(app, session, setting):
    """Two real connections: one decision lands, the other gets the conflict message and writes nothing."""
    submission = reviewed(session, setting)
    assess_all(session, setting["researcher"], submission)
    review.assign(session, setting["lead"], submission, setting["researcher"], None)
    session.commit()
    submission_id, researcher_id, lead_id = submission.id, setting["researcher"].id, setting["lead"].id
    first_flushed, second_done = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def decide_as(name, account_id, outcome_value, wait_for=None, signal=None, commit_after=None):
        with app.app_context():
            with Session(db.engine) as own:
                try:
                    sub = own.get(Submission, submission_id)
                    actor = own.get(Account, account_id)
                    sub.assessments, sub.decisions  # noqa: B018 - load before the race
                    if wait_for:
                        wait_for.wait(10)
                    review.decide(own, actor, sub, outcome_value, [], "note", "", POLICY, None)
                    if signal:
                        signal.set()
                    if commit_after:
                        commit_after.wait(10)
                    own.commit()
                    outcomes[name] = "decided"
                except Conflict as exc:
                    own.rollback()
                    outcomes[name] = exc
                finally:
                    if name == "second":
                        second_done.set()

    def first():
        decide_as("first", researcher_id, DecisionOutcome.APPROVED, signal=first_flushed, commit_after=release)

    def second():
        decide_as("second", lead_id, DecisionOutcome.APPROVED, wait_for=first_flushed)

    release = threading.Event()
    t1, t2 = threading.Thread(target=first), threading.Thread(target=second)
    t1.start()
    t2.start()
    first_flushed.wait(10)
    # The second writer is now blocked on the first one's row; let the first commit.
    second_done.wait(1)
    release.set()
    t1.join(30)
    t2.join(30)
    assert outcomes["first"] == "decided"
    assert isinstance(outcomes["second"], Conflict)
    session.expire_all()
    assert count(session, Decision, Decision.submission_id == submission_id) == 1
    assert session.get(Submission, submission_id).state == SubmissionState.APPROVED
    assert audit.verify_chain(session).ok


def test_submitting_sets_due_dates_in_business_days(session, setting):
    submission = submitted(session, setting["member"], setting["provider"])
    assert submission.first_response_due == sla.add_business_days(submission.submitted_at, 2)
    assert submission.decision_due == sla.add_business_days(submission.submitted_at, 10)


@pytest.mark.parametrize("start, days, expected", [
    ("2026-11-27T10:00", 2, "2026-12-01T10:00"),   # Friday + 2 -> Tuesday
    ("2026-11-28T09:30", 1, "2026-12-01T09:30"),   # Saturday counts from Monday: Monday + 1
    ("2026-11-23T08:00", 10, "2026-12-07T08:00"),  # two working weeks
])
def test_business_days(start, days, expected):
    def at(text):
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)

    assert sla.add_business_days(at(start), days) == at(expected)


def test_the_database_refuses_an_unverified_active_advertiser(session, setting):
    from sqlalchemy.exc import IntegrityError

    setting["provider"].advertising_status = AdvertisingStatus.ACTIVE
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_an_open_update_cannot_relist_a_revoked_provider(session, setting):
    provider = listed(session, setting["provider"])
    update = reviewed(session, setting, SubmissionKind.UPDATE, proposed={"phone": "434-555-0100"})
    assess_all(session, setting["researcher"], update)
    action = review.request_revocation(session, setting["other"], provider, "confirmed exclusion")
    review.sign_off_revocation(session, setting["lead"], action)
    session.commit()
    with pytest.raises(DomainError, match="only a reinstatement review"):
        review.decide(session, setting["researcher"], update, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.rollback()
    assert (provider.verification_status, provider.listing_status) == (VerificationStatus.REVOKED,
                                                                      ListingStatus.DELISTED)


def test_an_advertiser_approval_is_refused_when_a_critical_finding_opens_before_signoff(session, setting):
    from backoffice.models import CheckKind, FindingSeverity
    from backoffice.services import findings

    provider = listed(session, setting["provider"], AdvertisingStatus.PENDING)
    application = reviewed(session, setting, SubmissionKind.ADVERTISER_APPLICATION, proposed={})
    assess_all(session, setting["researcher"], application)
    review.decide(session, setting["researcher"], application, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    findings.open_or_update(session, "system:exclusion-check", provider, CheckKind.EXCLUSION, "leie:9",
                            FindingSeverity.CRITICAL, "Confirmed exclusion", {})
    session.commit()
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED
    with pytest.raises(DomainError):
        review.sign_off(session, setting["lead"], application, POLICY, None)
    session.rollback()
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED


def test_a_revocation_signed_off_and_declined_at_once_has_one_outcome(app, session, setting):
    from backoffice.models import VerificationAction

    provider = listed(session, setting["provider"])
    action = review.request_revocation(session, setting["researcher"], provider, "exclusion")
    session.commit()
    with Session(db.engine) as one, Session(db.engine) as two:
        first = one.get(VerificationAction, action.id)
        second = two.get(VerificationAction, action.id)
        first.provider, second.provider  # noqa: B018 - both loaded before either writes
        review.sign_off_revocation(one, one.get(Account, setting["lead"].id), first)
        one.commit()
        with pytest.raises(Conflict):
            review.decline_revocation(two, two.get(Account, setting["other"].id), second, "not convinced")
        two.rollback()
    session.expire_all()
    assert session.get(VerificationAction, action.id).state.value == "applied"
    assert session.get(Provider, provider.id).verification_status == VerificationStatus.REVOKED


def test_only_one_revocation_awaits_signoff_per_provider(session, setting):
    provider = setting["provider"]
    provider.verification_status = VerificationStatus.VERIFIED
    session.commit()
    review.request_revocation(session, setting["researcher"], provider, "first")
    session.commit()
    with pytest.raises(InvalidTransition):
        review.request_revocation(session, setting["other"], provider, "second")
