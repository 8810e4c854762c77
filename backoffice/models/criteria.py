"""The versioned listing-criteria catalogue."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, UTCDateTime, utcnow


class CriteriaCatalogue(Base):
    """One published version of the listing criteria; decisions keep the version they used."""

    __tablename__ = "criteria_catalogue"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(100))
    notes: Mapped[str | None] = mapped_column(Text)

    criteria: Mapped[list[Criterion]] = relationship(
        back_populates="catalogue", cascade="all, delete-orphan", order_by="Criterion.position"
    )

    def __str__(self) -> str:
        return f"v{self.version}"


class Criterion(Base):
    __tablename__ = "criterion"
    __table_args__ = (UniqueConstraint("catalogue_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    catalogue_id: Mapped[int] = mapped_column(ForeignKey("criteria_catalogue.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(300))
    guidance: Mapped[str] = mapped_column(Text)
    required: Mapped[bool] = mapped_column(Boolean)
    # Required for advertiser applications even where optional for listing (ACCREDITATION).
    required_for_advertisers: Mapped[bool] = mapped_column(Boolean, default=False)
    advertisers_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Levels of care that make the criterion apply; empty means it applies to every provider.
    applies_to_levels: Mapped[list[str]] = mapped_column(JSON, default=list)
    evidence: Mapped[str] = mapped_column(Text)
    automated_check: Mapped[str | None] = mapped_column(String(40))
    # Evidence older than this many days cannot be carried over into a later review: the criterion is assessed
    # again. None: evidence of any age may be confirmed.
    freshness_days: Mapped[int | None] = mapped_column(Integer)

    catalogue: Mapped[CriteriaCatalogue] = relationship(back_populates="criteria")

    def __str__(self) -> str:
        return self.code
