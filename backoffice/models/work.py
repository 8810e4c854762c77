"""Requested work: a row per piece of work asked for, kept until it is done; the broker carries its id only."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow


class WorkKind(StrEnum):
    RECHECK_NOW = "recheck_now"  # one network check a researcher asked for ("Re-check now")
    SCHEDULED_CHECK = "scheduled_check"  # one network check of a provider's due window (the re-check sweep)
    SCREENING = "screening"  # one provider's exclusion screening (after a list import, and monthly)
    IMPORT_SCREENING = "import_screening"  # screen every listed provider against a newly imported list
    SCREENING_BATCH = "screening_batch"  # the exclusion screening of a batch of providers in one window
    EXPIRY_SWEEP = "expiry_sweep"  # a research lead asked for the verification-expiry sweep now
    CHECKPOINT = "checkpoint"  # a signed checkpoint of the audit chain's head, after a verification was granted
    REREVIEWS = "rereviews"  # open the re-reviews a criteria version's publication scheduled, in batches


class WorkState(StrEnum):
    REQUESTED = "requested"  # recorded with the change that asked for it; not yet accepted by the broker
    SENT = "sent"  # the broker accepted a message carrying the row's id
    RUNNING = "running"  # a worker claimed it and holds its lease
    DONE = "done"
    FAILED = "failed"  # gave up after max_attempts; staff can retry it


OPEN_WORK_STATES = frozenset({WorkState.REQUESTED, WorkState.SENT, WorkState.RUNNING})
_OPEN = "state IN ('requested', 'sent', 'running')"


class Work(Base):
    __tablename__ = "work"
    __table_args__ = (
        # The reconciler's one query: open rows whose lease ran out, oldest first. Partial, so the finished
        # rows (nearly all of them) are not in it at all.
        Index("ix_work_open_lease", "lease_expires_at", sqlite_where=text(_OPEN), postgresql_where=text(_OPEN)),
        # One open row per piece of work: asking again while it waits gives the waiting row.
        Index("uq_work_open_key", "idempotency_key", unique=True,
              sqlite_where=text(_OPEN), postgresql_where=text(_OPEN)),
        # The staff page lists failed work too, newest first.
        Index("ix_work_failed", "updated_at", sqlite_where=text("state = 'failed'"),
              postgresql_where=text("state = 'failed'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[WorkKind] = mapped_column(enum_type(WorkKind, "work_kind"))
    # What the work is about: ("provider", 12), ("exclusion_source", 3), ("sweep", "verification_expiry").
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(60))
    # What the task needs besides the target (a check and its window); never ORM objects.
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    state: Mapped[WorkState] = mapped_column(enum_type(WorkState, "work_state"), default=WorkState.REQUESTED)
    # Requested: when it should have been sent by; sent: taken by a worker by; running: finished by.
    # Past it, the reconciler sends the row again.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    last_error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
