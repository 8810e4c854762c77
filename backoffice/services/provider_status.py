"""The provider's three statuses (listing, verification, advertising): every change of them, and nothing else.

One table per status names each transition, the states it may start from and the state it leads to. A
transition function checks the table (and the guards that belong to it), assigns the column and writes its
audit event once; refused, it raises InvalidTransition and changes nothing. No other module assigns these
columns (tests/test_provider_status.py reads the code to make sure). Like every service, nothing here commits.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from backoffice.models import (
    AdvertisingStatus,
    Decision,
    ListingStatus,
    Provider,
    Submission,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.models.base import StrEnum
from backoffice.services import audit
from backoffice.services.errors import DomainError, InvalidTransition

L, V, A = ListingStatus, VerificationStatus, AdvertisingStatus
Table = Mapping[str, tuple[frozenset, StrEnum]]  # transition name -> (the states it starts from, the state it leads to)

LISTING: Table = {
    # With a grant of verification: a new listing, an update, or a signed-off reinstatement (see grant()).
    "list": (frozenset(L), L.LISTED),
    # By a researcher, or automatically on a new critical finding, pending review.
    "suspend": (frozenset({L.LISTED}), L.SUSPENDED),
    # With a signed-off revocation: whatever the listing was, it leaves the directory.
    "delist": (frozenset(L), L.DELISTED),
}
VERIFICATION: Table = {
    # An approved listing request, update or (signed off) reinstatement.
    "verify": (frozenset(V), V.VERIFIED),
    # verified_until has passed, or a licence has expired.
    "expire": (frozenset({V.VERIFIED}), V.EXPIRED),
    # A signed-off revocation, asked for while verified (the verification may have lapsed since).
    "revoke": (frozenset({V.VERIFIED, V.EXPIRED}), V.REVOKED),
}
ADVERTISING: Table = {
    # A currently verified, listed provider applies; a suspended or ended advertiser starts over this way.
    "apply": (frozenset({A.NONE, A.SUSPENDED, A.ENDED}), A.PENDING),
    # The application is approved and signed off.
    "approve": (frozenset({A.NONE, A.PENDING}), A.ACTIVE),
    # The application is rejected, or the provider withdraws it.
    "reject": (frozenset({A.PENDING}), A.NONE),
    "withdraw": (frozenset({A.PENDING}), A.NONE),
    # By a researcher, or with a critical finding, an expired credential or verification, a suspension or a
    # revocation; resuming needs a new application.
    "suspend": (frozenset({A.ACTIVE, A.PENDING}), A.SUSPENDED),
    # The provider stops, or the research team ends it.
    "end": (frozenset({A.PENDING, A.ACTIVE, A.SUSPENDED}), A.ENDED),
}
TABLES: dict[str, Table] = {"listing": LISTING, "verification": VERIFICATION, "advertising": ADVERTISING}
COLUMNS = {status: f"{status}_status" for status in TABLES}
NOUNS = {"listing": "The listing", "verification": "Verification", "advertising": "Advertising"}
# The refusals users already know by their words; any other refusal says what the table forbids.
REFUSALS = {
    ("listing", "suspend"): "Only a listed provider can be suspended; this one is {state}.",
    ("advertising", "suspend"): "Advertising is {state}; there is nothing to suspend.",
    ("advertising", "end"): "Advertising is {state}; there is nothing to end.",
}
# A listing in one of these states, or a revoked verification, returns only through a signed-off reinstatement.
NEEDS_REINSTATEMENT = frozenset({L.SUSPENDED, L.DELISTED, L.CLOSED})


# -- the core -------------------------------------------------------------------------------------


def refusal(provider: Provider, **steps: str) -> str | None:
    """Why these transitions (status=transition name, e.g. advertising="end") cannot happen to this provider
    now, or None when the tables allow all of them."""
    for status, name in steps.items():
        sources, target = TABLES[status][name]
        state = getattr(provider, COLUMNS[status])
        if state not in sources:
            template = REFUSALS.get((status, name), "{noun} is {state}; it cannot become {target} ({name}).")
            return template.format(noun=NOUNS[status], state=state.label, target=target.label, name=name)
    return None


def _move(provider: Provider, **steps: str) -> dict[str, StrEnum]:
    """Check every step against its table, then assign them all; the states before, by status. Refused, nothing
    is assigned."""
    refused = refusal(provider, **steps)
    if refused is not None:
        raise InvalidTransition(refused)
    before = {}
    for status, name in steps.items():
        before[status] = getattr(provider, COLUMNS[status])
        setattr(provider, COLUMNS[status], TABLES[status][name][1])
    return before


def _advertising(session: Session, actor: audit.Actor, provider: Provider, name: str, reason: str) -> None:
    before = _move(provider, advertising=name)["advertising"]
    after = provider.advertising_status
    audit.record(session, actor, f"advertising.{after.value}", "provider", provider.id,
                 before={"advertising_status": before.value}, after={"advertising_status": after.value},
                 reason=reason, provider_id=provider.id)


# -- guards ---------------------------------------------------------------------------------------


def require_currently_verified(provider: Provider) -> None:
    """An advertiser needs a verification in force."""
    now = utcnow()
    if not provider.is_verified(now):
        raise DomainError("Only a currently verified provider can advertise; this one is "
                          f"{provider.verification_at(now).label}.")


def needs_reinstatement(provider: Provider) -> bool:
    return provider.verification_status == V.REVOKED or provider.listing_status in NEEDS_REINSTATEMENT


def reinstatement_only(provider: Provider) -> str:
    return (f"This provider is {provider.listing_status.label} with its verification "
            f"{provider.verification_status.label}; only a reinstatement review (with a second sign-off) can "
            "list it again.")


def _signed_off_reinstatement(decision: Decision) -> bool:
    return decision.submission.kind == SubmissionKind.REINSTATEMENT and decision.second_signoff_by_id is not None


# -- listing and verification ---------------------------------------------------------------------


def grant(session: Session, actor: audit.Actor, provider: Provider, decision: Decision, verified_at: datetime,
          reason: str) -> None:
    """Verify and list the provider on the strength of an approved research decision, the only caller.

    The provider keeps which decision granted it, so the receipt and the auditor's box name that decision
    and not, say, a later one that did not grant anything yet or an earlier one overtaken by this.
    """
    if needs_reinstatement(provider) and not _signed_off_reinstatement(decision):
        raise InvalidTransition(reinstatement_only(provider))
    fields = ("verification_status", "verified_at", "verified_until", "verified_catalogue_id",
              "verified_decision_id", "listing_status")
    before = audit.snapshot(provider, fields)
    _move(provider, verification="verify", listing="list")
    provider.verified_at = verified_at
    provider.verified_until = decision.verified_until
    provider.verified_catalogue_id = decision.catalogue_id
    provider.verified_decision_id = decision.id
    old, new = audit.changed(before, audit.snapshot(provider, fields))
    audit.record(session, actor, "verification.granted", "provider", provider.id,
                 before=old, after=new, reason=reason, provider_id=provider.id)
    session.flush()


def lapse_verification(session: Session, actor: audit.Actor, provider: Provider, reason: str) -> bool:
    """Verification becomes `expired` and advertising is suspended with it; False if not verified."""
    if refusal(provider, verification="expire") is not None:
        return False
    _move(provider, verification="expire")
    audit.record(
        session, actor, "verification.expired", "provider", provider.id,
        before={"verification_status": V.VERIFIED.value}, after={"verification_status": V.EXPIRED.value},
        reason=reason, provider_id=provider.id,
    )
    suspend_advertising(session, actor, provider, f"verification expired: {reason}")
    return True


def revoke(session: Session, actor: audit.Actor, provider: Provider, reason: str) -> None:
    """A signed-off revocation: verification is revoked, the listing and its advertising end."""
    fields = ("verification_status", "listing_status")
    before = audit.snapshot(provider, fields)
    _move(provider, verification="revoke", listing="delist")
    audit.record(session, actor, "verification.revoked", "provider", provider.id, before=before,
                 after=audit.snapshot(provider, fields), reason=reason, provider_id=provider.id)
    suspend_advertising(session, actor, provider, f"verification revoked: {reason}")


def suspend_listing(session: Session, actor: audit.Actor, provider: Provider, reason: str, *,
                    automatic: bool = False) -> bool:
    """Take a listed provider out of the directory pending review; advertising stops with it.

    By hand (a researcher), a provider that is not listed is refused. Automatic (a new critical finding),
    what is listed is suspended and active or pending advertising too, whatever the other; True if either was.
    """
    if automatic:
        reason = advertising_reason = f"automatic, pending review: {reason}"
    else:
        advertising_reason = f"listing suspended: {reason}"
    changed = False
    if not automatic or refusal(provider, listing="suspend") is None:
        _move(provider, listing="suspend")
        audit.record(session, actor, "listing.suspended", "provider", provider.id,
                     before={"listing_status": L.LISTED.value}, after={"listing_status": L.SUSPENDED.value},
                     reason=reason, provider_id=provider.id)
        changed = True
    return suspend_advertising(session, actor, provider, advertising_reason) or changed


# -- advertising ----------------------------------------------------------------------------------


def apply_for_advertising(session: Session, actor: audit.Actor, provider: Provider, application: Submission) -> None:
    """An advertiser application is submitted: advertising is pending until the research team decides."""
    require_currently_verified(provider)
    _advertising(session, actor, provider, "apply", f"advertiser application #{application.id}")


def approve_advertising(session: Session, actor: audit.Actor, provider: Provider, application: Submission) -> None:
    """An advertiser application is approved (and signed off): advertising becomes active."""
    require_currently_verified(provider)
    _advertising(session, actor, provider, "approve", f"request #{application.id} approved")


def reject_advertising(session: Session, actor: audit.Actor, provider: Provider, application: Submission) -> bool:
    """A rejected application: pending advertising goes back to none; False if it was not pending."""
    if refusal(provider, advertising="reject") is not None:
        return False
    _advertising(session, actor, provider, "reject", f"request #{application.id} rejected")
    return True


def withdraw_advertising(session: Session, actor: audit.Actor, provider: Provider, application: Submission) -> bool:
    """A withdrawn application: pending advertising goes back to none; False if it was not pending."""
    if refusal(provider, advertising="withdraw") is not None:
        return False
    _advertising(session, actor, provider, "withdraw", f"application #{application.id} withdrawn")
    return True


def suspend_advertising(session: Session, actor: audit.Actor, provider: Provider, reason: str, *,
                        strict: bool = False) -> bool:
    """Suspend a provider's advertising; True when it was active or pending. Otherwise nothing changes, and
    `strict` (a researcher suspending by hand) refuses with InvalidTransition."""
    if not strict and refusal(provider, advertising="suspend") is not None:
        return False
    _advertising(session, actor, provider, "suspend", reason)
    return True


def end_advertising(session: Session, actor: audit.Actor, provider: Provider, reason: str) -> None:
    """Advertising ends for good; a new application starts over."""
    _advertising(session, actor, provider, "end", reason)
