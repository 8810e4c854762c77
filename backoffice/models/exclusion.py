"""Imported exclusion lists (OIG LEIE, state Medicaid lists) to screen providers against."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow
from backoffice.models.checks import Finding


def _own_identity(context) -> str:
    return context.get_current_parameters()["row_key"]


class ExclusionRecordKind(StrEnum):
    EXCLUSION = "exclusion"
    REINSTATEMENT = "reinstatement"


class ExclusionVerdict(StrEnum):
    DISMISSED = "dismissed"
    CONFIRMED = "confirmed"


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
    # A digest of the source row, so that the same row in a later file is not stored twice: the content's
    # fingerprint. A changed row in a later file is a new record with the same identity.
    row_key: Mapped[str] = mapped_column(String(64), unique=True)
    # A digest of the fields that say who and which exclusion (names, date of birth, exclusion date): the same
    # list record across imports and list versions, whatever else about it changes.
    # A row written without one (fixtures, the benchmark's made-up rows) stands for itself.
    identity: Mapped[str] = mapped_column(String(64), index=True, default=_own_identity)
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


class ExclusionJudgement(Base):
    """A researcher's word on one list record against one provider's party: not the same person, or the same.

    Kept against the record's identity, so that a re-import or a later list version carrying the record does
    not ask again; the fingerprint judged tells whether the record has changed since.
    """

    __tablename__ = "exclusion_judgement"
    __table_args__ = (
        UniqueConstraint("provider_id", "record_identity", "party_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    record_identity: Mapped[str] = mapped_column(String(64))
    # Who on our side was matched: role and name key (or NPI), as in the finding's subject key.
    party_key: Mapped[str] = mapped_column(String(200))
    list_name: Mapped[str] = mapped_column(String(40))
    verdict: Mapped[ExclusionVerdict] = mapped_column(enum_type(ExclusionVerdict, "exclusion_verdict"))
    record_fingerprint: Mapped[str] = mapped_column(String(64))
    finding_id: Mapped[int | None] = mapped_column(ForeignKey(Finding.id))
    judged_by: Mapped[str] = mapped_column(String(100))
    judged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str] = mapped_column(Text)
