"""Imported exclusion lists (OIG LEIE, state Medicaid lists) to screen providers against."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow


class ExclusionRecordKind(StrEnum):
    EXCLUSION = "exclusion"
    REINSTATEMENT = "reinstatement"


class ExclusionSource(Base):
    """One imported file of an exclusion list."""

    __tablename__ = "exclusion_source"

    id: Mapped[int] = mapped_column(primary_key=True)
    list_name: Mapped[str] = mapped_column(String(40))
    file_name: Mapped[str] = mapped_column(String(255))
    file_date: Mapped[date | None] = mapped_column(Date)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    row_count: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    imported_by: Mapped[str] = mapped_column(String(100))


class ExclusionRecord(Base):
    __tablename__ = "exclusion_record"
    __table_args__ = (
        Index("ix_exclusion_record_name_state", "name_key", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("exclusion_source.id"), index=True)
    list_name: Mapped[str] = mapped_column(String(40))
    kind: Mapped[ExclusionRecordKind] = mapped_column(enum_type(ExclusionRecordKind, "exclusion_kind"))
    # A digest of the source row, so that the same row in a later file is not stored twice.
    row_key: Mapped[str] = mapped_column(String(64), unique=True)
    business_name: Mapped[str | None] = mapped_column(String(300))
    last_name: Mapped[str | None] = mapped_column(String(100))
    first_name: Mapped[str | None] = mapped_column(String(100))
    middle_name: Mapped[str | None] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(300))
    npi: Mapped[str | None] = mapped_column(String(10), index=True)
    state: Mapped[str | None] = mapped_column(String(2))
    city: Mapped[str | None] = mapped_column(String(100))
    exclusion_type: Mapped[str | None] = mapped_column(String(40))
    excluded_on: Mapped[date | None] = mapped_column(Date)
    reinstated_on: Mapped[date | None] = mapped_column(Date)
    raw: Mapped[dict] = mapped_column(JSON)

    source: Mapped[ExclusionSource] = relationship()
