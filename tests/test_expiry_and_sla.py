"""Expiry reminders at 90/60/30/7 days (once each), lapses with their consequences, and the SLA sweep."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import func, select

from backoffice.models import (
    Accreditation,
    AdvertisingStatus,
    AuditEvent,
    CheckKind,
    Finding,
    FindingSeverity,
    Licence,
    ListingStatus,
    Notification,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
)
from backoffice.services import accounts, audit, expiry, overdue
from backoffice.services.review import ReviewPolicy

TODAY = date(2026, 3, 1)
THRESHOLDS = [90, 60, 30, 7]


def verified_provider(make_provider, **fields):
    return make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                         verified_at=datetime(2025, 6, 1, tzinfo=timezone.utc),
                         verified_until=datetime(2026, 12, 1, tzinfo=timezone.utc),
                         advertising_status=AdvertisingStatus.ACTIVE, email="admissions@harbor.example", **fields)


def reminders(session) -> list[str]:
    return [n.subject for n in session.scalars(select(Notification).order_by(Notification.id))]


def test_reminders_go_once_at_each_threshold_and_a_late_start_sends_one(session, make_provider, make_account):
    provider = verified_provider(make_provider)
    provider.licences.append(Licence(state="VA", number="L-1", licence_type="SUD", expires_on=TODAY + timedelta(days=90)))
    provider.accreditations.append(Accreditation(body="CARF", expires_on=TODAY + timedelta(days=20)))
    member = make_account(Role.PROVIDER)
    accounts.add_member(session, "system:test", member, provider)
    session.commit()
    sent_per_day = []
    for offset in range(0, 95):
        sent_per_day.append(expiry.send_reminders(session, "system:test", TODAY + timedelta(days=offset), THRESHOLDS))
        session.commit()
    # Licence: 90, 60, 30, 7 days before. Accreditation (20 days left at the start): 30 once, then 7.
    assert sum(sent_per_day) == 6
    assert sent_per_day[0] == 2 and sent_per_day[30] == 1 and sent_per_day[60] == 1 and sent_per_day[83] == 1
    assert sent_per_day[13] == 1  # accreditation at 7 days
    notes = session.scalars(select(Notification)).all()
    assert {n.recipient_email for n in notes} == {member.email}
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "expiry.reminder_sent")) == 6


def test_expired_licence_lapses_verification_and_suspends_advertising_once(session, make_provider):
    provider = verified_provider(make_provider)
    provider.licences.append(Licence(state="VA", number="L-9", licence_type="SUD", expires_on=TODAY - timedelta(days=1)))
    session.commit()
    assert expiry.lapse_credentials(session, "system:test", TODAY) == 1
    session.commit()
    assert provider.verification_status == VerificationStatus.EXPIRED
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED
    finding = session.scalar(select(Finding))
    assert (finding.check, finding.severity) == (CheckKind.LICENCE_EXPIRY, FindingSeverity.CRITICAL)
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.provider_id == provider.id)).all()
    assert {"verification.expired", "advertising.suspended", "finding.opened"} <= set(actions)
    assert expiry.lapse_credentials(session, "system:test", TODAY + timedelta(days=1)) == 0
    assert audit.verify_chain(session).ok


def test_expired_accreditation_only_suspends_advertising(session, make_provider):
    provider = verified_provider(make_provider)
    provider.accreditations.append(Accreditation(body="CARF", expires_on=TODAY - timedelta(days=3)))
    session.commit()
    expiry.lapse_credentials(session, "system:test", TODAY)
    session.commit()
    assert provider.verification_status == VerificationStatus.VERIFIED
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED


def test_sla_sweep_flags_overdue_submissions_once(session, make_provider, make_account):
    provider = make_provider()
    owner = make_account(Role.PROVIDER)
    now = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    waiting = Submission(provider_id=provider.id, kind=SubmissionKind.NEW_LISTING, state=SubmissionState.SUBMITTED,
                         created_by_id=owner.id, submitted_at=now - timedelta(days=9))
    recent = Submission(provider_id=provider.id, kind=SubmissionKind.NEW_LISTING, state=SubmissionState.SUBMITTED,
                        created_by_id=owner.id, submitted_at=now - timedelta(days=1))
    late_decision = Submission(provider_id=provider.id, kind=SubmissionKind.UPDATE, state=SubmissionState.IN_REVIEW,
                               created_by_id=owner.id, submitted_at=now - timedelta(days=20),
                               first_response_at=now - timedelta(days=19), decision_due=now - timedelta(hours=1))
    session.add_all([waiting, recent, late_decision])
    session.commit()
    assert overdue.flag_overdue(session, "system:test", now, ReviewPolicy(5, 30)) == 2
    session.commit()
    subjects = sorted(session.scalars(select(Finding.subject_key)))
    assert subjects == sorted([f"submission:{late_decision.id}:decision", f"submission:{waiting.id}:first_response"])
    assert overdue.flag_overdue(session, "system:test", now + timedelta(hours=1), ReviewPolicy(5, 30), limit=1) == 0
    # A batch of one walks past flagged submissions instead of stalling on them.
    fresh = Submission(provider_id=provider.id, kind=SubmissionKind.UPDATE, state=SubmissionState.SUBMITTED,
                       created_by_id=owner.id, submitted_at=now - timedelta(days=8))
    session.add(fresh)
    session.commit()
    assert overdue.flag_overdue(session, "system:test", now, ReviewPolicy(5, 30), limit=1) == 1
