"""The review queue: open requests, searched, filtered, sorted and paged by keyset, each row saying in words
why it waits and for whom."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, exists, false, func, or_, select, text, union
from sqlalchemy.orm import Session, joinedload, selectinload

from backoffice.models import (
    OPEN_FINDING_STATES,
    OPEN_PREDICATE,
    OPEN_STATES,
    Decision,
    DecisionStatus,
    Finding,
    FindingSeverity,
    Location,
    MessageKind,
    Provider,
    Submission,
    SubmissionKind,
    SubmissionMessage,
    SubmissionProposedCity,
    SubmissionProposedState,
    SubmissionState,
)
from backoffice.services import totals

PAGE_SIZE = 50
SEARCH_MAX_LENGTH = 100
OPEN = text(f"submission.{OPEN_PREDICATE}")

# How the queue can be sorted: the columns of its keyset, each ascending or descending, the id last.
SORTS = {
    "due": "decision due",
    "age": "waiting longest",
    "state": "status, then due",
    "activity": "latest activity",
}
# Saved filters: what a researcher or a lead opens the queue for.
VIEWS = {
    "mine": "My work",
    "signoff": "Waiting for my sign-off",
    "answered": "Answered by the provider",
    "overdue": "Overdue",
    "reverification": "Re-verifications",
}
STATE_ORDER = {SubmissionState.SUBMITTED: 0, SubmissionState.IN_REVIEW: 1, SubmissionState.NEEDS_INFO: 2}


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class QueueFilters:
    state: str | None = None
    kind: SubmissionKind | None = None
    assignee: str | None = None  # "mine" or "unassigned"
    overdue: bool = False
    search: str | None = None  # a provider's name, its NPI, a request number or a city
    view: str | None = None  # one of VIEWS
    sort: str = "due"  # one of SORTS


@dataclass
class QueueRow:
    submission: Submission
    states: list[str]
    critical_finding: bool
    overdue: bool
    # Why it waits and for whom, in words, most pressing first.
    reasons: list[str] = field(default_factory=list)


@dataclass
class QueuePage:
    rows: list[QueueRow] = field(default_factory=list)
    next_cursor: str | None = None
    total: totals.Total = totals.Total(0)  # every open request the filters match, on all pages


def _sort_keys(sort: str):
    """The keyset of a sort: (expression, descending) pairs, the id last so every row has its own place."""
    if sort == "age":
        return [(Submission.submitted_at, False), (Submission.id, False)]
    if sort == "state":
        return [(case(STATE_ORDER, value=Submission.state, else_=3), False), (Submission.decision_due, False),
                (Submission.id, False)]
    if sort == "activity":
        return [(Submission.updated_at, True), (Submission.id, True)]
    return [(Submission.decision_due, False), (Submission.id, False)]


def _key_values(submission: Submission, sort: str) -> list:
    if sort == "age":
        return [submission.submitted_at, submission.id]
    if sort == "state":
        return [STATE_ORDER.get(submission.state, 3), submission.decision_due, submission.id]
    if sort == "activity":
        return [submission.updated_at, submission.id]
    return [submission.decision_due, submission.id]


def encode_cursor(submission: Submission, sort: str = "due") -> str:
    parts = [value.isoformat() if isinstance(value, datetime) else str(value)
             for value in _key_values(submission, sort)]
    return base64.urlsafe_b64encode("|".join([sort, *parts]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str = "due") -> list:
    """The keyset values a page link carries; refused when it was made for another sort or altered."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        made_for, *parts = raw.split("|")
        if made_for != sort or len(parts) != len(_sort_keys(sort)):
            raise ValueError
        values: list = []
        for text_value in parts[:-1]:
            if text_value.isdigit():
                values.append(int(text_value))
                continue
            moment = datetime.fromisoformat(text_value)
            if moment.tzinfo is None:
                raise ValueError
            values.append(moment)
        ident = int(parts[-1])
        if not 0 <= ident <= 2**31 - 1:
            raise ValueError
        return [*values, ident]
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor("That page link is not valid.") from None


def _after(keys, values):
    """Rows after the cursor in the sort's order: (a, b, id) > (x, y, z) spelled out for both engines."""
    clauses = []
    for position, (expression, descending) in enumerate(keys):
        equal = [k == v for (k, _), v in zip(keys[:position], values[:position], strict=True)]
        beyond = expression < values[position] if descending else expression > values[position]
        clauses.append(and_(*equal, beyond))
    return or_(*clauses)


def last_message_kind():
    """The kind of a request's latest message (info request or provider answer), as a correlated subquery."""
    return (select(SubmissionMessage.kind).where(SubmissionMessage.submission_id == Submission.id)
            .order_by(SubmissionMessage.id.desc()).limit(1).scalar_subquery())


def answered_clause():
    """Back in review with the provider's answer as the last word: the researcher's move."""
    return and_(Submission.state == SubmissionState.IN_REVIEW, last_message_kind() == MessageKind.PROVIDER_ANSWER)


def awaiting_signoff_clause(viewer_id: int):
    """A decision on the request waits for a second person's sign-off, and the viewer did not make it."""
    return exists().where(Decision.submission_id == Submission.id, Decision.status == DecisionStatus.AWAITING_SIGNOFF,
                          Decision.decided_by_id != viewer_id)


# A search that matches up to this many open requests is looked up once, and the page and its total
# are then read by id; one that matches more is left to the database as a subquery.
SEARCH_SET_LIMIT = 5000
# The queue counts its requests exactly up to this many; beyond, PostgreSQL's estimate ("about 3,400") or, on
# SQLite, "more than 1,000": a count of every request in a big state would cost more than the page.
EXACT_UP_TO = 1000


def search_matches(text_value: str, dialect: str = "postgresql"):
    """The open requests a search finds: a request number ("#12" or "12"), an NPI (ten digits), or
    words in the provider's names, or a city of its locations or of the locations the request proposes. Each
    part is read from its index (the names from one pass over the providers), never from every request."""
    term = text_value.strip()
    number = term.lstrip("#")
    if number.isdigit():
        parts = [select(Submission.id).where(Submission.id == int(number))] if int(number) <= 2**31 - 1 else []
        if len(number) == 10:
            parts.append(select(Submission.id).where(
                Submission.provider_id.in_(select(Provider.id).where(Provider.npi == number))))
        return union(*parts) if len(parts) > 1 else parts[0] if parts else select(Submission.id).where(false())
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    words = f"%{escaped}%"
    named = select(Provider.id).where(or_(_contains(Provider.public_name, words, dialect),
                                          _contains(Provider.legal_name, words, dialect)))
    city = " ".join(term.split()).lower()
    # The providers' own locations (lower(city)), and the cities a request proposes (a new listing has no
    # location of its own before approval).
    located = select(Location.provider_id).where(func.lower(Location.city) == city)
    # The matches' own requests, by provider (its index), keeping the open ones: the state is checked on each
    # match (a CASE the planner cannot take an index for), not used to walk every open request.
    still_open = case((Submission.state.in_(OPEN_STATES), 1), else_=0) == 1
    by_provider = select(Submission.id).where(Submission.provider_id.in_(union(named, located)), still_open)
    proposed = (select(SubmissionProposedCity.submission_id)
                .join(Submission, Submission.id == SubmissionProposedCity.submission_id)
                .where(SubmissionProposedCity.city == city, still_open))
    return union(by_provider, proposed)


def search_clause(session: Session, text_value: str):
    """The queue's condition for a search: the matching ids themselves when they are few (read once, so the
    page and its total do not search twice), else the search as a subquery."""
    matches = search_matches(text_value, session.get_bind().dialect.name)
    found = list(session.scalars(select(matches.subquery().c[0]).limit(SEARCH_SET_LIMIT + 1)))
    if len(found) <= SEARCH_SET_LIMIT:
        return Submission.id.in_(found) if found else false()
    return Submission.id.in_(matches)


def _contains(column, pattern: str, dialect: str):
    """Case-blind LIKE: SQLite's own LIKE ignores case already (its ilike would call lower() on every row),
    PostgreSQL's ILIKE."""
    if dialect == "sqlite":
        return column.like(pattern, escape="\\")
    return column.ilike(pattern, escape="\\")


def overdue_clause(now: datetime):
    return or_(
        and_(Submission.first_response_at.is_(None), Submission.first_response_due < now),
        Submission.decision_due < now,
    )


# Kinds of request that stand under the provider's current states too: an update changes a listed provider's
# listing, an advertiser application proposes no change to it. A new listing or a reinstatement stands under
# the states it proposes (a new provider has no location of its own until approval).
KEEPS_CURRENT_STATES = (SubmissionKind.UPDATE, SubmissionKind.ADVERTISER_APPLICATION, SubmissionKind.REVERIFICATION)

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


def _matching(session: Session, filters: QueueFilters, viewer_id: int, now: datetime):
    """The ids of the open requests the filters match, as a query to page or count."""
    # Spelled as the partial indexes' predicate, so the sorts by age and by activity read them.
    query = select(Submission.id).where(OPEN)
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
    if filters.overdue or filters.view == "overdue":
        query = query.where(overdue_clause(now))
    if filters.view == "mine":
        query = query.where(Submission.assignee_id == viewer_id)
    elif filters.view == "answered":
        query = query.where(answered_clause())
    elif filters.view == "signoff":
        query = query.where(awaiting_signoff_clause(viewer_id))
    elif filters.view == "reverification":
        query = query.where(Submission.kind == SubmissionKind.REVERIFICATION)
    if filters.search:
        query = query.where(search_clause(session, filters.search))
    return query


def page(session: Session, filters: QueueFilters, viewer_id: int, now: datetime,
         cursor: str | None = None, limit: int = PAGE_SIZE) -> QueuePage:
    """One page of open requests in the filters' sort, with the total the filters match."""
    sort = filters.sort if filters.sort in SORTS else "due"
    keys = _sort_keys(sort)
    after = _after(keys, decode_cursor(cursor, sort)) if cursor else None
    matching = _matching(session, filters, viewer_id, now)
    total = totals.of(session, matching, exact_up_to=EXACT_UP_TO)
    query = matching.where(after) if after is not None else matching
    # Pick the page's ids from the index first, then load just those rows with what they show:
    # ordering joined rows would sort the whole open set.
    order = [expression.desc() if descending else expression for expression, descending in keys]
    ids = list(session.scalars(query.order_by(*order).limit(limit + 1)))
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
    answered, awaiting = _waiting_on(session, ids)
    rows = []
    for s in submissions:
        row = QueueRow(
            submission=s, states=shown_states(s, states.get(s.provider_id, set())),
            critical_finding=s.provider_id in critical,
            overdue=bool(late(s, now)),
        )
        row.reasons = reasons(row, answered=s.id in answered, awaiting=awaiting.get(s.id), now=now)
        rows.append(row)
    return QueuePage(rows=rows, next_cursor=encode_cursor(submissions[-1], sort) if more else None, total=total)


def _waiting_on(session: Session, ids: list[int]) -> tuple[set[int], dict[int, Decision]]:
    """Of the page's requests: those whose last message is the provider's answer, and each one's decision
    awaiting sign-off. Two indexed reads for the whole page."""
    if not ids:
        return set(), {}
    latest = (select(SubmissionMessage.submission_id, func.max(SubmissionMessage.id).label("id"))
              .where(SubmissionMessage.submission_id.in_(ids)).group_by(SubmissionMessage.submission_id).subquery())
    answered = set(session.scalars(
        select(SubmissionMessage.submission_id).join(latest, latest.c.id == SubmissionMessage.id)
        .where(SubmissionMessage.kind == MessageKind.PROVIDER_ANSWER)))
    awaiting = {d.submission_id: d for d in session.scalars(
        select(Decision).where(Decision.submission_id.in_(ids), Decision.status == DecisionStatus.AWAITING_SIGNOFF)
        .options(joinedload(Decision.decided_by)))}
    return answered, awaiting


def reasons(row: QueueRow, *, answered: bool, awaiting: Decision | None, now: datetime) -> list[str]:
    """Why a request waits and for whom, in words, most pressing first."""
    s = row.submission
    said = []
    if row.critical_finding:
        said.append("Open critical finding on this provider")
    if awaiting is not None:
        who = awaiting.decided_by.name if awaiting.decided_by else "a researcher"
        said.append(f"Decision by {who} awaiting sign-off by someone else on the research team")
    elif s.state == SubmissionState.IN_REVIEW and answered:
        said.append("The provider answered: the researcher's move")
    elif s.state == SubmissionState.NEEDS_INFO:
        said.append("Waiting for the provider to answer a question")
    elif s.assignee is None:
        said.append("New: nobody has taken it yet")
    elif s.state == SubmissionState.IN_REVIEW:
        said.append(f"In review with {s.assignee.name}")
    missed = late(s, now)
    if missed:
        said.append(missed)
    return said


def late(s: Submission, now: datetime) -> str | None:
    """What a request is late for, in words, by the rule of overdue_clause (which finds them in SQL)."""
    if s.first_response_at is None and s.first_response_due and s.first_response_due < now:
        return "First response overdue"
    if s.decision_due and s.decision_due < now:
        return "Decision overdue"
    return None
