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


class CatalogueImpact(Base):
    """The impact report kept with a published version: what it changed for the providers listed when it was
    published, compared with the version then in force, and the re-reviews its publication opened."""

    __tablename__ = "catalogue_impact"

    catalogue_id: Mapped[int] = mapped_column(ForeignKey("criteria_catalogue.id"), primary_key=True)
    compared_with_id: Mapped[int | None] = mapped_column(ForeignKey("criteria_catalogue.id"))
    run_by: Mapped[str] = mapped_column(String(100))
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    listed_providers: Mapped[int] = mapped_column(Integer)
    affected_providers: Mapped[int] = mapped_column(Integer)
    # How many re-reviews scheduling would open (affected providers without a listing request open).
    rereviews: Mapped[int] = mapped_column(Integer)
    # Set when the publication scheduled them: how many were opened and by when the providers must answer.
    scheduled: Mapped[int | None] = mapped_column(Integer)
    respond_by: Mapped[datetime | None] = mapped_column(UTCDateTime)

    catalogue: Mapped[CriteriaCatalogue] = relationship(foreign_keys=[catalogue_id])
    compared_with: Mapped["CriteriaCatalogue | None"] = relationship(foreign_keys=[compared_with_id])


class CatalogueImpactProvider(Base):
    """One affected provider of a kept impact report, named as it was then, with the criteria in question."""

    __tablename__ = "catalogue_impact_provider"

    catalogue_id: Mapped[int] = mapped_column(ForeignKey("catalogue_impact.catalogue_id"), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), primary_key=True)
    provider_name: Mapped[str] = mapped_column(String(300))
    # [{"code": ..., "why": ...}]: required criteria it would no longer meet, and why, in words.
    failing: Mapped[list] = mapped_column(JSON, default=list)
    # Codes of required criteria the decision in force never assessed for it.
    new: Mapped[list] = mapped_column(JSON, default=list)
