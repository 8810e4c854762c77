"""Findings raised by checks and sweeps: open once per subject, update while open."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import (
    OPEN_FINDING_STATES,
    CheckKind,
    ExclusionVerdict,
    Finding,
    FindingSeverity,
    FindingState,
    Provider,
    utcnow,
)
from backoffice.services import audit, exclusion_judgements, provider_status, staff_notices
from backoffice.services.errors import Conflict, DomainError, InvalidTransition
from backoffice.services.reasons import require_reason


def open_or_update(
    session: Session,
    actor: audit.Actor,
    provider: Provider,
    check: CheckKind,
    subject_key: str,
    severity: FindingSeverity,
    title: str,
    detail: dict,
    check_run_id: int | None = None,
) -> tuple[Finding, bool]:
    """The open finding for this provider, check and subject, created if none is open; True if new."""
    finding = session.scalar(
        select(Finding).where(
            Finding.provider_id == provider.id,
            Finding.check == check,
            Finding.subject_key == subject_key,
            Finding.state.in_(OPEN_FINDING_STATES),
        )
    )
    if finding is not None:
        _seen_again(session, actor, lambda: provider, finding, severity, detail, check_run_id)
        session.flush()
        return finding, False
    finding = _new(session, provider.id, check, subject_key, severity, title, detail, check_run_id)
    session.flush()
    _announce(session, actor, lambda: provider, finding)
    return finding, True


def open_by_subject(session: Session, provider_ids: Iterable[int],
                    checks: Iterable[CheckKind]) -> dict[tuple[int, CheckKind], dict[str, Finding]]:
    """The open findings of several providers' checks in one read: (provider, check) -> subject -> finding."""
    found: dict[tuple[int, CheckKind], dict[str, Finding]] = {}
    for finding in session.scalars(select(Finding).where(Finding.provider_id.in_(sorted(set(provider_ids))),
                                                         Finding.check.in_(sorted(set(checks))),
                                                         Finding.state.in_(OPEN_FINDING_STATES))):
        found.setdefault((finding.provider_id, finding.check), {})[finding.subject_key] = finding
    return found


@dataclass
class RunFindings:
    """What one check run found, for `apply_runs`: its specs and whether it may clear what it no longer finds."""

    provider_id: int
    check: CheckKind
    check_run_id: int
    specs: list
    clears: bool
    clear_reason: str
    new_critical: list[Finding] = field(default_factory=list)


def apply_runs(session: Session, actor: audit.Actor, runs: list[RunFindings],
               provider_of: Callable[[int], Provider]) -> None:
    """Open, update and clear the findings of several check runs as `open_or_update` and `close_cleared` do
    one at a time, with one read of the open findings and one flush for the new ones. `provider_of` loads a
    provider only where a rule needs it (a critical finding stops advertising and tells the team).

    Each run's new critical findings are left in its `new_critical`, for the caller's auto-suspension."""
    open_now = open_by_subject(session, (r.provider_id for r in runs), (r.check for r in runs))
    created: list[tuple[RunFindings, Finding]] = []
    for run in runs:
        mine = open_now.setdefault((run.provider_id, run.check), {})
        for spec in run.specs:
            finding = mine.get(spec.subject_key)
            if finding is not None:
                _seen_again(session, actor, partial(provider_of, run.provider_id), finding, spec.severity,
                            spec.detail, run.check_run_id)
                continue
            # Two runs of one batch finding the same subject: the second sees the first's finding.
            mine[spec.subject_key] = finding = _new(session, run.provider_id, run.check, spec.subject_key,
                                                    spec.severity, spec.title, spec.detail, run.check_run_id)
            created.append((run, finding))
        if run.clears:
            still_failing = {spec.subject_key for spec in run.specs}
            for subject, finding in list(mine.items()):
                if subject not in still_failing and finding.state in OPEN_FINDING_STATES:
                    _close_state(session, actor, finding, FindingState.RESOLVED, run.clear_reason,
                                 "finding.cleared", None)
    session.flush()
    for run, finding in created:
        _announce(session, actor, partial(provider_of, run.provider_id), finding)
        if finding.severity == FindingSeverity.CRITICAL:
            run.new_critical.append(finding)


def _new(session: Session, provider_id: int, check: CheckKind, subject_key: str, severity: FindingSeverity,
         title: str, detail: dict, check_run_id: int | None) -> Finding:
    finding = Finding(provider_id=provider_id, check=check, subject_key=subject_key, severity=severity,
                      title=title, detail=audit.jsonable(detail), last_check_run_id=check_run_id)
    session.add(finding)
    return finding


def _announce(session: Session, actor: audit.Actor, provider: Callable[[], Provider], finding: Finding) -> None:
    """A finding just opened (and flushed, so it has its id): its audit event, and what a critical one sets off."""
    audit.record(
        session, actor, "finding.opened", "finding", finding.id,
        after={"check": finding.check.value, "subject_key": finding.subject_key, "severity": finding.severity.value,
               "title": finding.title},
        provider_id=finding.provider_id,
    )
    if finding.severity == FindingSeverity.CRITICAL:
        _stop_advertising(session, actor, provider(), finding)
        staff_notices.critical_finding(session, finding, provider())


def _seen_again(session: Session, actor: audit.Actor, provider: Callable[[], Provider], finding: Finding,
                severity: FindingSeverity, detail: dict, check_run_id: int | None) -> None:
    """An open finding found again: what it shows now comes from this run (audited when that changes it)."""
    confirmed = {k: v for k, v in finding.detail.items() if k.startswith("confirmed")}
    seen_before = {"detail": finding.detail, "last_check_run_id": finding.last_check_run_id}
    finding.detail = {**audit.jsonable(detail), **confirmed}
    finding.last_check_run_id = check_run_id or finding.last_check_run_id
    old, new = audit.changed(seen_before,
                             {"detail": finding.detail, "last_check_run_id": finding.last_check_run_id})
    if new:
        audit.record(session, actor, "finding.seen_again", "finding", finding.id, before=old, after=new,
                     provider_id=finding.provider_id)
    if confirmed:
        # A researcher confirmed it: a later automated run does not lower its severity.
        severity = finding.severity
    if severity != finding.severity:
        before = finding.severity
        finding.severity = severity
        audit.record(
            session, actor, "finding.severity_changed", "finding", finding.id,
            before={"severity": before.value}, after={"severity": severity.value},
            provider_id=finding.provider_id,
        )
        if severity == FindingSeverity.CRITICAL:
            _stop_advertising(session, actor, provider(), finding)
            staff_notices.critical_finding(session, finding, provider())


def _stop_advertising(session: Session, actor: audit.Actor, provider: Provider, finding: Finding) -> None:
    """A critical finding suspends advertising in the same transaction; resuming needs a new review."""
    provider_status.suspend_advertising(session, actor, provider, f"critical finding #{finding.id}: {finding.title}")


def _close_state(session: Session, actor: audit.Actor, finding: Finding, state: FindingState, reason: str,
                 action: str, expected_version: int | None) -> Finding:
    if expected_version is not None and finding.row_version != expected_version:
        raise Conflict("Someone changed this finding while you were looking at it. Reload it and try again.")
    if finding.state not in OPEN_FINDING_STATES:
        raise InvalidTransition(f"This finding is already {finding.state.label}.")
    before = finding.state
    finding.state = state
    if state in (FindingState.RESOLVED, FindingState.DISMISSED):
        finding.closed_at = utcnow()
        finding.closed_by = audit.actor_label(actor)
        finding.close_reason = reason
    audit.record(session, actor, action, "finding", finding.id, before={"state": before.value},
                 after={"state": state.value}, reason=reason, provider_id=finding.provider_id)
    session.flush()
    return finding


def _reason(reason: str | None) -> str:
    return require_reason(reason, "Give a reason: it is kept in the audit trail.")


def acknowledge(session: Session, actor: audit.Actor, finding: Finding, reason: str | None = None,
                expected_version: int | None = None) -> Finding:
    """A researcher has seen the finding and is working on it."""
    if finding.state != FindingState.OPEN:
        raise InvalidTransition(f"Only an open finding can be acknowledged; this one is {finding.state.label}.")
    return _close_state(session, actor, finding, FindingState.ACKNOWLEDGED, (reason or "").strip() or "acknowledged",
                        "finding.acknowledged", expected_version)


def resolve(session: Session, actor: audit.Actor, finding: Finding, reason: str,
            expected_version: int | None = None) -> Finding:
    """The problem was real and is dealt with."""
    return _close_state(session, actor, finding, FindingState.RESOLVED, _reason(reason), "finding.resolved",
                        expected_version)


def dismiss(session: Session, actor: audit.Actor, finding: Finding, reason: str,
            expected_version: int | None = None) -> Finding:
    """The finding was wrong (e.g. a name match that is another person); it is not raised again (an exclusion
    match: while the list record reads the same, whatever file carries it)."""
    reason = _reason(reason)
    _close_state(session, actor, finding, FindingState.DISMISSED, reason, "finding.dismissed", expected_version)
    if finding.check == CheckKind.EXCLUSION:
        exclusion_judgements.remember(session, actor, finding, ExclusionVerdict.DISMISSED, reason)
    return finding


def confirm(session: Session, actor: audit.Actor, finding: Finding, reason: str,
            expected_version: int | None = None) -> Finding:
    """A researcher confirms a probable exclusion match: it becomes critical and stays open for action."""
    reason = _reason(reason)
    if expected_version is not None and finding.row_version != expected_version:
        raise Conflict("Someone changed this finding while you were looking at it. Reload it and try again.")
    if finding.check != CheckKind.EXCLUSION or finding.state not in OPEN_FINDING_STATES:
        raise InvalidTransition("Only an open exclusion match can be confirmed.")
    if finding.detail.get("confirmed"):
        raise InvalidTransition("This exclusion match is already confirmed.")
    before = {"severity": finding.severity.value, "confirmed": False}
    finding.severity = FindingSeverity.CRITICAL
    finding.detail = {**finding.detail, "confirmed": True, "confirmed_by": audit.actor_label(actor)}
    audit.record(session, actor, "finding.exclusion_confirmed", "finding", finding.id, before=before,
                 after={"severity": FindingSeverity.CRITICAL.value, "confirmed": True}, reason=reason,
                 provider_id=finding.provider_id)
    exclusion_judgements.remember(session, actor, finding, ExclusionVerdict.CONFIRMED, reason)
    _stop_advertising(session, actor, finding.provider, finding)
    session.flush()
    return finding


def close_cleared(session: Session, actor: audit.Actor, provider_id: int, check: CheckKind,
                  still_failing: set[str], reason: str) -> list[Finding]:
    """Resolve the open findings of a check whose subject no longer fails (site back, reinstatement)."""
    open_findings = session.scalars(
        select(Finding).where(Finding.provider_id == provider_id, Finding.check == check,
                              Finding.state.in_(OPEN_FINDING_STATES))
    ).all()
    closed = [f for f in open_findings if f.subject_key not in still_failing]
    for finding in closed:
        _close_state(session, actor, finding, FindingState.RESOLVED, reason, "finding.cleared", None)
    return closed


def open_subject_keys(session: Session, provider_id: int, check: CheckKind) -> set[str]:
    return set(session.scalars(
        select(Finding.subject_key).where(Finding.provider_id == provider_id, Finding.check == check,
                                          Finding.state.in_(OPEN_FINDING_STATES))))


# What a researcher may do to several findings at once.
BULK_ACTIONS = {"acknowledge": "acknowledged", "dismiss": "dismissed"}


def act_on_many(session: Session, actor: audit.Actor, action: str, found: list[Finding], reason: str) -> int:
    """Acknowledge or dismiss several findings with one reason: each audited as if done alone, all of them or
    none (a finding that refuses names itself and the caller's unit of work rolls back the others)."""
    if action not in BULK_ACTIONS:
        raise DomainError("Choose acknowledge or dismiss.")
    reason = require_reason(reason)
    if not found:
        raise DomainError("Choose at least one finding.", field="ids")
    step = acknowledge if action == "acknowledge" else dismiss
    for finding in sorted(found, key=lambda f: f.id):
        try:
            step(session, actor, finding, reason)
        except DomainError as refused:
            raise type(refused)(f"Finding #{finding.id} ({finding.title}): {refused} Nothing was "
                                f"{BULK_ACTIONS[action]}.", field=refused.field) from refused
    return len(found)
