"""Write facilities read from public locator files as providers: create, update or leave alone."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from backoffice.importers.locator import FacilityRecord, RowError
from backoffice.models import Location, Provider
from backoffice.services import audit

PROVIDER_FIELDS = (
    "legal_name", "public_name", "phone", "website", "levels_of_care", "services", "populations",
    "payment_accepted",
)
LOCATION_FIELDS = ("street1", "street2", "city", "state", "zip", "county", "latitude", "longitude")


@dataclass
class ImportSummary:
    source: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: list[str] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)
    # "GROUP: label" of each source value not mapped onto the vocabularies -> rows that carried it
    unmapped: Counter[str] = field(default_factory=Counter)
    # Values of a record left as they were on file, each with why (an NPI the research team holds, say).
    kept: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.created + self.updated

    def unmapped_notes(self) -> list[str]:
        """One line per source value left out of the listings, most frequent first."""
        return [f"{value} ({rows} row{'s' if rows != 1 else ''}): not in the vocabularies, left out of the listing"
                for value, rows in sorted(self.unmapped.items(), key=lambda item: (-item[1], item[0]))]


def _record_values(record: FacilityRecord) -> tuple[dict, dict]:
    """The provider's and its location's values a record sets. The NPI only where the source carries one: a source
    without NPIs (the SAMHSA files) never clears one a provider gave or the research team recorded."""
    provider_values = {name: getattr(record, name) for name in PROVIDER_FIELDS}
    if record.npi is not None:
        provider_values["npi"] = record.npi
    return provider_values, {name: getattr(record, name) for name in LOCATION_FIELDS}


def _existing(session: Session, source: str, keys: list[str]) -> dict[str, Provider]:
    found: dict[str, Provider] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        for provider in session.scalars(
            select(Provider)
            .where(Provider.import_source == source, Provider.import_key.in_(chunk))
            .options(selectinload(Provider.locations))
        ):
            assert provider.import_key is not None  # selected by it
            found[provider.import_key] = provider
    return found


def validate(rows: Iterable[FacilityRecord | RowError], source: str) -> tuple[list[FacilityRecord], ImportSummary]:
    """Split parsed rows into good records and a summary of rejected and duplicate rows."""
    summary = ImportSummary(source=source)
    records: list[FacilityRecord] = []
    seen: dict[str, str] = {}
    for row in rows:
        if isinstance(row, RowError):
            summary.rejected.append(row)
        elif row.key in seen:
            summary.duplicates.append(f"{row.where}: same facility as {seen[row.key]}; kept the first")
        else:
            seen[row.key] = row.where
            records.append(row)
            summary.unmapped.update(set(row.unmapped))
    return records, summary


def apply(
    session: Session,
    actor: audit.Actor,
    records: list[FacilityRecord],
    summary: ImportSummary,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Create or update one provider per record, auditing each change; the caller commits once."""
    existing = _existing(session, summary.source, [r.key for r in records])
    created: list[tuple[Provider, FacilityRecord, dict, dict]] = []
    for record in records:
        provider_values, location_values = _record_values(record)
        provider = existing.get(record.key)
        if provider is None:
            provider = Provider(import_source=record.source, import_key=record.key, **provider_values)
            provider.locations.append(Location(**location_values))
            session.add(provider)
            created.append((provider, record, provider_values, location_values))
        else:
            _update(session, actor, provider, record, provider_values, location_values, summary)
        if progress:
            progress(1)
    # One flush assigns every new id; then each creation is audited with its id.
    session.flush()
    for provider, record, provider_values, location_values in created:
        audit.record(
            session, actor, "provider.imported", "provider", provider.id,
            after={**provider_values, "location": location_values},
            reason=f"{record.source} {record.where}", provider_id=provider.id,
        )
    summary.created += len(created)
    session.flush()
    return summary


def _update(session: Session, actor: audit.Actor, provider: Provider, record: FacilityRecord,
            provider_values: dict, location_values: dict, summary: ImportSummary) -> None:
    if provider_values.get("npi") and provider.npi and provider_values["npi"] != provider.npi:
        # The NPI on file is the one the research team checked (NPI_ACTIVE): an import does not replace it.
        summary.kept.append(f"{record.where}: its NPI {provider_values.pop('npi')} differs from the one on file "
                            f"({provider.npi}), which is kept: the research team changes an NPI, from evidence")
    location = provider.locations[0] if provider.locations else None
    before = {**audit.snapshot(provider, provider_values),
              "location": audit.snapshot(location, LOCATION_FIELDS) if location else None}
    after = {**audit.jsonable(provider_values), "location": audit.jsonable(location_values)}
    old, new = audit.changed(before, after)
    if not old and not new:
        summary.unchanged += 1
        return
    for name, value in provider_values.items():
        setattr(provider, name, value)
    if location is None:
        provider.locations.append(Location(**location_values))
    else:
        for name, value in location_values.items():
            setattr(location, name, value)
    audit.record(
        session, actor, "provider.import_updated", "provider", provider.id,
        before=old, after=new, reason=f"{record.source} {record.where}", provider_id=provider.id,
    )
    summary.updated += 1
