"""The time zone each person reads dates in: a staff member's own choice, an organisation's for its members."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice import zones
from backoffice.models import Account, Location, OrganisationMember, Provider
from backoffice.services import audit, listing_requests
from backoffice.services.errors import DomainError
from backoffice.vocab import STATE_TIME_ZONES


def _chosen(name: str | None) -> str | None:
    """A zone name as a form sent it: empty means "the default"; anything else must be an IANA name."""
    name = (name or "").strip()
    if not name:
        return None
    problem = zones.zone_problem(name)
    if problem:
        raise DomainError(problem, field="time_zone")
    return name


def _set_zone(session: Session, actor: Account, row: Account | Provider, name: str | None, action: str,
              provider_id: int | None = None) -> bool:
    """Set a row's time_zone, audited; False when nothing changed; an unknown name is refused."""
    chosen = _chosen(name)
    if chosen == row.time_zone:
        return False
    before, row.time_zone = row.time_zone, chosen
    audit.record(session, actor, action, "provider" if isinstance(row, Provider) else "account", row.id,
                 before={"time_zone": before}, after={"time_zone": chosen}, provider_id=provider_id)
    session.flush()
    return True


def set_account_zone(session: Session, account: Account, name: str | None) -> bool:
    """A staff member chooses the zone their pages show dates in (empty: DISPLAY_TIME_ZONE); audited.
    False when nothing changed; an unknown name is refused and changes nothing."""
    return _set_zone(session, account, account, name, "account.time_zone_changed")


def set_organisation_zone(session: Session, actor: Account, provider: Provider, name: str | None) -> bool:
    """An organisation's member chooses the zone its portal pages show dates in (empty: from the state of its
    first location); audited. False when nothing changed; an unknown name is refused and changes nothing."""
    listing_requests.require_member(session, actor, provider.id)
    return _set_zone(session, actor, provider, name, "provider.time_zone_changed", provider_id=provider.id)


def state_zone_name(session: Session, provider_id: int) -> str | None:
    """The zone of the state of the organisation's first location (vocab.STATE_TIME_ZONES), if it has one."""
    state = session.scalar(select(Location.state).where(Location.provider_id == provider_id)
                           .order_by(Location.id).limit(1))
    return STATE_TIME_ZONES.get((state or "").upper())


def organisation_zone_name(session: Session, provider: Provider) -> str | None:
    """The zone an organisation's dates are shown in: its own choice, else its first location's state's;
    None leaves it to DISPLAY_TIME_ZONE."""
    return provider.time_zone or state_zone_name(session, provider.id)


def member_zone_name(session: Session, account_id: int) -> str | None:
    """A provider account's zone on pages not about one organisation: that of the first it joined."""
    provider = session.scalar(select(Provider).join(OrganisationMember, OrganisationMember.provider_id == Provider.id)
                              .where(OrganisationMember.account_id == account_id)
                              .order_by(OrganisationMember.id).limit(1))
    return organisation_zone_name(session, provider) if provider is not None else None
