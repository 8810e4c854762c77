"""Accounts (staff and providers), their roles and the organisations they act for."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backoffice.models.base import Base, SealedString, StrEnum, UTCDateTime, enum_type, utcnow

if TYPE_CHECKING:  # named in annotations only; relationship() finds the classes through the registry
    from backoffice.models.provider import Provider


class Role(StrEnum):
    PROVIDER = "provider"
    RESEARCHER = "researcher"
    RESEARCH_LEAD = "research_lead"
    AUDITOR = "auditor"
    ADMIN = "admin"


STAFF_ROLES = frozenset({Role.RESEARCHER, Role.RESEARCH_LEAD, Role.AUDITOR, Role.ADMIN})
RESEARCH_ROLES = frozenset({Role.RESEARCHER, Role.RESEARCH_LEAD})
# Staff who read the directory's records and evidence: the research team and auditors, not account administrators.
READER_ROLES = frozenset({*RESEARCH_ROLES, Role.AUDITOR})


class Account(Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped on logout and password change so that other sessions of the account end.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Second factor (TOTP, RFC 6238). The last accepted time step only ever moves forward, so a code is
    # accepted once: see services.mfa.
    # Sealed at rest (SealedString), and loaded only when a code is checked, not with every signed-in request.
    totp_secret: Mapped[str | None] = mapped_column(SealedString(), deferred=True)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # The IANA time zone staff pages show this person's dates in; None: the DISPLAY_TIME_ZONE setting.
    time_zone: Mapped[str | None] = mapped_column(String(64))

    roles: Mapped[list[AccountRole]] = relationship(
        back_populates="account", cascade="all, delete-orphan", lazy="selectin",
        foreign_keys="AccountRole.account_id",
    )
    memberships: Mapped[list[OrganisationMember]] = relationship(
        back_populates="account", cascade="all, delete-orphan"
    )

    @property
    def role_set(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.roles)

    def has_role(self, *roles: Role) -> bool:
        return bool(self.role_set.intersection(roles))

    @property
    def is_staff(self) -> bool:
        return bool(self.role_set & STAFF_ROLES)

    # Flask-Login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    @property
    def has_second_factor(self) -> bool:
        return self.totp_enabled_at is not None

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def __str__(self) -> str:
        return self.email


class AccountRole(Base):
    __tablename__ = "account_role"
    __table_args__ = (UniqueConstraint("account_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    granted_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))

    account: Mapped[Account] = relationship(back_populates="roles", foreign_keys=[account_id])


class OrganisationMember(Base):
    """A provider account that may act for an organisation (a Provider)."""

    __tablename__ = "organisation_member"
    __table_args__ = (UniqueConstraint("account_id", "provider_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship(back_populates="memberships")
    provider: Mapped["Provider"] = relationship(back_populates="members")


class RecoveryCode(Base):
    """A one-time code that stands in for the authenticator; only its SHA-256 is kept."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RoleGrantState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


class RoleGrantRequest(Base):
    """A staff role asked for by one admin and granted only when a second admin approves."""

    __tablename__ = "role_grant_request"
    __table_args__ = (
        # One open request per account and role.
        Index("uq_role_grant_request_pending", "account_id", "role", unique=True,
              sqlite_where=text("state = 'pending'"), postgresql_where=text("state = 'pending'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(enum_type(Role, "role"))
    state: Mapped[RoleGrantState] = mapped_column(enum_type(RoleGrantState, "role_grant_state"),
                                                  default=RoleGrantState.PENDING)
    reason: Mapped[str] = mapped_column(Text)
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    row_version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": row_version}

    account: Mapped[Account] = relationship(foreign_keys=[account_id])
    requested_by: Mapped[Account] = relationship(foreign_keys=[requested_by_id])
    decided_by: Mapped[Account | None] = relationship(foreign_keys=[decided_by_id])
