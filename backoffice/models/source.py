"""External sources (the exclusion lists, NPPES) and how fresh each is; which source last confirmed each field."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backoffice.models.base import Base, UTCDateTime


class DataSource(Base):
    """One external source a check relies on: when it was last imported (a list) or answered (NPPES)."""

    __tablename__ = "data_source"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The list name of an exclusion list (oig_leie, ny_omig, ...) or "nppes".
    name: Mapped[str] = mapped_column(String(40), unique=True)
    last_refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when a check first finds the source older than its expected freshness; cleared by a refresh.
    stale_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class FieldConfirmation(Base):
    """When a listed field (website, NPI, address, licence, accreditation) was last confirmed, and by what."""

    __tablename__ = "field_confirmation"
    __table_args__ = (UniqueConstraint("provider_id", "field"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(20))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(100))
    check_run_id: Mapped[int | None] = mapped_column(ForeignKey("check_run.id"))
