"""What a check concludes, before anything is written: the run's outcome and the findings it raises."""
from __future__ import annotations

from dataclasses import dataclass, field

from backoffice.models import CheckOutcome, FindingSeverity


@dataclass(frozen=True)
class FindingSpec:
    subject_key: str
    severity: FindingSeverity
    title: str
    detail: dict = field(default_factory=dict)


@dataclass
class CheckResult:
    outcome: CheckOutcome
    summary: str
    evidence: dict = field(default_factory=dict)
    findings: list[FindingSpec] = field(default_factory=list)
    source_version: str | None = None
    #: True when the check could not reach a verdict: open findings are left as they are.
    inconclusive: bool = False

    @classmethod
    def error(cls, summary: str, evidence: dict | None = None) -> "CheckResult":
        return cls(CheckOutcome.ERROR, summary[:500], evidence or {}, inconclusive=True)
