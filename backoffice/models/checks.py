"""Automated check runs and the findings they raise."""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow

if TYPE_CHECKING:  # named in annotations only; relationship() finds the classes through the registry
    from backoffice.models.provider import Provider


class CheckKind(StrEnum):
    WEBSITE = "website"
    NPI = "npi"
    EXCLUSION = "exclusion"
    LICENCE_EXPIRY = "licence_expiry"
    ACCREDITATION_EXPIRY = "accreditation_expiry"
    VERIFICATION_EXPIRY = "verification_expiry"
    SUBMISSION_SLA = "submission_sla"


class CheckOutcome(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"


class CheckRun(Base):
    __tablename__ = "check_run"
    __table_args__ = (
        Index("ix_check_run_provider_check_started", "provider_id", "check", "started_at"),
        # The metrics count the last day's runs by check and outcome from this index alone.
        Index("ix_check_run_started_check_outcome", "started_at", "check", "outcome"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    check: Mapped[CheckKind] = mapped_column(enum_type(CheckKind, "check_kind"))
    outcome: Mapped[CheckOutcome] = mapped_column(enum_type(CheckOutcome, "check_outcome"), index=True)
    summary: Mapped[str] = mapped_column(String(500))
    evidence: Mapped[dict] = mapped_column(JSON, default=dict)
    source_version: Mapped[str | None] = mapped_column(String(200))
    # One run per provider, check and due window: a task that runs twice finds its run already here.
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)

    provider: Mapped["Provider"] = relationship()


class FindingSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class FindingState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


OPEN_FINDING_STATES = frozenset({FindingState.OPEN, FindingState.ACKNOWLEDGED})


class Finding(Base):
    __tablename__ = "finding"
    __table_args__ = (
        # Covers the open-findings worklist: its ids are sorted from the index without reading the rows.
        Index("ix_finding_state_severity_opened", "state", "severity", "opened_at"),
        Index("ix_finding_provider_state", "provider_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    check: Mapped[CheckKind] = mapped_column(enum_type(CheckKind, "finding_check_kind"))
    # What the finding is about within the check (a licence id, an exclusion record), so that a
    # repeated failure updates the open finding instead of opening another.
    subject_key: Mapped[str] = mapped_column(String(200))
    severity: Mapped[FindingSeverity] = mapped_column(enum_type(FindingSeverity, "finding_severity"))
    state: Mapped[FindingState] = mapped_column(
        enum_type(FindingState, "finding_state"), default=FindingState.OPEN
    )
    title: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    last_check_run_id: Mapped[int | None] = mapped_column(ForeignKey("check_run.id"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(100))
    close_reason: Mapped[str | None] = mapped_column(Text)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    provider: Mapped["Provider"] = relationship()

    __mapper_args__ = {"version_id_col": row_version}


class ExpiryReminder(Base):
    """A reminder sent for one expiry date at one threshold (90, 60, 30, 7 days): each is sent once."""

    __tablename__ = "expiry_reminder"
    __table_args__ = (UniqueConstraint("entity_type", "entity_id", "expires_on", "days_before"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    # licence, accreditation or verification; a renewed expiry date is a new subject.
    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    expires_on: Mapped[date] = mapped_column(Date)
    days_before: Mapped[int] = mapped_column(Integer)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
