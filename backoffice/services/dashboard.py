"""Figures for the staff dashboard, each one a grouped query over an index."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from backoffice.models import (
    OPEN_FINDING_STATES,
    Finding,
    FindingSeverity,
    ListingStatus,
    Provider,
    Submission,
    SubmissionState,
)


@dataclass
class DashboardFigures:
    submissions_by_state: dict[str, int]
    open_findings_by_severity: dict[str, int]
    providers_by_listing: dict[str, int]
    due_for_recheck: int
    verification_expiring_30d: int
    active_advertisers: int


# What the dashboard counts, as conditions the staff lists filter by too: a count and the list its link opens
# are the same rows.
EXPIRING_WITHIN = timedelta(days=30)


def due_for_recheck(now: datetime):
    """Listed and due: its next re-check date has come (or none was ever set)."""
    return and_(Provider.listing_status == ListingStatus.LISTED,
                or_(Provider.recheck_due_at.is_(None), Provider.recheck_due_at <= now))


def verification_expiring(now: datetime):
    """Verified now, and its verification ends within EXPIRING_WITHIN."""
    return and_(Provider.is_verified(now), Provider.verified_until <= now + EXPIRING_WITHIN)


def figures(session: Session, now: datetime) -> DashboardFigures:
    by_state = dict(session.execute(select(Submission.state, func.count()).group_by(Submission.state)).all())
    by_severity = dict(
        session.execute(
            select(Finding.severity, func.count())
            .where(Finding.state.in_(OPEN_FINDING_STATES))
            .group_by(Finding.severity)
        ).all()
    )
    by_listing = dict(
        session.execute(select(Provider.listing_status, func.count()).group_by(Provider.listing_status)).all()
    )
    due = session.scalar(select(func.count()).select_from(Provider).where(due_for_recheck(now)))
    expiring = session.scalar(select(func.count()).select_from(Provider).where(verification_expiring(now)))
    advertisers = session.scalar(select(func.count()).select_from(Provider).where(Provider.is_active_advertiser(now)))
    return DashboardFigures(
        submissions_by_state={s.value: by_state.get(s, 0) for s in SubmissionState},
        open_findings_by_severity={s.value: by_severity.get(s, 0) for s in FindingSeverity},
        providers_by_listing={s.value: by_listing.get(s, 0) for s in ListingStatus},
        due_for_recheck=due or 0,
        verification_expiring_30d=expiring or 0,
        active_advertisers=advertisers or 0,
    )
