"""The submission state machine: every transition is checked, timed and audited."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backoffice.models import (
    Account,
    Provider,
    Submission,
    SubmissionKind,
    SubmissionProposedCity,
    SubmissionProposedState,
    SubmissionState,
    SubmissionTransition,
    utcnow,
)
from backoffice.services import audit
from backoffice.services.errors import InvalidTransition
from backoffice.vocab import US_STATES

S = SubmissionState
ALLOWED: dict[SubmissionState, frozenset[SubmissionState]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.WITHDRAWN}),
    S.SUBMITTED: frozenset({S.IN_REVIEW, S.WITHDRAWN}),
    S.IN_REVIEW: frozenset({S.NEEDS_INFO, S.APPROVED, S.REJECTED, S.WITHDRAWN}),
    S.NEEDS_INFO: frozenset({S.IN_REVIEW, S.WITHDRAWN}),
    S.APPROVED: frozenset(),
    S.REJECTED: frozenset(),
    S.WITHDRAWN: frozenset(),
}
TERMINAL = frozenset(state for state, targets in ALLOWED.items() if not targets)


def proposed_states(proposed: dict[str, Any]) -> set[str]:
    """The US states of the locations a proposed listing holds."""
    locations = proposed.get("locations") if isinstance(proposed, dict) else None
    codes = {str(item.get("state") or "").strip().upper() for item in locations or [] if isinstance(item, dict)}
    return codes & US_STATES.keys()


CITY_LENGTH = 100


def proposed_cities(proposed: dict[str, Any]) -> set[str]:
    """The cities of the locations a proposed listing holds, in lower case (as the queue's search finds them)."""
    locations = proposed.get("locations") if isinstance(proposed, dict) else None
    cities = {" ".join(str(item.get("city") or "").split()).lower()[:CITY_LENGTH]
              for item in locations or [] if isinstance(item, dict)}
    return cities - {""}


def propose(submission: Submission, proposed: dict[str, Any]) -> None:
    """What the request proposes, and beside it the states and cities of its proposed locations (which the
    review queue shows, filters and searches by): every write of `proposed` goes through here."""
    submission.proposed = proposed
    wanted = proposed_states(proposed)
    kept = [row for row in submission.proposed_states if row.state in wanted]
    # Rows that stay are kept as they are: deleting and re-inserting one key in one flush would collide.
    submission.proposed_states = kept + [SubmissionProposedState(state=code)
                                         for code in sorted(wanted - {row.state for row in kept})]
    cities = proposed_cities(proposed)
    kept_cities = [row for row in submission.proposed_cities if row.city in cities]
    submission.proposed_cities = kept_cities + [SubmissionProposedCity(city=city)
                                                for city in sorted(cities - {row.city for row in kept_cities})]


def create_draft(session: Session, actor: audit.Actor, provider: Provider, kind: SubmissionKind,
                 proposed: dict) -> Submission:
    """A draft request; a system actor (the re-verification sweep) leaves it without a creator account."""
    submission = Submission(provider_id=provider.id, kind=kind, state=S.DRAFT,
                            created_by_id=actor.id if isinstance(actor, Account) else None)
    propose(submission, audit.jsonable(proposed))
    session.add(submission)
    session.flush()
    submission.transitions.append(SubmissionTransition(from_state=None, to_state=S.DRAFT,
                                                       actor=audit.actor_label(actor)))
    audit.record(session, actor, "submission.created", "submission", submission.id,
                 after={"kind": kind.value, "state": S.DRAFT.value}, provider_id=provider.id)
    return submission


def transition(session: Session, actor: audit.Actor, submission: Submission, to_state: SubmissionState,
               reason: str | None = None) -> SubmissionTransition:
    """Move a submission to `to_state`, or raise InvalidTransition and change nothing."""
    from_state = submission.state
    if to_state not in ALLOWED[from_state]:
        raise InvalidTransition(
            f"A submission that is {from_state.label} cannot become {to_state.label}."
        )
    now = utcnow()
    submission.state = to_state
    if to_state == S.SUBMITTED:
        submission.submitted_at = now
    if from_state == S.SUBMITTED and submission.first_response_at is None:
        submission.first_response_at = now
    if to_state in TERMINAL:
        submission.closed_at = now
    step = SubmissionTransition(from_state=from_state, to_state=to_state, at=now, actor=audit.actor_label(actor))
    submission.transitions.append(step)
    audit.record(session, actor, "submission.transitioned", "submission", submission.id,
                 before={"state": from_state.value}, after={"state": to_state.value},
                 reason=reason, provider_id=submission.provider_id)
    session.flush()
    return step
