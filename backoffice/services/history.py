"""Reading the verification history: the audit log search and a provider's chronological history."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, selectinload

from backoffice.models import Account, Assessment, AuditEvent, CheckRun, Decision, Provider, Submission
from backoffice.services.accounts import actor_names  # noqa: F401 (the audit pages' name for it)
from backoffice.services.audit_export import seq_range_for_dates

PAGE_SIZE = 50
ACTOR_PATTERN = re.compile(r"^(user:\d+|system:[\w.-]+)$")


@dataclass(frozen=True)
class LogQuery:
    actor: str | None = None
    action: str | None = None          # exact, or a prefix ending in "*"
    entity_type: str | None = None
    entity_id: str | None = None
    provider_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class LogPage:
    events: list[AuditEvent] = field(default_factory=list)
    next_before: int | None = None


def search(session: Session, query: LogQuery, before_seq: int | None = None, limit: int = PAGE_SIZE) -> LogPage:
    """Newest first, paged by seq; dates become a seq range, so every filter rides an index."""
    stmt = select(AuditEvent)
    if query.start or query.end:
        first, last = seq_range_for_dates(session, query.start, query.end)
        stmt = stmt.where(AuditEvent.seq >= first)
        if last is not None:
            stmt = stmt.where(AuditEvent.seq <= last)
    if before_seq is not None:
        stmt = stmt.where(AuditEvent.seq < before_seq)
    if query.actor:
        stmt = stmt.where(AuditEvent.actor == query.actor)
    if query.action:
        if query.action.endswith("*"):
            prefix = query.action[:-1]
            # A range instead of LIKE, so that the (action, seq) index serves it on every engine.
            stmt = stmt.where(and_(AuditEvent.action >= prefix, AuditEvent.action < prefix + "\U0010ffff"))
        else:
            stmt = stmt.where(AuditEvent.action == query.action)
    if query.entity_type:
        stmt = stmt.where(AuditEvent.entity_type == query.entity_type)
    if query.entity_id:
        stmt = stmt.where(AuditEvent.entity_id == query.entity_id)
    if query.provider_id is not None:
        stmt = stmt.where(AuditEvent.provider_id == query.provider_id)
    events = list(session.scalars(stmt.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    more = len(events) > limit
    events = events[:limit]
    return LogPage(events=events, next_before=events[-1].seq if more and events else None)


@dataclass
class TimelineItem:
    at: datetime
    kind: str  # "event" or "check_run"
    event: AuditEvent | None = None
    run: CheckRun | None = None


@dataclass
class Timeline:
    items: list[TimelineItem]
    next_before: int | None


def provider_timeline(session: Session, provider_id: int, before_seq: int | None = None,
                      limit: int = 200) -> Timeline:
    """A page of the provider's history, newest first: its audit events, and the check runs of the same span."""
    page = search(session, LogQuery(provider_id=provider_id), before_seq, limit)
    runs = select(CheckRun).where(CheckRun.provider_id == provider_id)
    if before_seq is not None:
        upper = session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.seq == before_seq))
        if upper is not None:
            runs = runs.where(CheckRun.started_at < upper)
    if page.next_before is not None and page.events:
        runs = runs.where(CheckRun.started_at >= page.events[-1].occurred_at)
    items = [TimelineItem(e.occurred_at, "event", event=e) for e in page.events]
    items += [TimelineItem(r.started_at, "check_run", run=r)
              for r in session.scalars(runs.order_by(CheckRun.started_at.desc()).limit(limit))]
    items.sort(key=lambda item: item.at, reverse=True)
    return Timeline(items=items, next_before=page.next_before)


@dataclass
class VerificationBasis:
    """Who verified the provider, under which criteria, on what evidence."""

    decision: Decision
    submission: Submission
    assessments: list[Assessment]
    people: dict[int, Account]


def verification_basis(session: Session, provider: Provider) -> VerificationBasis | None:
    """The decision that granted the provider's verification (the one in force, or the last one), its request,
    assessments and people: the one reading behind both the auditor's box and the public receipt."""
    if provider.verified_decision_id is None:
        return None
    decision = session.get_one(Decision, provider.verified_decision_id)
    submission = decision.submission
    assessments = list(session.scalars(
        select(Assessment).where(Assessment.submission_id == submission.id)
        .options(selectinload(Assessment.criterion))))
    assessments.sort(key=lambda a: a.criterion.position)
    ids = {decision.decided_by_id, decision.second_signoff_by_id} | {a.assessed_by_id for a in assessments}
    ids.discard(None)
    people = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
    return VerificationBasis(decision, submission, assessments, people)


def changes(event: AuditEvent) -> list[dict[str, Any]]:
    """The fields an event changed, each with its value before and after."""
    before, after = event.before or {}, event.after or {}
    return [{"field": key, "before": before.get(key), "after": after.get(key)}
            for key in sorted(set(before) | set(after))]
