"""The append-only, hash-chained audit trail."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, UTCDateTime

GENESIS_HASH = "0" * 64


class AuditEvent(Base):
    """One recorded change; database triggers refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_entity", "entity_type", "entity_id", "seq"),
        Index("ix_audit_event_provider", "provider_id", "seq"),
        Index("ix_audit_event_actor", "actor", "seq"),
        Index("ix_audit_event_action", "action", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(50))
    provider_id: Mapped[int | None] = mapped_column(Integer)
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(45))
    # unique: two appenders that read the same head cannot both extend it, so the chain cannot fork.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainLock(Base):
    """The single row every commit that appends to the chain locks first; it records the chain's head,
    so that events removed from the end are detected. Triggers refuse to delete it or move it back."""

    __tablename__ = "audit_chain_lock"

    id: Mapped[int] = mapped_column(primary_key=True)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    head_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)


class AuditCheckpoint(Base):
    """The chain's head as recorded by the daily verification; kept apart so that exports carry it and a
    truncated or rewritten tail is caught even if the head row were tampered with. Append-only."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    head_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    head_hash: Mapped[str] = mapped_column(String(64))


class AuditVerification(Base):
    """One full verification of the chain: when, by whom, how many events, the first broken one if any, and the
    checkpoint it took when the chain verified. Append-only: every run is kept for the auditors' history."""

    __tablename__ = "audit_verification"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    checked: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    ok: Mapped[bool] = mapped_column(Boolean)
    broken_seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    problem: Mapped[str | None] = mapped_column(Text)
    run_by: Mapped[str] = mapped_column(String(100))
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("audit_checkpoint.id"))

    checkpoint: Mapped[AuditCheckpoint | None] = relationship(lazy="joined")
