"""Signed verification receipts and the signed list of receipts that no longer hold.

A receipt's id is derived from the research decision that granted the verification it attests
(`decision-<id>`), so which receipts still hold is a fact of the database, not a record of what was handed
out: a receipt holds while its decision is the one in force for a provider in the directory. The status list
names every receipt that could still be unexpired (its decision's `verified_until` is ahead) and no longer
holds, with since when and why, and is computed by one set-based query (docs/DESIGN.md, "Signed receipts").
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, not_, select
from sqlalchemy.orm import Session

from backoffice import jws, receiptverify
from backoffice.models import (
    AuditEvent,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ListingStatus,
    Provider,
    Submission,
    VerificationStatus,
)
from backoffice.services import listings

# The token types the standalone verifier expects; it is the one place they are written.
RECEIPT_TYPE = receiptverify.RECEIPT_TYPE
STATUS_LIST_TYPE = receiptverify.STATUS_LIST_TYPE
STATUS_LIST_KIND = "RevokedReceiptList"
# How long a fetched status list may be trusted: a directory fetches it again within the hour, so a receipt
# revoked now is refused everywhere within an hour (and the list is cached for a few minutes at most).
STATUS_LIST_LIFETIME = timedelta(hours=1)
# A signed list is served again for at most this long while nothing was audited since (state_version).
STATUS_LIST_REUSE = timedelta(minutes=5)
# The transitions that take a provider out of the directory; the latest one says since when a receipt stopped.
LEAVING_ACTIONS = ("verification.revoked", "verification.expired", "listing.suspended")


def receipt_id(decision_id: int) -> str:
    return f"decision-{decision_id}"


def numeric_date(moment: datetime) -> int:
    """A JWT NumericDate: whole seconds since the epoch (RFC 7519)."""
    return int(moment.timestamp())


def receipt_claims(session: Session, provider: Provider, now: datetime, issuer: str, subject: str,
                   status_list: str) -> dict[str, Any] | None:
    """The claims of a signed receipt for a provider in the directory, or None when no decision is recorded as
    having granted its verification (a receipt id names that decision)."""
    if provider.verified_decision_id is None or provider.verified_until is None:
        return None
    jti = receipt_id(provider.verified_decision_id)
    return {
        "iss": issuer,
        "sub": subject,
        "iat": numeric_date(now),
        "exp": numeric_date(provider.verified_until),  # never later than the verification it attests
        "jti": jti,
        "status": {"type": STATUS_LIST_KIND, "list": status_list, "id": jti},
        "receipt": listings.receipt(session, provider),
    }


@dataclass(frozen=True)
class Entry:
    """A receipt that no longer holds: its id, the provider, why, and since when."""

    jti: str
    provider_id: int
    reason: str
    since: datetime

    def claims(self) -> dict[str, Any]:
        return {"id": self.jti, "sub_id": self.provider_id, "reason": self.reason, "since": jws.rfc3339(self.since)}


def no_longer_holding(session: Session, now: datetime) -> list[Entry]:
    """Every receipt that may still be unexpired and no longer holds, in one query.

    Only decisions whose validity is ahead can back an unexpired receipt (a receipt's exp is its
    verified_until), so the list stays about as long as the directory's recent departures, not its history.
    """
    listed = func.coalesce(Provider.is_in_directory(now), False)
    in_force = func.coalesce(and_(Provider.verified_decision_id == Decision.id, listed), False)
    left_at = (select(func.max(AuditEvent.occurred_at))
               .where(AuditEvent.provider_id == Provider.id, AuditEvent.action.in_(LEAVING_ACTIONS),
                      AuditEvent.occurred_at >= Decision.decided_at)
               .correlate(Provider, Decision).scalar_subquery())
    rows = session.execute(
        select(Decision.id, Provider.id, Provider.verified_decision_id, listed, Provider.verification_status,
               Provider.listing_status, Provider.verified_until, Provider.verified_at, Decision.decided_at, left_at)
        .join(Submission, Submission.id == Decision.submission_id)
        .join(Provider, Provider.id == Submission.provider_id)
        .where(Decision.outcome == DecisionOutcome.APPROVED, Decision.status == DecisionStatus.FINAL,
               Decision.verified_until > now, not_(in_force))
        .order_by(Decision.id))
    return [_entry(now, *tuple(row)) for row in rows]


def _entry(now: datetime, decision_id: int, provider_id: int, in_force_id: int | None, listed: bool,
           verification: VerificationStatus, listing: ListingStatus, verified_until: datetime | None,
           verified_at: datetime | None, decided_at: datetime, left_at: datetime | None) -> Entry:
    jti = receipt_id(decision_id)
    if listed:
        # In the directory on a later decision: that decision's receipt is the one to hold now.
        return Entry(jti, provider_id, "superseded", max(verified_at or decided_at, decided_at))
    if verification == VerificationStatus.REVOKED:
        reason = "revoked"
    elif listing == ListingStatus.SUSPENDED:
        reason = "suspended"
    elif listing != ListingStatus.LISTED:
        reason = listing.value
    elif in_force_id != decision_id:
        reason = "superseded"
    else:
        reason = "lapsed"
    since = left_at or (verified_until if verified_until and verified_until <= now else None) or decided_at
    return Entry(jti, provider_id, reason, since)


def state_version(session: Session) -> int:
    """The audit trail's last event: every change that can make a receipt stop holding writes one, so while it
    stays the same a list made earlier still names the same receipts (only expired ones may drop out)."""
    return session.scalar(select(func.max(AuditEvent.seq))) or 0


def status_list_claims(session: Session, now: datetime, issuer: str) -> dict[str, Any]:
    return {
        "iss": issuer,
        "iat": numeric_date(now),
        "exp": numeric_date(now + STATUS_LIST_LIFETIME),
        "type": STATUS_LIST_KIND,
        "revoked": [entry.claims() for entry in no_longer_holding(session, now)],
    }
