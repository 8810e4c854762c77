"""The append-only, hash-chained audit trail."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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
