"""Providers (treatment organisations) with their locations, licences, accreditations and principals."""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ColumnElement,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    text,
)
from sqlalchemy.ext.hybrid import hybrid_method
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, StrEnum, UTCDateTime, enum_type, utcnow

if TYPE_CHECKING:  # named in annotations only; relationship() finds the classes through the registry
    from backoffice.models.account import OrganisationMember


class ListingStatus(StrEnum):
    UNLISTED = "unlisted"
    LISTED = "listed"
    SUSPENDED = "suspended"
    DELISTED = "delisted"
    CLOSED = "closed"


class VerificationStatus(StrEnum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    EXPIRED = "expired"
    REVOKED = "revoked"


class AdvertisingStatus(StrEnum):
    NONE = "none"
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    ENDED = "ended"


class PrincipalRole(StrEnum):
    MEDICAL_DIRECTOR = "medical_director"
    CLINICAL_DIRECTOR = "clinical_director"
    OWNER = "owner"
    OFFICER = "officer"


class Provider(Base):
    __tablename__ = "provider"
    __table_args__ = (
        UniqueConstraint("import_source", "import_key"),
        Index("ix_provider_listing_verification", "listing_status", "verification_status"),
        # Invariant 3: an active advertiser is always a verified provider.
        CheckConstraint("advertising_status != 'active' OR verification_status = 'verified'",
                        name="advertiser_is_verified"),
        # The review queue's, the providers list's and the HSDS search by a word of a name (ILIKE '%word%'; the
        # list's search ORs it with the NPI), which no B-tree serves: trigram indexes on PostgreSQL (pg_trgm).
        # SQLite reads its 100k names in one pass (about 20 ms).
        *(Index(f"ix_provider_{name}_trgm", name, postgresql_using="gin",
                postgresql_ops={name: "gin_trgm_ops"}).ddl_if(dialect="postgresql")
          for name in ("public_name", "legal_name", "npi")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    legal_name: Mapped[str] = mapped_column(String(300))
    public_name: Mapped[str] = mapped_column(String(300), index=True)
    npi: Mapped[str | None] = mapped_column(String(10), index=True)
    website: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(254))
    levels_of_care: Mapped[list[str]] = mapped_column(JSON, default=list)
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    populations: Mapped[list[str]] = mapped_column(JSON, default=list)
    payment_accepted: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The IANA time zone the organisation's people read dates in; None: from its first location's state.
    time_zone: Mapped[str | None] = mapped_column(String(64))

    listing_status: Mapped[ListingStatus] = mapped_column(
        enum_type(ListingStatus, "listing_status"), default=ListingStatus.UNLISTED
    )
    verification_status: Mapped[VerificationStatus] = mapped_column(
        enum_type(VerificationStatus, "verification_status"), default=VerificationStatus.UNVERIFIED
    )
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    verified_catalogue_id: Mapped[int | None] = mapped_column(ForeignKey("criteria_catalogue.id"))
    # The research decision that granted the verification in force (or the last one): what the receipt and
    # the auditor's "who verified it" box both name. use_alter: decision -> submission -> provider is a cycle.
    verified_decision_id: Mapped[int | None] = mapped_column(ForeignKey("decision.id", use_alter=True))
    advertising_status: Mapped[AdvertisingStatus] = mapped_column(
        enum_type(AdvertisingStatus, "advertising_status"), default=AdvertisingStatus.NONE
    )
    last_rechecked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recheck_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)

    # Where an imported provider came from, so that a re-import updates instead of duplicating.
    import_source: Mapped[str | None] = mapped_column(String(40))
    import_key: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    locations: Mapped[list[Location]] = relationship(
        back_populates="provider", cascade="all, delete-orphan", order_by="Location.id"
    )
    licences: Mapped[list[Licence]] = relationship(
        back_populates="provider", cascade="all, delete-orphan", order_by="Licence.id"
    )
    accreditations: Mapped[list[Accreditation]] = relationship(
        back_populates="provider", cascade="all, delete-orphan", order_by="Accreditation.id"
    )
    principals: Mapped[list[Principal]] = relationship(
        back_populates="provider", cascade="all, delete-orphan", order_by="Principal.id"
    )
    members: Mapped[list["OrganisationMember"]] = relationship(back_populates="provider")

    __mapper_args__ = {"version_id_col": row_version}

    def __str__(self) -> str:
        return self.public_name

    # What "verified", "an active advertiser" and "in the directory" mean, once, for Python and SQL alike. The
    # stored statuses change only through their owner (services/provider_status.py; the hourly expiry sweep), so
    # between verified_until passing and the sweep they still say verified and active: every reader asks these
    # instead, and counts, feeds, receipts and pages agree from the moment verification ends.

    @hybrid_method
    def is_verified(self, now: datetime) -> bool:
        """Verified by the research team and not past verified_until."""
        return (self.verification_status == VerificationStatus.VERIFIED and self.verified_until is not None
                and self.verified_until > now)

    @is_verified.expression
    @classmethod
    def _is_verified_expression(cls, now: datetime) -> ColumnElement[bool]:
        return and_(cls.verification_status == VerificationStatus.VERIFIED, cls.verified_until > now)

    @hybrid_method
    def is_active_advertiser(self, now: datetime) -> bool:
        """Advertising active and, with it, currently verified (invariant 3)."""
        return self.advertising_status == AdvertisingStatus.ACTIVE and self.is_verified(now)

    @is_active_advertiser.expression
    @classmethod
    def _is_active_advertiser_expression(cls, now: datetime) -> ColumnElement[bool]:
        return and_(cls.advertising_status == AdvertisingStatus.ACTIVE, cls.is_verified(now))

    @hybrid_method
    def is_in_directory(self, now: datetime) -> bool:
        """Listed and currently verified: nothing else leaves this system."""
        return self.listing_status == ListingStatus.LISTED and self.is_verified(now)

    @is_in_directory.expression
    @classmethod
    def _is_in_directory_expression(cls, now: datetime) -> ColumnElement[bool]:
        return and_(cls.listing_status == ListingStatus.LISTED, cls.is_verified(now))

    def verification_at(self, now: datetime) -> VerificationStatus:
        """The verification status in force: expired once verified_until has passed, even before the sweep."""
        if self.verification_status == VerificationStatus.VERIFIED and not self.is_verified(now):
            return VerificationStatus.EXPIRED
        return self.verification_status

    def advertising_at(self, now: datetime) -> AdvertisingStatus:
        """The advertising status in force: an advertiser whose verification has lapsed is suspended with it,
        as the sweep will record."""
        if self.advertising_status in (AdvertisingStatus.ACTIVE, AdvertisingStatus.PENDING) and \
                self.verification_at(now) != self.verification_status:
            return AdvertisingStatus.SUSPENDED
        return self.advertising_status

    @property
    def verification_now(self) -> VerificationStatus:
        return self.verification_at(utcnow())

    @property
    def advertising_now(self) -> AdvertisingStatus:
        return self.advertising_at(utcnow())


# A provider's coded lists, by the name its codes are filed under in provider_code.
CODED_LISTS = {"levels_of_care": "level_of_care", "services": "service", "populations": "population",
               "payment_accepted": "payment"}


class ProviderCode(Base):
    """One code of one of a provider's coded lists (levels of care, services, populations, payment), kept
    beside the JSON lists so the feed finds the providers offering a service from an index, on either engine,
    instead of reading every provider's list. Written only by services/provider_codes.py, whenever a
    provider's lists are flushed."""

    __tablename__ = "provider_code"
    # By provider, and by kind in provider order: the HSDS services list pages and counts a kind's codes in
    # provider order from this index instead of sorting them.
    __table_args__ = (Index("ix_provider_code_provider", "provider_id"),
                      Index("ix_provider_code_kind_provider", "kind", "provider_id", "code"))

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    code: Mapped[str] = mapped_column(String(200), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), primary_key=True)


class Location(Base):
    __tablename__ = "location"
    # The queue's and the feed's state filter: find the providers of a state without a table scan; the queue's
    # search by city, in any case.
    __table_args__ = (Index("ix_location_state_provider", "state", "provider_id"),
                      Index("ix_location_city_lower", text("lower(city)")))

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), index=True)
    street1: Mapped[str] = mapped_column(String(200))
    street2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(2))
    zip: Mapped[str] = mapped_column(String(10))
    county: Mapped[str | None] = mapped_column(String(100))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    phone: Mapped[str | None] = mapped_column(String(40))

    provider: Mapped[Provider] = relationship(back_populates="locations")

    def __str__(self) -> str:
        return f"{self.street1}, {self.city}, {self.state} {self.zip}"


class Licence(Base):
    __tablename__ = "licence"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(2))
    number: Mapped[str] = mapped_column(String(100))
    licence_type: Mapped[str] = mapped_column(String(200))
    issuing_agency: Mapped[str | None] = mapped_column(String(200))
    levels_of_care: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_on: Mapped[date | None] = mapped_column(Date, index=True)

    provider: Mapped[Provider] = relationship(back_populates="licences")


class Accreditation(Base):
    __tablename__ = "accreditation"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(String(200))
    accreditation_id: Mapped[str | None] = mapped_column(String(100))
    expires_on: Mapped[date | None] = mapped_column(Date, index=True)

    provider: Mapped[Provider] = relationship(back_populates="accreditations")


class Principal(Base):
    __tablename__ = "principal"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[PrincipalRole] = mapped_column(enum_type(PrincipalRole, "principal_role"))
    npi: Mapped[str | None] = mapped_column(String(10), index=True)
    notes: Mapped[str | None] = mapped_column(Text)

    provider: Mapped[Provider] = relationship(back_populates="principals")


class VerificationActionKind(StrEnum):
    REVOKE = "revoke"


class VerificationActionState(StrEnum):
    AWAITING_SIGNOFF = "awaiting_signoff"
    APPLIED = "applied"
    DECLINED = "declined"


class VerificationAction(Base):
    """A revocation asked for by one researcher that takes effect when a second one signs it off."""

    __tablename__ = "verification_action"
    # At most one revocation awaits sign-off per provider, however many researchers ask at once.
    __table_args__ = (Index("uq_verification_action_one_awaiting", "provider_id", unique=True,
                            sqlite_where=text("state = 'awaiting_signoff'"),
                            postgresql_where=text("state = 'awaiting_signoff'")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    kind: Mapped[VerificationActionKind] = mapped_column(enum_type(VerificationActionKind, "verification_action_kind"))
    state: Mapped[VerificationActionState] = mapped_column(
        enum_type(VerificationActionState, "verification_action_state"),
        default=VerificationActionState.AWAITING_SIGNOFF,
    )
    reason: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signed_off_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    signed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    declined_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    declined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decline_reason: Mapped[str | None] = mapped_column(Text)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    provider: Mapped[Provider] = relationship()

    __mapper_args__ = {"version_id_col": row_version}
