"""The verified listings as Open Referral HSDS 3.0: which records leave, in which order, and what they say.

The same providers as the feed, chosen by the same rule (`listings.listed_clause`) in the same order (by id,
never by advertising); each provider is an HSDS organization, each of its levels of care an HSDS service
tagged with our taxonomies' terms, each service at each location a service_at_location. The verification and
advertiser marks are the fields of our published profile (docs/HSDS.md). Nothing here knows about HTTP: the
view passes in how to spell a link.
"""
from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.sql import ColumnElement

from backoffice.models import AuditEvent, Location, Provider, ProviderCode
from backoffice.services import advertising_copy, listings
from backoffice.services import hsds_ids as ids
from backoffice.services.audit import jsonable
from backoffice.services.hsds_ids import TAXONOMIES, TAXONOMY_BY_NAME, Kind, Taxonomy, Term

HSDS_VERSION = "3.0"
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000
SEARCH_CONTROL = re.compile(r"[\u0000-\u001f\u007f]")  # no database stores NUL in text; none of it is a name
RESEARCH_TEAM = "research team"  # who HSDS metadata says made a change: never a person
LEVELS = TAXONOMY_BY_NAME["level_of_care"]

# Which query parameters each list takes (the names the HSDS OpenAPI gives them).
COMMON = {"page", "per_page", "format", "search"}
PARAMETERS = {
    "services": COMMON | {"taxonomy_term_id", "taxonomy_id", "organization_id", "modified_after", "minimal", "full"},
    "organizations": COMMON | {"full", "full_service", "taxonomy_term_id", "taxonomy_id", "modified_after"},
    "service_at_locations": COMMON | {"taxonomy_term_id", "taxonomy_id", "organization_id", "modified_after",
                                      "full", "postcode"},
    "taxonomies": COMMON,
    "taxonomy_terms": COMMON | {"taxonomy_id", "top_only", "parent_id"},
}
SINGLE_PARAMETERS = {"organizations": {"full_service"}}

# The provider's fields whose last change HSDS metadata reports, and the HSDS field each one is published as.
# The position in this list is part of each metadata record's id: append, never reorder.
METADATA_FIELDS = (
    ("public_name", "name"), ("legal_name", "alternate_name"), ("website", "website"), ("email", "email"),
    ("phone", "phones"), ("npi", "organization_identifiers"), ("locations", "locations"),
    ("levels_of_care", "services"), ("services", "services.attributes.service"),
    ("populations", "services.attributes.population"), ("payment_accepted", "services.attributes.payment"),
    ("licences", "services.licenses"), ("accreditations", "services.accreditations"),
)
FIELD_NUMBERS = {name: number for number, (name, _) in enumerate(METADATA_FIELDS, start=1)}
FIELD_NUMBERS["location"] = FIELD_NUMBERS["locations"]  # an import's one location
HSDS_FIELDS = dict(METADATA_FIELDS) | {"location": "locations"}
# The audit events that change those fields, and the HSDS action each is.
METADATA_ACTIONS = {"provider.created": "create", "provider.imported": "create",
                    "provider.import_updated": "update", "provider.profile_applied": "update"}


class BadRequest(ValueError):
    """A parameter the HSDS API cannot use; the message names it."""


@dataclass(frozen=True)
class Query:
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE
    search: str | None = None
    term: Term | None = None
    taxonomy: Taxonomy | None = None
    organization_id: int | None = None
    modified_after: datetime | None = None
    postcode: str | None = None
    minimal: bool = False
    full: bool = False
    full_service: bool = False
    top_only: bool = False
    parent_id: str | None = None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def _boolean(name: str, value: str, problems: list[str]) -> bool:
    if value not in ("true", "false"):
        problems.append(f"{name} must be true or false")
    return value == "true"


def _number(name: str, value: str, largest: int, problems: list[str]) -> int:
    if value.isascii() and value.isdigit() and 1 <= int(value) <= largest:
        return int(value)
    problems.append(f"{name} must be a whole number from 1 to {largest}")
    return 1


def parse_query(endpoint: str, args: dict[str, str]) -> Query:
    """Validate a list's query parameters; every problem is reported at once, each naming its parameter."""
    known = PARAMETERS[endpoint]
    problems: list[str] = []
    unknown = sorted(set(args) - known)
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(unknown)}; this list takes {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    if "page" in args:
        values["page"] = _number("page", args["page"], MAX_PAGE, problems)
    if "per_page" in args:
        values["per_page"] = _number("per_page", args["per_page"], MAX_PER_PAGE, problems)
    if "format" in args and args["format"] != "json":
        problems.append("format must be json (the only format this API answers in)")
    if "search" in args:
        text = " ".join(args["search"].split())
        if not text or len(args["search"]) > 200:
            problems.append("search must be 1 to 200 characters")
        elif SEARCH_CONTROL.search(args["search"]):
            problems.append("search must not contain control characters")
        values["search"] = text
    for name in ("minimal", "full", "full_service", "top_only"):
        if name in args:
            values[name] = _boolean(name, args[name], problems)
    if "taxonomy_term_id" in args:
        decoded = ids.decode_as(args["taxonomy_term_id"], Kind.TAXONOMY_TERM)
        values["term"] = decoded.term if decoded else None
        if values["term"] is None:
            problems.append("taxonomy_term_id is not the id of a term of this API's taxonomies (see /hsds/taxonomy_terms)")
    if "taxonomy_id" in args:
        decoded = ids.decode_as(args["taxonomy_id"], Kind.TAXONOMY)
        values["taxonomy"] = ids.TAXONOMY_BY_NUMBER.get(decoded.taxonomy) if decoded else None
        if values["taxonomy"] is None:
            problems.append("taxonomy_id is not the id of one of this API's taxonomies (see /hsds/taxonomies)")
    if "organization_id" in args:
        decoded = ids.decode_as(args["organization_id"], Kind.ORGANIZATION)
        if decoded is None or args["organization_id"] != ids.organization(decoded.first):
            problems.append("organization_id is not an organization id of this API")
        else:
            values["organization_id"] = decoded.first
    if "modified_after" in args:
        try:
            moment = datetime.fromisoformat(args["modified_after"])
            values["modified_after"] = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        except ValueError:
            problems.append("modified_after must be an ISO 8601 date-time, e.g. 2026-01-31T00:00:00Z")
    if "postcode" in args:
        if not (args["postcode"].isascii() and args["postcode"].isdigit() and len(args["postcode"]) == 5):
            problems.append("postcode must be a five-digit US ZIP code")
        values["postcode"] = args["postcode"]
    if "parent_id" in args:
        if not ids.ANY_UUID.match(args["parent_id"]):
            problems.append("parent_id must be a UUID in lower case")
        values["parent_id"] = args["parent_id"]
    if problems:
        raise BadRequest("; ".join(problems))
    return Query(**values)


def parse_single(endpoint: str, args: dict[str, str]) -> Query:
    known = SINGLE_PARAMETERS.get(endpoint, set())
    problems: list[str] = []
    unknown = sorted(set(args) - known)
    if unknown:
        takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
        problems.append(f"unknown parameter(s) {', '.join(unknown)}; {takes}")
    full_service = _boolean("full_service", args["full_service"], problems) if "full_service" in args else False
    if problems:
        raise BadRequest("; ".join(problems))
    return Query(full_service=full_service)


# --- which records: the feed's rule, in id order --------------------------------------------------------------

def _contains(session: Session, column, text: str) -> ColumnElement[bool]:
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if session.get_bind().dialect.name == "sqlite":
        return column.like(pattern, escape="\\")  # SQLite's LIKE ignores case already
    return column.ilike(pattern, escape="\\")


def _has_code(kind: str, codes) -> ColumnElement[bool]:
    return Provider.id.in_(select(ProviderCode.provider_id).where(ProviderCode.kind == kind,
                                                                  ProviderCode.code.in_(codes)))


def _provider_filters(session: Session, query: Query, now: datetime) -> list[ColumnElement[bool]]:
    """The feed's rule, then the HSDS filters on the provider: search, terms, organization, modified, postcode."""
    clauses: list[Any] = [listings.listed_clause(now)]
    if query.search:
        clauses.append(or_(_contains(session, Provider.public_name, query.search),
                           _contains(session, Provider.legal_name, query.search)))
    if query.term and query.term.taxonomy is not LEVELS:
        clauses.append(_has_code(query.term.taxonomy.name, [query.term.code]))
    if query.taxonomy and query.taxonomy is not LEVELS:
        clauses.append(_has_code(query.taxonomy.name, sorted(query.taxonomy.terms)))
    if query.organization_id is not None:
        clauses.append(Provider.id == query.organization_id)
    if query.modified_after:
        clauses.append(Provider.updated_at >= query.modified_after)
    return clauses


def _level_codes(query: Query) -> list[str]:
    if query.term and query.term.taxonomy is LEVELS:
        return [query.term.code]
    return sorted(LEVELS.terms)


@dataclass
class Found:
    """One page of rows and how many there are in all."""
    rows: list[Any]
    total: int


class Totals:
    """How many records each list holds, kept between requests (per process, a bounded number of lists).

    Counting a list means reading every listed provider's codes (a join over ~150k rows at 100k providers),
    which costs more than the page itself. A total is exact while the audit trail stays where it was when it was
    counted and until the first verification it counted lapses: every change to who is listed, to their coded
    lists and to their locations writes an audit event, and a listed provider leaves the directory otherwise
    only when its verified_until passes. A list filtered by modified_after is counted every time (updated_at
    also moves with writes that are not audited, the re-checks' last_rechecked_at).
    """

    SIZE = 512

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple, tuple[int, datetime | None, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, version: int, now: datetime) -> int | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            kept_version, until, total = kept
            if kept_version != version or (until is not None and until <= now):
                del self._kept[key]
                return None
            self._kept.move_to_end(key)
            return total

    def put(self, key: tuple, version: int, until: datetime | None, total: int) -> None:
        with self._lock:
            self._kept[key] = (version, until, total)
            self._kept.move_to_end(key)
            while len(self._kept) > self.SIZE:
                self._kept.popitem(last=False)


def _total_key(endpoint: str, query: Query) -> tuple | None:
    """What decides a list's total: its filters, not its page or how much each record shows."""
    if query.modified_after is not None:
        return None
    return (endpoint, query.search, query.term and (query.term.taxonomy.name, query.term.code),
            query.taxonomy and query.taxonomy.name, query.organization_id, query.postcode)


def _counted(session: Session, stmt: Select, query: Query, order, now: datetime, totals: Totals | None = None,
             endpoint: str = "") -> Found:
    key = _total_key(endpoint, query) if totals is not None else None
    total: int | None = None
    if key is not None:
        assert totals is not None
        version = session.scalar(select(func.max(AuditEvent.seq))) or 0
        total = totals.get(key, version, now)
    if total is None:
        counted = stmt.add_columns(Provider.verified_until.label("counted_until")).order_by(None).subquery()
        total, until = session.execute(select(func.count(), func.min(counted.c.counted_until))).one()
        total = total or 0
        if key is not None:
            assert totals is not None
            totals.put(key, version, until, total)
    rows = list(session.execute(stmt.order_by(*order).offset(query.offset).limit(query.per_page)).all()) \
        if query.offset < total else []
    return Found(rows, total)


def organizations(session: Session, query: Query, now: datetime, totals: Totals | None = None) -> Found:
    clauses = _provider_filters(session, query, now)
    if query.term and query.term.taxonomy is LEVELS:
        clauses.append(_has_code(LEVELS.name, [query.term.code]))
    found = _counted(session, select(Provider.id).where(*clauses), query, [Provider.id], now, totals,
                     "organizations")
    found.rows = load_providers(session, [row.id for row in found.rows])
    return found


def _service_rows(session: Session, query: Query, now: datetime) -> Select:
    return (select(ProviderCode.provider_id, ProviderCode.code)
            .join(Provider, Provider.id == ProviderCode.provider_id)
            .where(ProviderCode.kind == LEVELS.name, ProviderCode.code.in_(_level_codes(query)),
                   *_provider_filters(session, query, now)))


def services(session: Session, query: Query, now: datetime, totals: Totals | None = None) -> Found:
    """(provider, level of care) pairs: one HSDS service per level of care, by provider id then code."""
    found = _counted(session, _service_rows(session, query, now), query,
                     [ProviderCode.provider_id, ProviderCode.code], now, totals, "services")
    providers = {p.id: p for p in load_providers(session, sorted({row.provider_id for row in found.rows}))}
    found.rows = [(providers[row.provider_id], ids.term(LEVELS.name, row.code)) for row in found.rows]
    return found


def service_at_locations(session: Session, query: Query, now: datetime, totals: Totals | None = None) -> Found:
    """(provider, level of care, location) triples, by provider id, code, then location id."""
    stmt = _service_rows(session, query, now).join(Location, Location.provider_id == Provider.id) \
        .add_columns(Location.id.label("location_id"))
    if query.postcode:
        stmt = stmt.where(Location.zip.like(query.postcode + "%"))
    found = _counted(session, stmt, query, [ProviderCode.provider_id, ProviderCode.code, Location.id], now,
                     totals, "service_at_locations")
    providers = {p.id: p for p in load_providers(session, sorted({row.provider_id for row in found.rows}))}
    triples = []
    for row in found.rows:
        provider = providers[row.provider_id]
        location = next(loc for loc in provider.locations if loc.id == row.location_id)
        triples.append((provider, ids.term(LEVELS.name, row.code), location))
    found.rows = triples
    return found


def load_providers(session: Session, provider_ids: list[int]) -> list[Provider]:
    """The providers with everything a record shows, in one query and one per collection (no query per row)."""
    if not provider_ids:
        return []
    return list(session.scalars(select(Provider).where(Provider.id.in_(provider_ids))
                                .options(selectinload(Provider.locations), selectinload(Provider.licences),
                                         selectinload(Provider.accreditations))
                                .order_by(Provider.id)))


def listed_provider(session: Session, provider_id: int, now: datetime) -> Provider | None:
    found = load_providers(session, [provider_id])
    return found[0] if found and found[0].is_in_directory(now) else None


def offers(provider: Provider, level: Term) -> bool:
    return level.code in listings.coded(provider.levels_of_care, LEVELS.terms)


def taxonomies(query: Query) -> Found:
    chosen = [t for t in TAXONOMIES if not query.search or query.search.casefold() in t.title.casefold()]
    return Found(chosen[query.offset:query.offset + query.per_page], len(chosen))


def taxonomy_terms(query: Query) -> Found:
    chosen = [ids.Term(t, code) for t in TAXONOMIES if query.taxonomy in (None, t) for code in t.terms]
    if query.search:
        chosen = [t for t in chosen if query.search.casefold() in t.label.casefold()
                  or query.search.casefold() in t.code.casefold()]
    if query.parent_id:
        chosen = []  # our taxonomies are flat: no term has a parent
    return Found(chosen[query.offset:query.offset + query.per_page], len(chosen))


def page(found: Found, query: Query, contents: list[dict[str, Any]]) -> dict[str, Any]:
    """The HSDS page wrapper: size is the page size asked for; total_pages is 0 when nothing matches."""
    total_pages = math.ceil(found.total / query.per_page)
    return {"total_items": found.total, "total_pages": total_pages, "page_number": query.page,
            "size": query.per_page, "first_page": query.page == 1, "last_page": query.page >= total_pages,
            "empty": not contents, "contents": contents}


# --- what the records say ----------------------------------------------------------------------------------

@dataclass
class Context:
    """What the records of one page share: criteria versions, metadata, how to spell the receipt's address."""
    now: datetime
    receipt_url: Callable[[int], str]
    versions: dict[int | None, int] = field(default_factory=dict)
    metadata: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # The advertising copy in force of the page's advertisers, read once for the page (as the feed reads it).
    copies: dict[int, Any] = field(default_factory=dict)
    # Per provider: its marks and its organization summary, read once however many services it has on the page.
    shared: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    def once(self, what: str, provider: Provider, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        key = (what, provider.id)
        if key not in self.shared:
            self.shared[key] = build()
        return self.shared[key]


def context(session: Session, providers: list[Provider], now: datetime, receipt_url: Callable[[int], str],
            with_metadata: bool) -> Context:
    advertisers = [p.id for p in providers if p.is_active_advertiser(now)]
    return Context(now, receipt_url, listings.catalogue_versions(session, providers),
                   metadata_of(session, providers) if with_metadata else {},
                   advertising_copy.in_force(session, advertisers))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def metadata_of(session: Session, providers: list[Provider]) -> dict[int, list[dict[str, Any]]]:
    """Each published field's last change, per provider, from the audit trail: one query for the page."""
    last: dict[tuple[int, str], tuple[AuditEvent, str]] = {}
    if providers:
        events = session.scalars(select(AuditEvent).where(
            AuditEvent.entity_type == "provider", AuditEvent.provider_id.in_([p.id for p in providers]),
            AuditEvent.action.in_(METADATA_ACTIONS)).order_by(AuditEvent.seq))
        for event in events:
            for name in set(event.before or {}) | set(event.after or {}):
                if name in HSDS_FIELDS:
                    last[(event.provider_id or 0, HSDS_FIELDS[name])] = (event, name)
    out: dict[int, list[dict[str, Any]]] = {}
    for (provider_id, hsds_field), (event, name) in sorted(last.items(), key=lambda item: item[0]):
        out.setdefault(provider_id, []).append({
            "id": ids.metadata(event.seq, FIELD_NUMBERS[name]),
            "resource_id": ids.organization(provider_id),
            "resource_type": "organization",
            "last_action_date": event.occurred_at.astimezone(timezone.utc).date().isoformat(),
            "last_action_type": METADATA_ACTIONS[event.action],
            "field_name": hsds_field,
            "previous_value": _text((event.before or {}).get(name)),
            "replacement_value": _text((event.after or {}).get(name)),
            "updated_by": RESEARCH_TEAM,
        })
    return out


def verification(provider: Provider, ctx: Context) -> dict[str, Any]:
    return jsonable({
        "status": provider.verification_at(ctx.now),
        "verified_at": provider.verified_at,
        "verified_until": provider.verified_until,
        "criteria_version": ctx.versions.get(provider.verified_catalogue_id),
        "receipt_url": ctx.receipt_url(provider.id),
        "last_rechecked_at": provider.last_rechecked_at,
    })


def advertiser(provider: Provider, ctx: Context) -> dict[str, Any]:
    """The feed's own advertiser fields (the same words), in the profile's shape."""
    fields = listings.advertiser_fields(provider, ctx.copies, ctx.now)
    mark: dict[str, Any] = {"is_advertiser": bool(fields["advertiser"])}
    if fields.get("advertiser_disclosure"):
        mark["disclosure"] = fields["advertiser_disclosure"]
    if fields.get("advertisement"):
        mark["advertisement"] = jsonable(fields["advertisement"])
    return mark


def _marks(provider: Provider, ctx: Context) -> dict[str, Any]:
    return ctx.once("marks", provider, lambda: {"verification": verification(provider, ctx),
                                                "advertiser": advertiser(provider, ctx)})


def _present(record: dict[str, Any]) -> dict[str, Any]:
    """HSDS fields are strings, numbers or lists, never null: a value we do not have is left out."""
    return {key: value for key, value in record.items() if value is not None and value != ""}


def levels(provider: Provider) -> list[Term]:
    return [ids.term(LEVELS.name, code) for code in listings.coded(provider.levels_of_care, LEVELS.terms)]


def _labels(provider: Provider, taxonomy: str, attribute: str) -> list[str]:
    vocabulary = TAXONOMY_BY_NAME[taxonomy].terms
    return [vocabulary[code] for code in listings.coded(getattr(provider, attribute), vocabulary)]


def organization_summary(provider: Provider, ctx: Context) -> dict[str, Any]:
    """The organization's one-to-one fields (HSDS organization_list) and the profile's marks."""
    return ctx.once("organization", provider, lambda: _organization_summary(provider, ctx))


def _organization_summary(provider: Provider, ctx: Context) -> dict[str, Any]:
    offered = ", ".join(_labels(provider, "level_of_care", "levels_of_care")) or "no level of care on record"
    return {**_present({
        "id": ids.organization(provider.id),
        "name": provider.public_name,
        "alternate_name": provider.legal_name if provider.legal_name != provider.public_name else None,
        "description": f"{provider.public_name}: a treatment provider listed in the directory and verified by "
                       f"the research team. Levels of care: {offered}.",
        "email": provider.email,
        "website": provider.website,
    }), **_marks(provider, ctx)}


def _phone(record_id: str, number: str | None, **links: str) -> list[dict[str, Any]]:
    return [{"id": record_id, **links, "number": number, "type": "voice"}] if number else []


def location(location: Location, provider: Provider) -> dict[str, Any]:
    location_id = ids.location(location.id)
    return _present({
        "id": location_id,
        "location_type": "physical",
        "organization_id": ids.organization(provider.id),
        "name": provider.public_name,
        "latitude": location.latitude,
        "longitude": location.longitude,
        "addresses": [_present({
            "id": ids.address(location.id), "location_id": location_id, "address_1": location.street1,
            "address_2": location.street2, "city": location.city, "region": location.county,
            "state_province": location.state, "postal_code": location.zip, "country": "US",
            "address_type": "physical",
        })],
        "phones": _phone(ids.location_phone(location.id), location.phone, location_id=location_id),
    })


def organization(provider: Provider, ctx: Context, full_service: bool = False) -> dict[str, Any]:
    """The fully nested organization: phones, the NPI, locations, its services (summaries, or in full)."""
    org_id = ids.organization(provider.id)
    return {
        **organization_summary(provider, ctx),
        "phones": _phone(ids.organization_phone(provider.id), provider.phone, organization_id=org_id),
        "organization_identifiers": [{
            "id": ids.organization_identifier(provider.id), "organization_id": org_id,
            "identifier_type": "NPI", "identifier": provider.npi,
        }] if provider.npi else [],
        "locations": [location(loc, provider) for loc in provider.locations],
        "services": [service(provider, level, ctx) if full_service else service_summary(provider, level, ctx)
                     for level in levels(provider)],
        "metadata": ctx.metadata.get(provider.id, []),
    }


def _licences(provider: Provider, level: Term) -> str | None:
    """The licences that cover this level of care (a licence naming no levels covers them all)."""
    parts = []
    for licence in provider.licences:
        if licence.levels_of_care and level.code not in licence.levels_of_care:
            continue
        text = f"{licence.licence_type} {licence.number} ({licence.state}"
        text += f", issued by {licence.issuing_agency}" if licence.issuing_agency else ""
        text += f", expires {licence.expires_on.isoformat()}" if licence.expires_on else ""
        parts.append(text + ")")
    return "; ".join(parts) or None


def _accreditations(provider: Provider) -> str | None:
    parts = []
    for accreditation in provider.accreditations:
        text = accreditation.body + (f" {accreditation.accreditation_id}" if accreditation.accreditation_id else "")
        text += f" (expires {accreditation.expires_on.isoformat()})" if accreditation.expires_on else ""
        parts.append(text)
    return "; ".join(parts) or None


def service_summary(provider: Provider, level: Term, ctx: Context) -> dict[str, Any]:
    """A service's one-to-one fields (HSDS service_list): its organization, licences, verification date."""
    services = ", ".join(_labels(provider, "service", "services"))
    return {**_present({
        "id": ids.service(provider.id, level),
        "organization_id": ids.organization(provider.id),
        "name": level.label,
        "description": f"{level.label} at {provider.public_name}." + (f" Services: {services}." if services else ""),
        "url": provider.website,
        "email": provider.email,
        "status": "active",
        "licenses": _licences(provider, level),
        "accreditations": _accreditations(provider),
        "assured_date": provider.verified_at.astimezone(timezone.utc).date().isoformat()
        if provider.verified_at else None,
        "last_modified": jsonable(provider.updated_at),
    }), "organization": organization_summary(provider, ctx), **_marks(provider, ctx)}


def minimal_service(provider: Provider, level: Term) -> dict[str, Any]:
    """`minimal=true`: the id and when it last changed (and the name and status HSDS requires of a service)."""
    return {"id": ids.service(provider.id, level), "name": level.label, "status": "active",
            "last_modified": jsonable(provider.updated_at)}


def attributes(provider: Provider, level: Term) -> list[dict[str, Any]]:
    """The service's terms: its level of care, then the provider's services, populations and payment."""
    service_id = ids.service(provider.id, level)
    tagged = [level] + [ids.term(name, code) for name, attribute in
                        (("service", "services"), ("population", "populations"), ("payment", "payment_accepted"))
                        for code in listings.coded(getattr(provider, attribute), TAXONOMY_BY_NAME[name].terms)]
    return [{"id": ids.attribute(provider.id, level, item), "link_id": service_id, "link_type": "service",
             "link_entity": "service", "taxonomy_term_id": ids.taxonomy_term(item),
             "taxonomy_term": taxonomy_term(item)} for item in tagged]


def service(provider: Provider, level: Term, ctx: Context) -> dict[str, Any]:
    """The fully nested service: its terms, where it is offered, the organization's phone."""
    service_id = ids.service(provider.id, level)
    return {
        **service_summary(provider, level, ctx),
        "phones": _phone(ids.organization_phone(provider.id), provider.phone,
                         organization_id=ids.organization(provider.id)),
        "attributes": attributes(provider, level),
        "service_at_locations": [_present({
            "id": ids.service_at_location(provider.id, level, loc.id), "service_id": service_id,
            "location_id": ids.location(loc.id), "location": location(loc, provider)})
            for loc in provider.locations],
        "metadata": ctx.metadata.get(provider.id, []),
    }


def service_at_location(provider: Provider, level: Term, loc: Location, ctx: Context,
                        full: bool = False) -> dict[str, Any]:
    return {
        "id": ids.service_at_location(provider.id, level, loc.id),
        "service_id": ids.service(provider.id, level),
        "location_id": ids.location(loc.id),
        "description": f"{level.label} at {loc}",
        "location": location(loc, provider),
        "service": service(provider, level, ctx) if full else service_summary(provider, level, ctx),
        **({"attributes": attributes(provider, level)} if full else {}),
    }


def taxonomy(item: Taxonomy, uri: str) -> dict[str, Any]:
    return {"id": ids.taxonomy(item), "name": item.title, "description": item.description, "uri": uri,
            "version": "1"}


def taxonomy_term(item: Term) -> dict[str, Any]:
    return {"id": ids.taxonomy_term(item), "code": item.code, "name": item.label, "description": item.label,
            "taxonomy": item.taxonomy.title, "taxonomy_id": ids.taxonomy(item.taxonomy), "language": "en"}


def find_service(session: Session, text: str, now: datetime) -> tuple[Provider, Term] | None:
    decoded = ids.decode_as(text, Kind.SERVICE)
    level = decoded.term if decoded else None
    if decoded is None or level is None or level.taxonomy is not LEVELS or text != ids.service(decoded.first, level):
        return None
    provider = listed_provider(session, decoded.first, now)
    return (provider, level) if provider is not None and offers(provider, level) else None


def find_service_at_location(session: Session, text: str, now: datetime) -> tuple[Provider, Term, Location] | None:
    decoded = ids.decode_as(text, Kind.SERVICE_AT_LOCATION)
    level = decoded.term if decoded else None
    if decoded is None or level is None or level.taxonomy is not LEVELS \
            or text != ids.service_at_location(decoded.first, level, decoded.second):
        return None
    provider = listed_provider(session, decoded.first, now)
    if provider is None or not offers(provider, level):
        return None
    place = next((loc for loc in provider.locations if loc.id == decoded.second), None)
    return (provider, level, place) if place is not None else None


def find_organization(session: Session, text: str, now: datetime) -> Provider | None:
    decoded = ids.decode_as(text, Kind.ORGANIZATION)
    if decoded is None or text != ids.organization(decoded.first):
        return None
    return listed_provider(session, decoded.first, now)


def find_taxonomy(text: str) -> Taxonomy | None:
    decoded = ids.decode_as(text, Kind.TAXONOMY)
    item = ids.TAXONOMY_BY_NUMBER.get(decoded.taxonomy) if decoded else None
    return item if item is not None and text == ids.taxonomy(item) else None


def find_term(text: str) -> Term | None:
    decoded = ids.decode_as(text, Kind.TAXONOMY_TERM)
    item = decoded.term if decoded else None
    return item if item is not None and text == ids.taxonomy_term(item) else None

