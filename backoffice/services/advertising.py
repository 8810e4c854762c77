"""Applying to advertise: only a currently verified, listed provider may, and the research team decides."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import (
    OPEN_STATES,
    RESEARCH_ROLES,
    Account,
    AdvertisingStatus,
    ListingStatus,
    Provider,
    Submission,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.services import (
    advertising_copy,
    concurrency,
    guards,
    listing_requests,
    provider_status,
    review,
    submissions,
)
from backoffice.services.advertising_copy import Copy
from backoffice.services.errors import InvalidTransition
from backoffice.services.reasons import require_reason


def open_application(session: Session, provider: Provider) -> Submission | None:
    return session.scalar(select(Submission).where(
        Submission.provider_id == provider.id, Submission.kind == SubmissionKind.ADVERTISER_APPLICATION,
        Submission.state.in_(OPEN_STATES)).limit(1))


def why_not(session: Session, provider: Provider) -> str | None:
    """Why this provider cannot apply to advertise right now, and what to do; None when it can."""
    if not provider.is_verified(utcnow()):
        if provider.verification_status == VerificationStatus.VERIFIED:
            return ("Your verification has lapsed. Submit an update to your listing so the research team can "
                    "verify you again, then apply.")
        return (f"Your verification is {provider.verification_status.label}. Only providers the research team "
                "has verified can advertise: submit a listing request (or answer the open one) and apply "
                "once it is approved.")
    if provider.listing_status != ListingStatus.LISTED:
        return f"Your listing is {provider.listing_status.label}. Advertisers must be listed in the directory."
    if provider.advertising_status == AdvertisingStatus.ACTIVE:
        return "You already advertise; nothing to apply for."
    application = open_application(session, provider)
    if application is not None or provider.advertising_status == AdvertisingStatus.PENDING:
        number = f" #{application.id}" if application else ""
        return f"Your application{number} is waiting for the research team's decision."
    return None


def apply(session: Session, actor: Account, provider: Provider, policy: review.ReviewPolicy, copy: Copy) -> Submission:
    """Create and submit an advertiser application with the copy it asks to run; advertising becomes pending
    until it is decided."""
    listing_requests.require_member(session, actor, provider.id)
    reason = why_not(session, provider)
    if reason is not None:
        raise InvalidTransition(reason)
    copy = advertising_copy.validated(copy, provider)
    # The application proposes no listing change: the research team reviews the listing as it stands.
    application = submissions.create_draft(session, actor, provider, SubmissionKind.ADVERTISER_APPLICATION, {})
    advertising_copy.attach(session, actor, application, copy)
    review.submit(session, actor, application, policy)
    provider_status.apply_for_advertising(session, actor, provider, application)
    concurrency.flush(session)
    return application


def suspend(session: Session, actor: Account, provider: Provider, reason: str) -> None:
    """The research team suspends an advertiser by hand, with a reason; resuming needs a new application."""
    guards.require_researcher(actor)
    reason = require_reason(reason, "Give the reason for suspending the advertising.")
    provider_status.suspend_advertising(session, actor, provider, reason, strict=True)
    concurrency.flush(session)


def end(session: Session, actor: Account, provider: Provider, reason: str) -> None:
    """Advertising ends for good: the provider stops, or the research team ends it. A new application starts over."""
    if not actor.has_role(*RESEARCH_ROLES):
        listing_requests.require_member(session, actor, provider.id)
    reason = require_reason(reason, "Give the reason for ending the advertising.")
    provider_status.end_advertising(session, actor, provider, reason)
    concurrency.flush(session)
