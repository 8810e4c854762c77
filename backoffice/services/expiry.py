"""Expiry of licences, accreditations and verification: reminders at 90/60/30/7 days, then the lapse."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backoffice import zones
from backoffice.models import (
    Account,
    Accreditation,
    CheckKind,
    ExpiryReminder,
    Finding,
    FindingSeverity,
    Licence,
    ListingStatus,
    OrganisationMember,
    Provider,
    VerificationStatus,
)
from backoffice.services import audit, findings, outbox, provider_status


@dataclass(frozen=True)
class Expiring:
    entity_type: str  # licence, accreditation, verification
    entity_id: int
    provider: Provider
    expires_on: date
    label: str


def threshold_for(days_left: int, thresholds: list[int]) -> int | None:
    """The reminder due now: the smallest threshold not below days_left (so a late start sends one, not four)."""
    if days_left < 0:
        return None
    due = [t for t in sorted(thresholds) if days_left <= t]
    return due[0] if due else None


def _watched() -> tuple:
    return (Provider.listing_status == ListingStatus.LISTED) | (Provider.verification_status == VerificationStatus.VERIFIED)


def expiring(session: Session, start: date, end: date) -> list[Expiring]:
    """Licences, accreditations and verifications of watched providers that expire in [start, end]."""
    items: list[Expiring] = []
    for model, entity_type in ((Licence, "licence"), (Accreditation, "accreditation")):
        rows = session.execute(
            select(model, Provider).join(Provider, model.provider_id == Provider.id)
            .where(model.expires_on >= start, model.expires_on <= end, _watched()).order_by(model.id)
        ).all()
        for entity, provider in rows:
            label = (f"{entity.state} licence {entity.number}" if entity_type == "licence"
                     else f"{entity.body} accreditation")
            items.append(Expiring(entity_type, entity.id, provider, entity.expires_on, label))
    start_at = datetime.combine(start, time.min, tzinfo=timezone.utc)
    end_at = datetime.combine(end + timedelta(days=1), time.min, tzinfo=timezone.utc)
    for provider in session.scalars(
        select(Provider).where(Provider.verification_status == VerificationStatus.VERIFIED,
                               Provider.verified_until >= start_at, Provider.verified_until < end_at)
        .order_by(Provider.id)
    ):
        items.append(Expiring("verification", provider.id, provider, provider.verified_until.date(), "verification"))
    return items


def _recipients(session: Session, provider: Provider) -> list[tuple[Account | None, str]]:
    members = session.scalars(
        select(Account).join(OrganisationMember, OrganisationMember.account_id == Account.id)
        .where(OrganisationMember.provider_id == provider.id, Account.is_active.is_(True)).order_by(Account.id)
    ).all()
    if members:
        return [(account, account.email) for account in members]
    return [(None, provider.email)] if provider.email else []


def send_reminders(session: Session, actor: audit.Actor, today: date, thresholds: list[int]) -> int:
    """Send each due reminder once; returns how many were sent."""
    sent = 0
    for item in expiring(session, today, today + timedelta(days=max(thresholds))):
        days_left = (item.expires_on - today).days
        threshold = threshold_for(days_left, thresholds)
        if threshold is None:
            continue
        already = session.scalar(select(ExpiryReminder.id).where(
            ExpiryReminder.entity_type == item.entity_type, ExpiryReminder.entity_id == item.entity_id,
            ExpiryReminder.expires_on == item.expires_on, ExpiryReminder.days_before == threshold))
        if already is not None:
            continue
        recipients = _recipients(session, item.provider)
        note_id = None
        for account, email in recipients:
            note = outbox.enqueue(
                session, kind="expiry_reminder", account=account, email=email,
                subject=f"{item.provider.public_name}: {item.label} expires on {zones.day_text(item.expires_on)}",
                body=(f"The {item.label} of {item.provider.public_name} expires in {days_left} days, on "
                      f"{zones.day_text(item.expires_on)}. Please send us the renewal before then, or the listing's "
                      "verification will lapse and any advertising will be suspended."),
                link=f"/portal/organisations/{item.provider.id}",
            )
            note_id = note_id or note.id
        try:
            with session.begin_nested():
                session.add(ExpiryReminder(provider_id=item.provider.id, entity_type=item.entity_type,
                                           entity_id=item.entity_id, expires_on=item.expires_on,
                                           days_before=threshold, notification_id=note_id))
        except IntegrityError:
            continue  # another sweep sent it at the same moment
        audit.record(session, actor, "expiry.reminder_sent", item.entity_type, item.entity_id,
                     after={"expires_on": item.expires_on, "days_before": threshold,
                            "recipients": [email for _, email in recipients]},
                     reason=None if recipients else "no recipient on file: reminder recorded, nothing sent",
                     provider_id=item.provider.id)
        sent += 1
    session.flush()
    return sent


@dataclass(frozen=True)
class LapsedCredential:
    """A licence or accreditation of a watched provider that has expired, as the sweep finds it."""

    entity_type: str  # licence, accreditation
    entity_id: int
    provider_id: int


_CREDENTIALS = ((Licence, "licence"), (Accreditation, "accreditation"))


def lapsed_credentials(session: Session, today: date) -> list[LapsedCredential]:
    """Expired licences and accreditations of watched providers, licences first, each in id order."""
    found = []
    for model, entity_type in _CREDENTIALS:
        rows = session.execute(
            select(model.id, model.provider_id).join(Provider, model.provider_id == Provider.id)
            .where(model.expires_on < today, _watched()).order_by(model.id)
        ).all()
        found += [LapsedCredential(entity_type, entity_id, provider_id) for entity_id, provider_id in rows]
    return found


def lapse_credential(session: Session, actor: audit.Actor, item: LapsedCredential, today: date) -> bool:
    """Act on one expired licence or accreditation, read afresh: open a finding once per expiry date.

    An expired licence fails a required criterion: verification lapses and advertising is suspended in
    the same transaction. An expired accreditation only matters for advertisers: advertising is suspended.
    False when there is nothing (left) to do.
    """
    model = Licence if item.entity_type == "licence" else Accreditation
    entity = session.get(model, item.entity_id)
    if entity is None or entity.expires_on is None or entity.expires_on >= today:
        return False
    provider = entity.provider
    subject = f"{item.entity_type}:{entity.id}:{entity.expires_on.isoformat()}"
    check = CheckKind.LICENCE_EXPIRY if item.entity_type == "licence" else CheckKind.ACCREDITATION_EXPIRY
    seen = session.scalar(select(Finding.id).where(
        Finding.provider_id == provider.id, Finding.check == check, Finding.subject_key == subject))
    if seen is not None:
        return False
    label = f"{entity.state} licence {entity.number}" if item.entity_type == "licence" else f"{entity.body} accreditation"
    reason = f"{label} expired on {zones.day_text(entity.expires_on)}"
    if item.entity_type == "licence":
        provider_status.lapse_verification(session, actor, provider, reason)
    else:
        provider_status.suspend_advertising(session, actor, provider, reason)
    findings.open_or_update(
        session, actor, provider, check, subject,
        FindingSeverity.CRITICAL if item.entity_type == "licence" else FindingSeverity.WARNING,
        f"{label[0].upper()}{label[1:]} expired", {"expired_on": entity.expires_on, item.entity_type: entity.id},
    )
    session.flush()
    return True


def lapse_credentials(session: Session, actor: audit.Actor, today: date) -> int:
    """Every expired licence and accreditation in the caller's transaction; returns how many were acted on.
    The daily sweep instead gives each one its own transaction (tasks/checks.py)."""
    return sum(lapse_credential(session, actor, item, today) for item in lapsed_credentials(session, today))


# -- verification ---------------------------------------------------------------------------------


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
    provider_status.lapse_verification(
        session, actor, provider, f"verified until {zones.moment_text(provider.verified_until, zones.UTC)}, which has passed")
    findings.open_or_update(
        session, actor, provider, CheckKind.VERIFICATION_EXPIRY, "verification", FindingSeverity.WARNING,
        "Verification expired: re-verification is due",
        {"verified_until": provider.verified_until, "expired_at": now},
    )
    session.flush()
    return True


def expire_lapsed(session: Session, actor: audit.Actor, now: datetime, batch_size: int = 500) -> int:
    """Expire one batch of lapsed verifications; returns how many changed (0 when none are left)."""
    return sum(expire_one(session, actor, provider_id, now)
               for provider_id in lapsed_provider_ids(session, now, batch_size))
