"""The public listing feed: which providers leave this system, and exactly what is said about them.

Every advertiser is marked wherever a listing leaves (feed and receipt); the order never depends on
advertising.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from sqlalchemy import ColumnExpressionArgument, Integer, Select, String, bindparam, exists, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from backoffice.models import (
    CODED_LISTS,
    AdvertisingCopy,
    AdvertisingStatus,
    AssessmentStatus,
    CriteriaCatalogue,
    ListingStatus,
    Location,
    Provider,
    ProviderCode,
    VerificationStatus,
    utcnow,
)
from backoffice.services import advertising_copy, history, rechecks, sources
from backoffice.services.audit import jsonable
from backoffice.vocab import LEVELS_OF_CARE, SERVICES, US_STATES, VOCABULARIES

# An advertiser whose approved copy predates the copy being recorded: marked all the same.
ADVERTISER_DISCLOSURE = (
    "Advertiser: this provider pays to advertise in the directory. It was verified against the same "
    "criteria as every listing, and advertising does not change its place in the listings."
)
NEVER_AFFECTS = "Advertising never affects order or verification."
MAX_LIMIT = 100
DEFAULT_LIMIT = 50
MAX_ID = 2**31 - 1
# A cursor is where the previous page ended: "v1." and a provider id. The version lets the shape change.
CURSOR_VERSION = "v1."
CURSOR_PATTERN = r"^v1\.[0-9]{1,10}$"


class BadRequest(ValueError):
    """A parameter the feed cannot use; the message says which and why."""


@dataclass(frozen=True)
class FeedQuery:
    state: str | None = None
    level_of_care: str | None = None
    service: str | None = None
    limit: int = DEFAULT_LIMIT
    after_id: int = 0


def parse_query(args: dict[str, str]) -> FeedQuery:
    """Validate the feed's query parameters; every problem is reported at once.

    A parameter given empty (`?state=`) is refused like any other value outside its vocabulary: the OpenAPI
    document does not admit it, and a client that sends it has lost the value it meant to send.
    """
    problems = []
    known = {"state", "level_of_care", "service", "limit", "cursor"}
    unknown = sorted(set(args) - known)
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}; the feed takes {', '.join(sorted(known))}")
    state = args["state"].upper() if "state" in args else None
    if state is not None and state not in US_STATES:
        problems.append(f"state {state!r} is not a US state or territory code")
    level = args.get("level_of_care")
    if level is not None and level not in LEVELS_OF_CARE:
        problems.append(f"level_of_care {level!r} is not one of {', '.join(sorted(LEVELS_OF_CARE))}")
    service = args.get("service")
    if service is not None and service not in SERVICES:
        problems.append(f"service {service!r} is not one of {', '.join(sorted(SERVICES))}")
    limit = DEFAULT_LIMIT
    if "limit" in args:
        try:
            limit = int(args["limit"])
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            problems.append(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    after_id = 0
    if "cursor" in args:
        try:
            after_id = decode_cursor(args["cursor"])
        except ValueError:
            problems.append("cursor is not one this feed gave out; start again without it")
    if problems:
        raise BadRequest("; ".join(problems))
    return FeedQuery(state=state, level_of_care=level, service=service, limit=limit, after_id=after_id)


def encode_cursor(provider_id: int) -> str:
    return f"{CURSOR_VERSION}{provider_id}"


def decode_cursor(cursor: str) -> int:
    """The id the previous page ended on. Any id in the documented shape is a place in the id order: past
    the largest id a provider can have, the page is empty."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise ValueError("bad cursor")
    return min(int(cursor[len(CURSOR_VERSION):]), MAX_ID)


def listed_clause(now: datetime | ColumnElement[datetime]) -> ColumnExpressionArgument[bool]:
    """Listed and currently verified: nothing else leaves this system. `now` may be a bound parameter."""
    return Provider.is_in_directory(now)  # type: ignore[arg-type]  # the expression side takes either


def _offers(kind: str, code: str | ColumnElement[str]) -> ColumnElement[bool]:
    """The providers whose coded list of this kind holds the code, from the provider_code index."""
    return Provider.id.in_(select(ProviderCode.provider_id).where(ProviderCode.kind == kind,
                                                                  ProviderCode.code == code))


# What a listing shows of a provider and of its locations, and what decides whether it is listed and advertises.
FEED_COLUMNS = (Provider.id, Provider.public_name, Provider.legal_name, Provider.website, Provider.phone,
                Provider.levels_of_care, Provider.services, Provider.populations, Provider.payment_accepted,
                Provider.listing_status, Provider.verification_status, Provider.verified_at, Provider.verified_until,
                Provider.verified_catalogue_id, Provider.last_rechecked_at, Provider.advertising_status)
LOCATION_COLUMNS = (Location.provider_id, Location.street1, Location.street2, Location.city, Location.state,
                    Location.zip, Location.latitude, Location.longitude)


class ListedProvider:
    """What a listing shows of one provider, read as plain rows: the feed is read far more than any staff page,
    and building ORM entities (identity map, attribute instrumentation, the locations' relationship) cost more
    than the queries that find them (benchmarks/NOTES.md). It answers the rules a listing needs exactly as
    Provider does: the same functions, on the same columns."""

    __slots__ = ("id", "public_name", "legal_name", "website", "phone", "levels_of_care", "services", "populations",
                 "payment_accepted", "listing_status", "verification_status", "verified_at", "verified_until",
                 "verified_catalogue_id", "last_rechecked_at", "advertising_status", "locations")
    id: int
    public_name: str
    legal_name: str
    website: str | None
    phone: str | None
    levels_of_care: list[str] | None
    services: list[str] | None
    populations: list[str] | None
    payment_accepted: list[str] | None
    listing_status: ListingStatus
    verification_status: VerificationStatus
    verified_at: datetime | None
    verified_until: datetime | None
    verified_catalogue_id: int | None
    last_rechecked_at: datetime | None
    advertising_status: AdvertisingStatus
    locations: list[Any]

    def __init__(self, row: Any) -> None:
        for name, value in zip(self.__slots__[:-1], row, strict=True):
            setattr(self, name, value)
        self.locations = []

    # Provider's own rules (its hybrid methods' instance side), not a copy of them.
    is_verified = Provider.__dict__["is_verified"].func
    is_active_advertiser = Provider.__dict__["is_active_advertiser"].func


assert ListedProvider.__slots__[:-1] == tuple(column.key for column in FEED_COLUMNS), "a row is read in slot order"


Listed = Provider | ListedProvider  # a listing is written from either


@functools.cache
def _page_statement(state: bool, level_of_care: bool, service: bool) -> Select:
    """The feed page's query for one combination of filters, built once: the feed is read far more than any
    staff page, and building the statement cost more than the query of a page of few rows (benchmarks/NOTES.md).
    Its values are bound when it runs (`now`, `after_id`, `state`, `level_of_care`, `service`, `rows`)."""
    now = bindparam("now", type_=Provider.verified_until.type)
    stmt = select(*FEED_COLUMNS).where(listed_clause(now), Provider.id > bindparam("after_id"))
    if state:
        stmt = stmt.where(exists().where(Location.provider_id == Provider.id, Location.state == bindparam("state")))
    if level_of_care:
        stmt = stmt.where(_offers(CODED_LISTS["levels_of_care"], bindparam("level_of_care", type_=String())))
    if service:
        stmt = stmt.where(_offers(CODED_LISTS["services"], bindparam("service", type_=String())))
    return stmt.order_by(Provider.id).limit(bindparam("rows", type_=Integer))


_PAGE_LOCATIONS = (select(*LOCATION_COLUMNS).where(Location.provider_id.in_(bindparam("ids", expanding=True)))
                   .order_by(Location.provider_id, Location.id))


def page(session: Session, query: FeedQuery, now: datetime) -> tuple[list[ListedProvider], str | None]:
    stmt = _page_statement(bool(query.state), bool(query.level_of_care), bool(query.service))
    # The values of every filter: those this combination's statement does not bind are left out by SQLAlchemy.
    values = {"now": now, "after_id": query.after_id, "rows": query.limit + 1, "state": query.state,
              "level_of_care": query.level_of_care, "service": query.service}
    providers = [ListedProvider(row) for row in session.execute(stmt, values)]
    more = len(providers) > query.limit
    providers = providers[:query.limit]
    if providers:
        by_id = {p.id: p for p in providers}
        for loc in session.execute(_PAGE_LOCATIONS, {"ids": list(by_id)}):
            by_id[loc.provider_id].locations.append(loc)
    return providers, encode_cursor(providers[-1].id) if more else None


# Keyed by catalogue id, and read with a provider's verified_catalogue_id, which may be None (then no version).
def catalogue_versions(session: Session, providers: Sequence[Listed]) -> dict[int | None, int]:
    ids = {p.verified_catalogue_id for p in providers if p.verified_catalogue_id}
    return dict(session.execute(_VERSIONS, {"ids": list(ids)}).all()) if ids else {}


_VERSIONS = select(CriteriaCatalogue.id, CriteriaCatalogue.version).where(
    CriteriaCatalogue.id.in_(bindparam("ids", expanding=True)))


def coded(values: list[str] | None, vocabulary: dict[str, str]) -> list[str]:
    """The codes of the vocabulary a list holds. Imports map source labels onto the vocabularies and a data
    migration mapped the labels of earlier imports; a value neither knew stays on the provider for staff to see,
    but the feed, whose document lists each vocabulary, publishes codes only."""
    return sorted(value for value in values or [] if value in vocabulary)


def advertisements(session: Session, providers: Sequence[Listed], now: datetime) -> dict[int, AdvertisingCopy]:
    """The copy in force of each active advertiser of a page, in one query (none when the page has none)."""
    return advertising_copy.in_force(session, [p.id for p in providers if p.is_active_advertiser(now)])


def disclosure(provider: Listed, copy: AdvertisingCopy | None) -> str:
    """The sentence shown beside an advertiser: who pays, and the approved advertisement it describes."""
    if copy is None or copy.approved_at is None:
        return ADVERTISER_DISCLOSURE
    return (f"Advertiser: {provider.public_name} pays to advertise. Its approved advertisement, "
            f"'{copy.headline}', links to {copy.landing_url}; the research team verified this provider and "
            f"reviewed the advertisement on {advertising_copy.approved_on(copy.approved_at)}. {NEVER_AFFECTS}")


def advertiser_fields(provider: Listed, copies: Mapping[int, AdvertisingCopy],
                      now: datetime | None = None) -> dict[str, Any]:
    """The advertiser mark, its disclosure and the advertisement in force (`copies`: advertising_copy.in_force
    of the page's providers); all null but the mark for a provider that does not advertise."""
    advertiser = provider.is_active_advertiser(now or utcnow())
    copy = copies.get(provider.id) if advertiser else None
    return {
        "advertiser": advertiser,
        "advertiser_disclosure": disclosure(provider, copy) if advertiser else None,
        "advertisement": {"headline": copy.headline, "text": copy.body, "claims": jsonable(list(copy.claims or [])),
                          "landing_url": copy.landing_url, "approved_at": _moment(copy.approved_at)} if copy else None,
    }


def confirmations(session: Session, providers: Sequence[Listed]) -> dict[int, dict[str, sources.Confirmation]]:
    """The per-field confirmations of a page's providers, in one query."""
    return sources.confirmations(session, [p.id for p in providers])


def _moment(value: datetime | None) -> str | None:
    """A moment as the feed writes it (audit.jsonable's form), without walking the whole listing to find it."""
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def listing(provider: Listed, versions: dict[int | None, int],
            copies: Mapping[int, AdvertisingCopy],
            confirmed: Mapping[int, Mapping[str, sources.Confirmation]] | None = None) -> dict[str, Any]:
    """One listing as JSON-ready values, each converted where it is read (every field's type is known here);
    `confirmed` is confirmations() of the page (a field never confirmed is null)."""
    fields = (confirmed or {}).get(provider.id) or sources.confirmations_unknown()
    return {
        "id": provider.id,
        "public_name": provider.public_name,
        "legal_name": provider.legal_name,
        "website": provider.website,
        "phone": provider.phone,
        "locations": [{"street1": loc.street1, "street2": loc.street2, "city": loc.city, "state": loc.state,
                       "zip": loc.zip, "latitude": loc.latitude, "longitude": loc.longitude}
                      for loc in provider.locations],
        **{name: coded(getattr(provider, name), vocabulary) for name, vocabulary in VOCABULARIES.items()},
        "verification": {
            "status": jsonable(provider.verification_status),
            "verified_at": _moment(provider.verified_at),
            "verified_until": _moment(provider.verified_until),
            "criteria_version": versions.get(provider.verified_catalogue_id),
            "last_rechecked_at": _moment(provider.last_rechecked_at),
            "fields": {name: {**value, "confirmed_at": _moment(value["confirmed_at"])}
                       for name, value in sources.published(fields).items()},
        },
        **advertiser_fields(provider, copies),
    }


def listed_provider(session: Session, provider_id: int, now: datetime) -> Provider | None:
    return session.scalar(select(Provider).where(Provider.id == provider_id, listed_clause(now)))


def receipt(session: Session, provider: Provider) -> dict[str, Any]:
    """Which criteria were met, under which catalogue version, when, by whom, and when last re-checked: the
    decision named is the one that granted the verification in force, read as the auditor's box reads it."""
    basis = history.verification_basis(session, provider)
    decision = basis.decision if basis else None
    criteria = [{"code": a.criterion.code, "title": a.criterion.title, "status": a.status}
                for a in basis.assessments
                if a.status in (AssessmentStatus.MET, AssessmentStatus.NOT_APPLICABLE)] if basis else []
    versions = catalogue_versions(session, [provider])
    return jsonable({
        "id": provider.id,
        "public_name": provider.public_name,
        "verification": {
            "status": provider.verification_status,
            "verified_at": provider.verified_at,
            "verified_until": provider.verified_until,
            "criteria_version": versions.get(provider.verified_catalogue_id),
            "last_rechecked_at": provider.last_rechecked_at,
            "decision_id": decision.id if decision else None,
            "decided_at": decision.decided_at if decision else None,
            "decided_by": basis.people[decision.decided_by_id].name if basis and decision else None,
            "second_signoff": bool(decision and decision.second_signoff_by_id),
            "signed_off_by": (basis.people[decision.second_signoff_by_id].name
                              if basis and decision and decision.second_signoff_by_id else None),
            "fields": sources.published(sources.confirmations(session, [provider.id])[provider.id]),
        },
        "criteria": criteria,
        "checks": checks(session, provider.id),
        **advertiser_fields(provider, advertisements(session, [provider], utcnow())),
    })


def checks(session: Session, provider_id: int) -> list[dict[str, Any]]:
    """The receipt's latest network checks: each one's outcome and date, and the sources it rested on with their
    dates (a stale source is said so)."""
    latest = rechecks.latest_runs(session, provider_id)
    return [{"check": check.value, "outcome": run.outcome, "checked_at": run.started_at,
             "sources": sources.of_run(run)}
            for check in rechecks.NETWORK_CHECKS if (run := latest.get(check)) is not None]
