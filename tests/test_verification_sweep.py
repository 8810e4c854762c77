"""The verification-expiry sweep and the submission state machine, through the services."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from backoffice.models import (
    AdvertisingStatus,
    AuditEvent,
    CheckKind,
    Finding,
    FindingSeverity,
    Provider,
    Role,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, expiry, submissions
from backoffice.services.errors import InvalidTransition
from tasks.sweeps import verification_expiry_sweep


def verified(make_provider, days_left: int, advertising=AdvertisingStatus.NONE) -> Provider:
    now = utcnow()
    return make_provider(
        verification_status=VerificationStatus.VERIFIED, verified_at=now - timedelta(days=365 - days_left),
        verified_until=now + timedelta(days=days_left), advertising_status=advertising,
    )


def test_sweep_expires_only_lapsed_verifications_and_suspends_their_advertising(session, make_provider):
    lapsed_advertiser = verified(make_provider, -2, AdvertisingStatus.ACTIVE)
    lapsed = verified(make_provider, -1)
    current = verified(make_provider, 30, AdvertisingStatus.ACTIVE)
    never = make_provider()

    assert verification_expiry_sweep() == 2
    session.expire_all()
    assert session.get(Provider, lapsed_advertiser.id).verification_status == VerificationStatus.EXPIRED
    assert session.get(Provider, lapsed_advertiser.id).advertising_status == AdvertisingStatus.SUSPENDED
    assert session.get(Provider, lapsed.id).verification_status == VerificationStatus.EXPIRED
    assert session.get(Provider, current.id).verification_status == VerificationStatus.VERIFIED
    assert session.get(Provider, current.id).advertising_status == AdvertisingStatus.ACTIVE
    assert session.get(Provider, never.id).verification_status == VerificationStatus.UNVERIFIED

    findings = session.scalars(select(Finding).order_by(Finding.provider_id)).all()
    assert [(f.provider_id, f.check, f.severity) for f in findings] == [
        (lapsed_advertiser.id, CheckKind.VERIFICATION_EXPIRY, FindingSeverity.WARNING),
        (lapsed.id, CheckKind.VERIFICATION_EXPIRY, FindingSeverity.WARNING),
    ]
    actions = [e.action for e in session.scalars(
        select(AuditEvent).where(AuditEvent.provider_id == lapsed_advertiser.id).order_by(AuditEvent.seq))]
    assert actions == ["verification.expired", "advertising.suspended", "finding.opened"]
    assert audit.verify_chain(session).ok


def test_running_the_sweep_twice_changes_nothing_the_second_time(session, make_provider):
    verified(make_provider, -3, AdvertisingStatus.ACTIVE)
    verification_expiry_sweep()
    events = session.query(AuditEvent).count()
    findings = session.query(Finding).count()
    assert verification_expiry_sweep() == 0
    assert session.query(AuditEvent).count() == events
    assert session.query(Finding).count() == findings


def test_sweep_works_through_more_than_one_batch(session, make_provider):
    ids = [verified(make_provider, -1).id for _ in range(7)]
    now = utcnow()
    assert expiry.expire_lapsed(session, "system:test", now, batch_size=3) == 3
    assert expiry.expire_lapsed(session, "system:test", now, batch_size=3) == 3
    assert expiry.expire_lapsed(session, "system:test", now, batch_size=3) == 1
    assert expiry.expire_lapsed(session, "system:test", now, batch_size=3) == 0
    session.commit()
    statuses = session.scalars(select(Provider.verification_status).where(Provider.id.in_(ids))).all()
    assert set(statuses) == {VerificationStatus.EXPIRED}


@pytest.mark.parametrize("path, illegal", [
    ([], SubmissionState.APPROVED),
    ([], SubmissionState.IN_REVIEW),
    ([SubmissionState.SUBMITTED], SubmissionState.APPROVED),
    ([SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO], SubmissionState.REJECTED),
    ([SubmissionState.WITHDRAWN], SubmissionState.SUBMITTED),
])
def test_illegal_transitions_raise_and_change_nothing(session, make_account, make_provider, path, illegal):
    provider_account = make_account(Role.PROVIDER)
    submission = submissions.create_draft(session, provider_account, make_provider(), SubmissionKind.NEW_LISTING, {})
    for step in path:
        submissions.transition(session, provider_account, submission, step)
    session.commit()
    state, events, steps = submission.state, session.query(AuditEvent).count(), len(submission.transitions)
    with pytest.raises(InvalidTransition):
        submissions.transition(session, provider_account, submission, illegal)
    session.commit()
    session.expire_all()
    assert submission.state == state
    assert session.query(AuditEvent).count() == events
    assert len(submission.transitions) == steps


def test_every_transition_is_timed_and_audited(session, make_account, make_provider):
    provider_account = make_account(Role.PROVIDER)
    researcher = make_account(Role.RESEARCHER)
    submission = submissions.create_draft(session, provider_account, make_provider(), SubmissionKind.NEW_LISTING, {})
    submissions.transition(session, provider_account, submission, SubmissionState.SUBMITTED)
    submissions.transition(session, researcher, submission, SubmissionState.IN_REVIEW)
    session.commit()
    assert [t.to_state for t in submission.transitions] == [
        SubmissionState.DRAFT, SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW]
    assert submission.submitted_at is not None and submission.first_response_at is not None
    events = session.scalars(select(AuditEvent).where(AuditEvent.entity_type == "submission")).all()
    assert [e.after["state"] for e in events] == ["draft", "submitted", "in_review"]
    assert events[-1].actor == f"user:{researcher.id}"
