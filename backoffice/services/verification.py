"""Verification status changes that are not a research decision: expiry."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import (
    AdvertisingStatus, CheckKind, Decision, FindingSeverity, ListingStatus, Provider, VerificationStatus,
)
from backoffice.services import audit, findings

SUSPENDABLE_ADVERTISING = (AdvertisingStatus.ACTIVE, AdvertisingStatus.PENDING)


def suspend_advertising(session: Session, actor: audit.Actor, provider: Provider, reason: str) -> bool:
    """Suspend a provider's advertising; True when it was active or pending."""
    if provider.advertising_status not in SUSPENDABLE_ADVERTISING:
        return False
    before = provider.advertising_status
    provider.advertising_status = AdvertisingStatus.SUSPENDED
    audit.record(
        session, actor, "advertising.suspended", "provider", provider.id,
        before={"advertising_status": before.value},
        after={"advertising_status": AdvertisingStatus.SUSPENDED.value},
        reason=reason, provider_id=provider.id,
    )
    return True


def lapsed_provider_ids(session: Session, now: datetime, limit: int, after_id: int = 0) -> list[int]:
    """Verified providers whose verified_until has passed, in id order after `after_id`."""
    return list(
        session.scalars(
            select(Provider.id)
            .where(Provider.verification_status == VerificationStatus.VERIFIED, Provider.verified_until < now,
                   Provider.id > after_id)
            .order_by(Provider.id)
            .limit(limit)
        )
    )


def expire_one(session: Session, actor: audit.Actor, provider_id: int, now: datetime) -> bool:
    """Expire one provider's lapsed verification, read afresh; False if there is nothing to do (any more)."""
    provider = session.get(Provider, provider_id)
    return provider is not None and expire_verification(session, actor, provider, now)


def expire_verification(session: Session, actor: audit.Actor, provider: Provider, now: datetime) -> bool:
    """Mark a lapsed verification `expired` and suspend advertising with it; False if nothing to do."""
    if provider.verification_status != VerificationStatus.VERIFIED:
        return False
    if provider.verified_until is None or provider.verified_until >= now:
        return False
    lapse(session, actor, provider, f"verified until {provider.verified_until:%d %b %Y, %H:%M} UTC, which has passed")
    findings.open_or_update(
        session, actor, provider, CheckKind.VERIFICATION_EXPIRY, "verification", FindingSeverity.WARNING,
        "Verification expired: re-verification is due",
        {"verified_until": provider.verified_until, "expired_at": now},
    )
    session.flush()
    return True


def lapse(session: Session, actor: audit.Actor, provider: Provider, reason: str) -> bool:
    """Verification becomes `expired` and advertising is suspended with it; False if not verified."""
    if provider.verification_status != VerificationStatus.VERIFIED:
        return False
    provider.verification_status = VerificationStatus.EXPIRED
    audit.record(
        session, actor, "verification.expired", "provider", provider.id,
        before={"verification_status": VerificationStatus.VERIFIED.value},
        after={"verification_status": VerificationStatus.EXPIRED.value},
        reason=reason, provider_id=provider.id,
    )
    suspend_advertising(session, actor, provider, f"verification expired: {reason}")
    return True


def expire_lapsed(session: Session, actor: audit.Actor, now: datetime, batch_size: int = 500) -> int:
    """Expire one batch of lapsed verifications; returns how many changed (0 when none are left)."""
    return sum(expire_one(session, actor, provider_id, now)
               for provider_id in lapsed_provider_ids(session, now, batch_size))


def grant(session: Session, actor: audit.Actor, provider: Provider, decision: Decision, verified_at: datetime,
          reason: str) -> None:
    """Verify and list the provider on the strength of an approved research decision, the only caller.

    The provider keeps which decision granted it, so the receipt and the auditor's box name that decision
    and not, say, a later one that did not grant anything yet or an earlier one overtaken by this.
    """
    fields = ("verification_status", "verified_at", "verified_until", "verified_catalogue_id",
              "verified_decision_id", "listing_status")
    before = audit.snapshot(provider, fields)
    provider.verification_status = VerificationStatus.VERIFIED
    provider.verified_at = verified_at
    provider.verified_until = decision.verified_until
    provider.verified_catalogue_id = decision.catalogue_id
    provider.verified_decision_id = decision.id
    provider.listing_status = ListingStatus.LISTED
    old, new = audit.changed(before, audit.snapshot(provider, fields))
    audit.record(session, actor, "verification.granted", "provider", provider.id,
                 before=old, after=new, reason=reason, provider_id=provider.id)
    session.flush()
