"""The SLA sweep: submissions waiting past their first-response or decision due date are flagged once."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from backoffice import zones
from backoffice.models import (
    OPEN_STATES,
    CheckKind,
    Finding,
    FindingSeverity,
    Provider,
    Submission,
    SubmissionState,
)
from backoffice.services import audit, findings, sla
from backoffice.services.review import ReviewPolicy


def overdue_submissions(session: Session, now: datetime, policy: ReviewPolicy,
                        limit: int, after_id: int = 0) -> list[Submission]:
    """Open submissions that may be past a due date, in id order after `after_id`.

    A submission without recorded due dates is judged by the review policy's business days after it was
    submitted; n business days are at least n calendar days, so the calendar test here finds every
    candidate and `missed` decides exactly.
    """
    first_due = or_(Submission.first_response_due < now,
                    and_(Submission.first_response_due.is_(None),
                         Submission.submitted_at < now - timedelta(days=policy.first_response_business_days)))
    decision_due = or_(Submission.decision_due < now,
                       and_(Submission.decision_due.is_(None),
                            Submission.submitted_at < now - timedelta(days=policy.decision_business_days)))
    return list(session.scalars(
        select(Submission).where(
            Submission.state.in_(OPEN_STATES), Submission.id > after_id,
            or_(and_(Submission.state == SubmissionState.SUBMITTED, Submission.first_response_at.is_(None), first_due),
                decision_due),
        ).order_by(Submission.id).limit(limit)
    ))


def missed(submission: Submission, now: datetime, policy: ReviewPolicy) -> list[tuple[str, datetime]]:
    """Which due dates ('first_response', 'decision') the submission has missed, with the date."""
    assert submission.submitted_at is not None  # the open states all come after submission
    found = []
    if submission.state == SubmissionState.SUBMITTED and submission.first_response_at is None:
        due = submission.first_response_due or sla.add_business_days(
            submission.submitted_at, policy.first_response_business_days)
        if due < now:
            found.append(("first_response", due))
    due = submission.decision_due or sla.add_business_days(submission.submitted_at, policy.decision_business_days)
    if due < now:
        found.append(("decision", due))
    return found


def flag_overdue(session: Session, actor: audit.Actor, now: datetime, policy: ReviewPolicy,
                 limit: int = 1000) -> int:
    """Open one finding per overdue submission and due date, never twice; returns how many were opened."""
    flagged, after_id = 0, 0
    # Walk every overdue submission in id order, a batch at a time: already flagged ones do not stall the sweep.
    while batch := overdue_submissions(session, now, policy, limit, after_id):
        after_id = batch[-1].id
        for submission in batch:
            for what, due in missed(submission, now, policy):
                flagged += _flag(session, actor, submission, what, due)
    session.flush()
    return flagged


def _flag(session: Session, actor: audit.Actor, submission: Submission, what: str, due: datetime) -> int:
    subject = f"submission:{submission.id}:{what}"
    seen = session.scalar(select(Finding.id).where(
        Finding.provider_id == submission.provider_id, Finding.check == CheckKind.SUBMISSION_SLA,
        Finding.subject_key == subject))
    if seen is not None:
        return 0
    provider = session.get_one(Provider, submission.provider_id)
    label = "first response" if what == "first_response" else "decision"
    findings.open_or_update(
        session, actor, provider, CheckKind.SUBMISSION_SLA, subject, FindingSeverity.WARNING,
        f"Submission #{submission.id}: {label} overdue since {zones.moment_text(due, zones.UTC)}",
        {"submission_id": submission.id, "state": submission.state.value, "due": due, "overdue": what},
    )
    return 1
