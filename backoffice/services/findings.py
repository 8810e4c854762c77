"""Findings raised by checks and sweeps: open once per subject, update while open."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import OPEN_FINDING_STATES, CheckKind, Finding, FindingSeverity, Provider
from backoffice.services import audit


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
        finding.detail = audit.jsonable(detail)
        finding.last_check_run_id = check_run_id or finding.last_check_run_id
        if severity != finding.severity:
            before = finding.severity
            finding.severity = severity
            audit.record(
                session, actor, "finding.severity_changed", "finding", finding.id,
                before={"severity": before.value}, after={"severity": severity.value},
                provider_id=provider.id,
            )
        session.flush()
        return finding, False
    finding = Finding(
        provider_id=provider.id, check=check, subject_key=subject_key, severity=severity,
        title=title, detail=audit.jsonable(detail), last_check_run_id=check_run_id,
    )
    session.add(finding)
    session.flush()
    audit.record(
        session, actor, "finding.opened", "finding", finding.id,
        after={"check": check.value, "subject_key": subject_key, "severity": severity.value, "title": title},
        provider_id=provider.id,
    )
    return finding, True
