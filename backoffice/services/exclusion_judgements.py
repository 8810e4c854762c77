"""A researcher's word on an exclusion match, kept against the list record's identity across imports.

'Not the same person' stops the record being raised again for that provider and party while the record reads
the same; a confirmed match is not raised again once dealt with either. A record that has changed since (a
later list version with a new address, an NPI, a reinstatement date) is raised again with what changed.
"""
from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.checks.result import FindingSpec
from backoffice.models import (
    CheckKind,
    ExclusionJudgement,
    ExclusionRecord,
    ExclusionVerdict,
    Finding,
    FindingSeverity,
    FindingState,
    utcnow,
)
from backoffice.services import audit

NOT_COMPARED = {"SOURCE_FILE"}


def remember(session: Session, actor: audit.Actor, finding: Finding, verdict: ExclusionVerdict,
             reason: str) -> ExclusionJudgement | None:
    """Keep the researcher's verdict on the finding's list record (None for a finding from before identities)."""
    identity, party_key = finding.detail.get("record_identity"), finding.detail.get("party_key")
    if not identity or not party_key:
        return None
    judgement = session.scalar(select(ExclusionJudgement).where(
        ExclusionJudgement.provider_id == finding.provider_id, ExclusionJudgement.record_identity == identity,
        ExclusionJudgement.party_key == party_key))
    fields = {"verdict": verdict, "record_fingerprint": finding.detail["record_fingerprint"],
              "finding_id": finding.id, "judged_by": audit.actor_label(actor), "judged_at": utcnow(),
              "reason": reason, "list_name": finding.detail.get("record", {}).get("list") or "?"}
    before = None
    if judgement is None:
        judgement = ExclusionJudgement(provider_id=finding.provider_id, record_identity=identity,
                                       party_key=party_key, **fields)
        session.add(judgement)
    else:
        before = {"verdict": judgement.verdict.value, "record_fingerprint": judgement.record_fingerprint,
                  "finding_id": judgement.finding_id, "judged_by": judgement.judged_by,
                  "judged_at": judgement.judged_at, "reason": judgement.reason}
        for name, value in fields.items():
            setattr(judgement, name, value)
    session.flush()
    audit.record(session, actor, "exclusion_judgement.recorded", "exclusion_judgement", judgement.id,
                 before=before, after={"verdict": verdict.value, "record_identity": identity, "party_key": party_key,
                                       "record_fingerprint": judgement.record_fingerprint,
                                       "finding_id": finding.id, "judged_at": judgement.judged_at},
                 reason=reason, provider_id=finding.provider_id)
    return judgement


def _changed_columns(session: Session, judged_fingerprint: str, record_id: int) -> list[str]:
    """The list's columns that differ between the version judged and the one matched now."""
    judged = session.scalar(select(ExclusionRecord.raw).where(ExclusionRecord.row_key == judged_fingerprint)) or {}
    current = session.scalar(select(ExclusionRecord.raw).where(ExclusionRecord.id == record_id)) or {}
    return sorted(column for column in set(judged) | set(current)
                  if column not in NOT_COMPARED and (judged.get(column) or "").strip() != (current.get(column) or "").strip())


def weigh(session: Session, provider_id: int, specs: list[FindingSpec], open_keys: set[str]) -> list[FindingSpec]:
    """The exclusion findings to raise, in the light of what researchers decided: a record judged and unchanged
    is left out (unless its finding is still open, which the run keeps up to date); a changed one is raised
    with the judgement and the changed columns in its detail."""
    judgements = {(j.record_identity, j.party_key): j for j in session.scalars(
        select(ExclusionJudgement).where(ExclusionJudgement.provider_id == provider_id))}
    # Dismissed before judgements were kept: those records' identity is their digest, so the key is the same.
    dismissed_before = set(session.scalars(select(Finding.subject_key).where(
        Finding.provider_id == provider_id, Finding.check == CheckKind.EXCLUSION,
        Finding.state == FindingState.DISMISSED)))
    raised = []
    for spec in specs:
        judgement = judgements.get((spec.detail.get("record_identity", ""), spec.detail.get("party_key", "")))
        if judgement is None:
            if spec.subject_key not in dismissed_before:
                raised.append(spec)
            continue
        if judgement.record_fingerprint == spec.detail.get("record_fingerprint"):
            if spec.subject_key in open_keys and judgement.verdict == ExclusionVerdict.CONFIRMED:
                raised.append(spec)
            continue
        changed = _changed_columns(session, judgement.record_fingerprint, spec.detail["exclusion_record_id"])
        note = {"verdict": judgement.verdict.value, "judged_by": judgement.judged_by,
                "judged_at": judgement.judged_at, "changed_columns": changed}
        words = "confirmed" if judgement.verdict == ExclusionVerdict.CONFIRMED else "dismissed"
        # A confirmed match stays critical whatever changed; the researcher decides again.
        raised.append(replace(
            spec, title=f"List record changed since {words}: {spec.title}"[:300],
            severity=FindingSeverity.CRITICAL if judgement.verdict == ExclusionVerdict.CONFIRMED else spec.severity,
            detail={**spec.detail, "record_changed": audit.jsonable(note)}))
    return raised
