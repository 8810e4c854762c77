"""Re-verification: before verified_until, a request the provider confirms or updates, reviewed like an update.

The daily sweep opens one per verified, listed provider whose verification ends within REVERIFICATION_LEAD_DAYS
(once per verification period); a criteria change opens them through the same `open_for`. The request starts as a
draft pre-filled from the listing in force; the provider is told what to confirm and by when; once submitted the
research team reviews it with the assessments of the decision in force carried over, and its approval renews
verified_until through the normal decision. A provider that does not answer lapses at verified_until as before
(services/expiry.py); the request stays open, and approving it later verifies the provider again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from backoffice import zones
from backoffice.models import (
    OPEN_STATES,
    ListingStatus,
    Provider,
    Reverification,
    ReverificationCause,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
)
from backoffice.models.base import utcnow
from backoffice.services import audit, listing_requests, profile, review, submissions, time_zones
from backoffice.services.errors import DomainError, InvalidTransition

# A licence or accreditation that ends this soon after the deadline is named in what the request asks.
RENEWAL_WARNING_DAYS = 90
NOTICE_KIND = "reverification_opened"


@dataclass(frozen=True)
class Policy:
    lead_days: int = 60

    @classmethod
    def from_config(cls, config) -> Policy:
        return cls(config["REVERIFICATION_LEAD_DAYS"])


def of(session: Session, submission: Submission) -> Reverification | None:
    """Why and by when a re-verification request was opened (None for any other request)."""
    if submission.kind != SubmissionKind.REVERIFICATION:
        return None
    return session.get(Reverification, submission.id)


def _verified_and_listed(provider: Provider) -> bool:
    return (provider.verification_status == VerificationStatus.VERIFIED
            and provider.listing_status == ListingStatus.LISTED)


def _open_listing_request():
    """A draft or open request of a kind that edits the listing, for the provider row in the query."""
    return exists().where(Submission.provider_id == Provider.id, Submission.kind.in_(listing_requests.LISTING_KINDS),
                          Submission.state.in_(OPEN_STATES | {SubmissionState.DRAFT}))


def _opened_for_this_period():
    """A re-verification already opened against the provider's current verified_until (answered or not)."""
    return exists().where(Reverification.provider_id == Provider.id,
                          Reverification.renews_until == Provider.verified_until)


def due_provider_ids(session: Session, now: datetime, policy: Policy, limit: int, after_id: int = 0) -> list[int]:
    """Verified, listed providers whose verification ends within the lead time and that have neither a
    re-verification for this period nor another listing request open, in id order after `after_id`."""
    return list(session.scalars(
        select(Provider.id)
        .where(Provider.verification_status == VerificationStatus.VERIFIED,
               Provider.listing_status == ListingStatus.LISTED,
               Provider.verified_until >= now, Provider.verified_until <= now + timedelta(days=policy.lead_days),
               Provider.id > after_id, ~_opened_for_this_period(), ~_open_listing_request())
        .order_by(Provider.id).limit(limit)))


def day_in(moment: datetime, zone: ZoneInfo) -> str:
    """The day of a moment as the provider reads it, in its organisation's zone (its portal pages do the same)."""
    return zones.day_text(zones.as_utc(moment).astimezone(zone).date())


def zone_of(session: Session, provider: Provider) -> ZoneInfo:
    return zones.zone_named(time_zones.organisation_zone_name(session, provider))


def due_reason(provider: Provider, zone: ZoneInfo) -> str:
    assert provider.verified_until is not None  # only a verified provider is due
    return (f"Your verification runs until {day_in(provider.verified_until, zone)}. To stay verified, "
            "confirm that your listing is still right, or update it, and submit this re-verification request.")


def open_due(session: Session, actor: audit.Actor, provider_id: int, now: datetime, policy: Policy) -> bool:
    """Open the re-verification of one provider, read afresh; False when it is not (or no longer) due."""
    provider = session.get(Provider, provider_id)
    if provider is None or not _verified_and_listed(provider) or provider.verified_until is None:
        return False
    if not now <= provider.verified_until <= now + timedelta(days=policy.lead_days):
        return False
    opened = session.scalar(select(Reverification.submission_id).where(
        Reverification.provider_id == provider.id, Reverification.renews_until == provider.verified_until))
    if opened is not None:
        return False
    return open_for(session, actor, provider, reason=due_reason(provider, zone_of(session, provider)),
                    respond_by=provider.verified_until,
                    now=now) is not None


def open_for(session: Session, actor: audit.Actor, provider: Provider, *, reason: str, respond_by: datetime,
             cause: ReverificationCause = ReverificationCause.DUE, catalogue_id: int | None = None,
             now: datetime | None = None) -> Submission | None:
    """Open a re-verification request for a verified, listed provider, pre-filled from its listing, and tell its
    people what to confirm and by when. None when a listing request (this or another kind) is already open: that
    one renews the verification when approved. Refused for a provider that is not verified and listed, or a
    deadline not in the future."""
    now = now or utcnow()
    reason = (reason or "").strip()
    if not reason:
        raise DomainError("Say why the provider is asked to re-verify.", field="reason")
    zone = zone_of(session, provider)
    if respond_by <= now:
        raise DomainError(f"The deadline ({day_in(respond_by, zone)}) must be in the future.", field="respond_by")
    # One opener at a time per provider (the sweep and a research lead's scheduling): the provider row's lock.
    session.execute(select(Provider.id).where(Provider.id == provider.id).with_for_update())
    if not _verified_and_listed(provider):
        raise InvalidTransition(f"Only a verified, listed provider is re-verified; {provider.public_name} is "
                                f"{provider.listing_status.label} with its verification "
                                f"{provider.verification_status.label}.")
    if listing_requests.open_listing_request(session, provider) is not None:
        return None
    submission = submissions.create_draft(session, actor, provider, SubmissionKind.REVERIFICATION,
                                          profile.current(provider))
    record = Reverification(submission_id=submission.id, provider_id=provider.id, cause=cause, reason=reason,
                            respond_by=respond_by, renews_until=provider.verified_until, catalogue_id=catalogue_id,
                            opened_at=now)
    session.add(record)
    session.flush()
    audit.record(session, actor, "reverification.opened", "submission", submission.id,
                 after={"cause": cause.value, "reason": reason, "respond_by": respond_by,
                        "renews_until": provider.verified_until, "catalogue_id": catalogue_id},
                 reason=reason, provider_id=provider.id)
    review.notify_provider(session, submission, NOTICE_KIND,
                           f"confirm your listing by {day_in(respond_by, zone)} to stay verified",
                           notice_text(provider, record, zone))
    return submission


def asks(provider: Provider, record: Reverification) -> list[str]:
    """What the request asks the provider to confirm or update, one line each, in words: the mail and the
    request's page both read it from here."""
    soon = zones.as_utc(record.respond_by).date() + timedelta(days=RENEWAL_WARNING_DAYS)
    lines = ["Check each field of your listing (names, NPI, website, phone, e-mail, levels of care, services, "
             "populations served and payment accepted) and change what is no longer right."]
    places = len(provider.locations)
    lines.append(f"Confirm that your {places} location{'s are' if places != 1 else ' is'} still where you treat "
                 "people." if places else "Add the locations where you treat people.")
    for licence in provider.licences:
        lines.append(_credential_line(f"{licence.state} licence {licence.number}", licence.expires_on, soon))
    for accreditation in provider.accreditations:
        lines.append(_credential_line(f"{accreditation.body} accreditation", accreditation.expires_on, soon))
    lines.append("Confirm your medical or clinical director and your owners.")
    lines.append("Sign the attestation again: no referral fees, no lead generation, no patient brokering.")
    return lines


def _credential_line(label: str, expires_on: date | None, soon: date) -> str:
    if expires_on is None:
        return f"{label}: no expiry date on file; add it."
    if expires_on <= soon:
        return f"{label} expires on {zones.day_text(expires_on)}: add the renewed one and upload it."
    return f"{label}: current until {zones.day_text(expires_on)}; confirm it."


def notice_text(provider: Provider, record: Reverification, zone: ZoneInfo) -> str:
    deadline = day_in(record.respond_by, zone)
    return "\n\n".join([
        record.reason,
        f"We have opened a re-verification request for {provider.public_name}, filled in from your listing as the "
        f"directory has it. Please submit it by {deadline}. What to confirm or update:",
        "\n".join(f"- {line}" for line in asks(provider, record)),
        "The research team then reviews it like any request. If your verification is not renewed by the time it "
        "ends, it lapses and any advertising is suspended until the research team approves your request.",
    ])
