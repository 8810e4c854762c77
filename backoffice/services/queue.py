"""The review queue: open requests, filtered, ordered by SLA due date, paged by keyset."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, func, or_, select, union
from sqlalchemy.orm import Session, joinedload, selectinload

from backoffice.models import (
    OPEN_FINDING_STATES, OPEN_STATES, Finding, FindingSeverity, Location, Submission, SubmissionKind,
    SubmissionProposedState,
)

PAGE_SIZE = 50


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class QueueFilters:
    state: str | None = None
    kind: SubmissionKind | None = None
    assignee: str | None = None  # "mine" or "unassigned"
    overdue: bool = False


@dataclass
class QueueRow:
    submission: Submission
    states: list[str]
    critical_finding: bool
    overdue: bool


@dataclass
class QueuePage:
    rows: list[QueueRow] = field(default_factory=list)
    next_cursor: str | None = None


def encode_cursor(submission: Submission) -> str:
    assert submission.decision_due is not None  # set by review.submit(); the queue lists submitted requests only
    raw = f"{submission.decision_due.isoformat()}|{submission.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        due, ident = raw.split("|")
        moment = datetime.fromisoformat(due)
        if moment.tzinfo is None or not 0 <= int(ident) <= 2**31 - 1:
            raise ValueError
        return moment, int(ident)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor("That page link is not valid.") from None


def overdue_clause(now: datetime):
    return or_(
        and_(Submission.first_response_at.is_(None), Submission.first_response_due < now),
        Submission.decision_due < now,
    )


# Kinds of request that stand under the provider's current states too: an update changes a listed provider's
# listing, an advertiser application proposes no change to it. A new listing or a reinstatement stands under
# the states it proposes (a new provider has no location of its own until approval).
KEEPS_CURRENT_STATES = (SubmissionKind.UPDATE, SubmissionKind.ADVERTISER_APPLICATION)

# Up to this many locations in a state, the queue starts from that state's requests; above it, it walks the
# open requests in due order and keeps those in the state. Measured at 100k providers (SQLite / PostgreSQL):
# starting from the state costs ~2 / ~6 ms per 100 locations there (CA, 8,400: 120 / 110 ms); walking costs
# about the same for every state on PostgreSQL (30-55 ms) and on SQLite grows as the state's share shrinks
# (CA 18 ms, WY with 360 locations 78 ms). Both stay well under 100 ms with the switch at 700.
FEW_LOCATIONS = 700


def in_state(state: str):
    """A request stands under the states of the locations it proposes and, for KEEPS_CURRENT_STATES, under its
    provider's current ones. Both subqueries are read once from their indexes ((state, submission_id) and
    (state, provider_id)); the open requests are then walked in due order."""
    proposed = select(SubmissionProposedState.submission_id).where(SubmissionProposedState.state == state)
    located = select(Location.provider_id).where(Location.state == state)
    return or_(Submission.id.in_(proposed),
               and_(Submission.kind.in_(KEEPS_CURRENT_STATES), Submission.provider_id.in_(located)))


def requests_in_state(state: str):
    """The same requests as in_state, found from the state's side: for a state with few locations, its
    proposed-state rows and the open requests of the providers located there, each from its index."""
    proposed = select(SubmissionProposedState.submission_id.label("id")).where(SubmissionProposedState.state == state)
    located = (select(Submission.id.label("id")).join(Location, Location.provider_id == Submission.provider_id)
               .where(Location.state == state, Submission.state.in_(OPEN_STATES),
                      Submission.kind.in_(KEEPS_CURRENT_STATES)))
    return union(proposed, located).subquery("in_state")


def few_locations(session: Session, state: str) -> bool:
    counted = select(Location.id).where(Location.state == state).limit(FEW_LOCATIONS + 1).subquery()
    return session.scalars(select(func.count()).select_from(counted)).one() <= FEW_LOCATIONS


def shown_states(submission: Submission, current: set[str]) -> list[str]:
    """The states a queue row shows, by the same rule as in_state."""
    states = {row.state for row in submission.proposed_states}
    if submission.kind in KEEPS_CURRENT_STATES:
        states |= current
    return sorted(states)


def page(session: Session, filters: QueueFilters, viewer_id: int, now: datetime,
         cursor: str | None = None, limit: int = PAGE_SIZE) -> QueuePage:
    """One page of open requests, soonest decision due first; no count over the table."""
    query = select(Submission.id).where(Submission.state.in_(OPEN_STATES))
    if filters.state and few_locations(session, filters.state):
        found = requests_in_state(filters.state)
        query = query.join(found, found.c.id == Submission.id)
    elif filters.state:
        query = query.where(in_state(filters.state))
    if filters.kind:
        query = query.where(Submission.kind == filters.kind)
    if filters.assignee == "mine":
        query = query.where(Submission.assignee_id == viewer_id)
    elif filters.assignee == "unassigned":
        query = query.where(Submission.assignee_id.is_(None))
    if filters.overdue:
        query = query.where(overdue_clause(now))
    if cursor:
        due, ident = decode_cursor(cursor)
        query = query.where(or_(Submission.decision_due > due,
                                and_(Submission.decision_due == due, Submission.id > ident)))
    # Pick the page's ids from the index first, then load just those rows with what they show:
    # ordering joined rows would sort the whole open set.
    ids = list(session.scalars(query.order_by(Submission.decision_due, Submission.id).limit(limit + 1)))
    more = len(ids) > limit
    ids = ids[:limit]
    loaded = {s.id: s for s in session.scalars(
        select(Submission).where(Submission.id.in_(ids))
        .options(joinedload(Submission.provider), joinedload(Submission.assignee),
                 selectinload(Submission.proposed_states)))}
    submissions = [loaded[i] for i in ids]
    provider_ids = {s.provider_id for s in submissions}
    states: dict[int, set[str]] = {}
    critical: set[int] = set()
    if provider_ids:
        for provider_id, state in session.execute(
                select(Location.provider_id, Location.state).where(Location.provider_id.in_(provider_ids))):
            states.setdefault(provider_id, set()).add(state)
        critical = set(session.scalars(select(Finding.provider_id).where(
            Finding.provider_id.in_(provider_ids), Finding.severity == FindingSeverity.CRITICAL,
            Finding.state.in_(OPEN_FINDING_STATES))))
    rows = [
        QueueRow(
            submission=s, states=shown_states(s, states.get(s.provider_id, set())),
            critical_finding=s.provider_id in critical,
            overdue=bool((s.decision_due and s.decision_due < now)
                         or (s.first_response_at is None and s.first_response_due and s.first_response_due < now)),
        )
        for s in submissions
    ]
    return QueuePage(rows=rows, next_cursor=encode_cursor(submissions[-1]) if more else None)
