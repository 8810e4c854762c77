"""Notifications to providers and staff, written with the change and sent by a task."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow


class DeliveryState(StrEnum):
    """Where a message is: waiting (new, or back after a temporary failure), being sent, sent, or given up."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return {"pending": "waiting to be sent", "sending": "being sent", "sent": "sent",
                "failed": "could not be delivered"}[self.value]


class Notification(Base):
    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_unsent", "sent_at", "id"),
        # The delivery task's claim: what is due, oldest first.
        Index("ix_notification_due", "delivery_state", "next_attempt_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    recipient_email: Mapped[str] = mapped_column(String(254))
    kind: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    # The page the message is about, absolute (built on PUBLIC_BASE_URL); both parts of the message link to it.
    link: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivery_state: Mapped[DeliveryState] = mapped_column(
        enum_type(DeliveryState, "delivery_state"), default=DeliveryState.PENDING, server_default="pending")
    # Fixed before the first attempt and kept for every later one, so a copy sent twice is one message to a
    # mail program (it threads and de-duplicates by Message-ID).
    message_id: Mapped[str | None] = mapped_column(String(250), unique=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The mail server's last reply ("250 2.0.0 queued as 4F1"), or where the .eml file was written.
    last_reply: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
