"""Failed sign-in attempts, counted in the database so that a lock-out holds across every web process."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow


class AttemptKind(StrEnum):
    SIGN_IN = "sign_in"  # a password for an e-mail address: keyed by the normalised address typed
    SECOND_FACTOR = "second_factor"  # a code at sign-in: keyed by the account's id
    ACCOUNT_SECURITY = "account_security"  # the current password or a code on the security page: the account


class FailedAttempt(Base):
    """One attempt that counts against a lock-out: written before the attempt is judged, removed again when it
    succeeds, and pruned once older than the longest window that counts it."""

    __tablename__ = "failed_attempt"
    __table_args__ = (
        # Serves the count of one key's attempts within a window.
        Index("ix_failed_attempt_kind_key_at", "kind", "key", "attempted_at"),
        # Serves pruning what every window has forgotten.
        Index("ix_failed_attempt_kind_at", "kind", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[AttemptKind] = mapped_column(enum_type(AttemptKind, "attempt_kind"))
    key: Mapped[str] = mapped_column(String(254))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
