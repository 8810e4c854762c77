"""What the research team is told, and how each person wants to be told it."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow


class NoticeMode(StrEnum):
    IMMEDIATELY = "immediately"
    DAILY = "daily"
    OFF = "off"

    @property
    def label(self) -> str:
        return {"immediately": "an e-mail at once", "daily": "in the daily digest", "off": "not at all"}[self.value]


class StaffNoticePreference(Base):
    """One person's choice for one kind of notice; no row means the default, an e-mail at once."""

    __tablename__ = "staff_notice_preference"

    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    mode: Mapped[NoticeMode] = mapped_column(enum_type(NoticeMode, "notice_mode"))


class StaffDigestItem(Base):
    """A notice kept for someone's daily digest until the digest is written."""

    __tablename__ = "staff_digest_item"
    __table_args__ = (Index("ix_staff_digest_item_waiting", "digested_at", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(300))
    link: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    digested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"))
