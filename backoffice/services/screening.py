"""Exclusion lists: import files (recording the source file and date) and screen providers and principals."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, and_, func, insert, or_, select
from sqlalchemy.orm import Session

from backoffice.checks import names
from backoffice.checks.exclusion_lists import ExclusionFile
from backoffice.checks.result import CheckResult, FindingSpec
from backoffice.models import (
    CheckOutcome,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    FindingSeverity,
)
from backoffice.services import audit, sources
from backoffice.services.errors import DomainError

INSERT_CHUNK = 2000
# How sure a match is: by NPI the identity is certain; by name it is a lead for a researcher.
CONFIDENCE_NPI = 1.0
CONFIDENCE_NAME_STATE_CITY = 0.9
CONFIDENCE_NAME_STATE = 0.75


@dataclass
class ImportResult:
    source: ExclusionSource
    added: int
    already_known: int
    already_imported: bool = False


def find_source(session: Session, sha256: str) -> ExclusionSource | None:
    return session.scalar(select(ExclusionSource).where(ExclusionSource.sha256 == sha256))


def import_file(session: Session, actor: audit.Actor, parsed: ExclusionFile, file_date: date | None) -> ImportResult:
    """Store the rows not seen before; a file imported before adds nothing. Refuses a file with errors."""
    if parsed.errors:
        raise DomainError(f"{parsed.file_name} has {len(parsed.errors)} problems; nothing was imported")
    existing = find_source(session, parsed.sha256)
    if existing is not None:
        return ImportResult(existing, 0, len(parsed.rows), already_imported=True)
    known = set(session.scalars(select(ExclusionRecord.row_key).where(ExclusionRecord.list_name == parsed.list_name)))
    new_rows = [row for row in parsed.rows if row.row_key not in known]
    source = ExclusionSource(
        list_name=parsed.list_name, file_name=parsed.file_name, file_date=file_date or parsed.latest_date,
        sha256=parsed.sha256, row_count=len(parsed.rows), imported_by=audit.actor_label(actor),
    )
    session.add(source)
    session.flush()
    values = [
        {
            "source_id": source.id, "list_name": parsed.list_name, "kind": row.kind, "row_key": row.row_key,
            "business_name": row.business_name, "last_name": row.last_name, "first_name": row.first_name,
            "middle_name": row.middle_name, "name_key": row.name_key, "npi": row.npi, "state": row.state,
            "city": row.city, "exclusion_type": row.exclusion_type, "excluded_on": row.excluded_on,
            "reinstated_on": row.reinstated_on, "raw": row.raw,
        }
        for row in new_rows
    ]
    for start in range(0, len(values), INSERT_CHUNK):
        session.execute(insert(ExclusionRecord), values[start:start + INSERT_CHUNK])
    audit.record(
        session, actor, "exclusion_list.imported", "exclusion_source", source.id,
        after={"list_name": source.list_name, "file_name": source.file_name, "file_date": source.file_date,
               "sha256": source.sha256, "rows": len(parsed.rows), "added": len(new_rows),
               "already_known": len(parsed.rows) - len(new_rows)},
    )
    sources.refreshed(session, actor, parsed.list_name, source.imported_at)
    session.flush()
    return ImportResult(source, len(new_rows), len(parsed.rows) - len(new_rows))


def source_version(session: Session) -> str:
    """Which list files a screening ran against: the latest file date of each list."""
    rows = session.execute(
        select(ExclusionSource.list_name, func.max(ExclusionSource.file_date), func.count())
        .group_by(ExclusionSource.list_name).order_by(ExclusionSource.list_name)
    ).all()
    return "; ".join(f"{name} {latest or '?'} ({count} files)" for name, latest, count in rows)


@dataclass(frozen=True)
class Party:
    """Someone screened: the organisation itself or one of its principals."""

    role: str
    name: str
    name_key: str
    npi: str | None


def parties(legal_name: str, public_name: str, npi: str | None,
            principals: list[tuple[str, str | None]]) -> list[Party]:
    found = [Party("organisation", name, names.business_key(name), npi) for name in dict.fromkeys((legal_name, public_name)) if name]
    found += [Party("principal", name, names.person_key_from_full_name(name), principal_npi)
              for name, principal_npi in principals]
    return [p for p in found if p.name_key or p.npi]


def _record_summary(record: ExclusionRecord) -> dict:
    return {
        "list": record.list_name, "name": record.business_name or " ".join(
            p for p in (record.first_name, record.middle_name, record.last_name) if p),
        "npi": record.npi, "city": record.city, "state": record.state, "exclusion_type": record.exclusion_type,
        "excluded_on": record.excluded_on, "reinstated_on": record.reinstated_on,
        "source_file": record.source.file_name if record.source else None,
        "general": record.raw.get("GENERAL") or record.raw.get("PROVIDER_TYPE"),
        "specialty": record.raw.get("SPECIALTY"), "address": record.raw.get("ADDRESS"),
    }


@dataclass
class Subject:
    """One provider to screen: its parties and the states and cities it operates in."""

    parties: list[Party]
    states: set[str]
    cities: set[str]


SCREEN_CHUNK = 500


def screen(session: Session, screened: list[Party], states: set[str], cities: set[str], today: date) -> CheckResult:
    """Match the parties against every imported list; reinstated or ended exclusions do not count."""
    return screen_many(session, [Subject(screened, states, cities)], today)[0]


def screen_many(session: Session, subjects: list[Subject], today: date) -> list[CheckResult]:
    """Screen many providers with one candidate query per chunk of them, not several queries each."""
    if session.scalar(select(ExclusionSource.id).limit(1)) is None:
        # Screening against nothing is not a pass.
        return [CheckResult.error("No exclusion list has been imported: nothing to screen against", _evidence(s, 0))
                for s in subjects]
    version = source_version(session)
    results = []
    for start in range(0, len(subjects), SCREEN_CHUNK):
        chunk = subjects[start:start + SCREEN_CHUNK]
        by_npi, by_name = _candidates(session, chunk)
        for subject in chunk:
            npis = {p.npi for p in subject.parties if p.npi}
            keys = {p.name_key for p in subject.parties if p.name_key}
            candidates = {r.id: r for npi in npis for r in by_npi.get(npi, ())}
            if subject.states:
                candidates.update((r.id, r) for key in keys for r in by_name.get(key, ()) if r.state in subject.states)
            results.append(_judge(list(candidates.values()), subject, today, version))
    return results


def _candidates(session: Session, chunk: list[Subject]) -> tuple[dict, dict]:
    """The exclusion records sharing an NPI, or a name key in a state, with anyone in the chunk."""
    npis = {p.npi for s in chunk for p in s.parties if p.npi}
    keys = {p.name_key for s in chunk if s.states for p in s.parties if p.name_key}
    states = {state for s in chunk for state in s.states}
    conditions: list[ColumnElement[bool]] = []
    if npis:
        conditions.append(ExclusionRecord.npi.in_(npis))
    if keys and states:
        conditions.append(and_(ExclusionRecord.name_key.in_(keys), ExclusionRecord.state.in_(states)))
    by_npi: dict[str, list[ExclusionRecord]] = {}
    by_name: dict[str, list[ExclusionRecord]] = {}
    if conditions:
        for record in session.scalars(select(ExclusionRecord).where(or_(*conditions))):
            if record.npi:
                by_npi.setdefault(record.npi, []).append(record)
            by_name.setdefault(record.name_key, []).append(record)
    return by_npi, by_name


def _evidence(subject: Subject, matches: int) -> dict:
    return {"screened": [{"role": p.role, "name": p.name, "npi": p.npi} for p in subject.parties],
            "states": sorted(subject.states), "matches": matches}


def _judge(candidates: list[ExclusionRecord], subject: Subject, today: date, version: str) -> CheckResult:
    screened, states, cities = subject.parties, subject.states, subject.cities
    candidates.sort(key=lambda r: r.id)
    reinstated = {
        marker
        for r in candidates if r.kind == ExclusionRecordKind.REINSTATEMENT
        for marker in ((r.npi, r.excluded_on), (r.name_key, r.state, r.excluded_on))
        if marker[0]
    }
    found: list[FindingSpec] = []
    upper_cities = {c.upper() for c in cities}
    for record in candidates:
        if record.kind != ExclusionRecordKind.EXCLUSION:
            continue
        if record.reinstated_on and record.reinstated_on <= today:
            continue
        if (record.npi, record.excluded_on) in reinstated or (record.name_key, record.state, record.excluded_on) in reinstated:
            continue
        for party in screened:
            if party.npi and record.npi == party.npi:
                confidence, how = CONFIDENCE_NPI, "NPI"
            elif party.name_key and record.name_key == party.name_key and record.state in states:
                same_city = bool(record.city and record.city.upper() in upper_cities)
                confidence = CONFIDENCE_NAME_STATE_CITY if same_city else CONFIDENCE_NAME_STATE
                how = "name, state and city" if same_city else "name and state"
            else:
                continue
            confirmed = confidence >= CONFIDENCE_NPI
            detail = {
                "party": {"role": party.role, "name": party.name, "npi": party.npi},
                "record": _record_summary(record), "matched_by": how, "confidence": confidence,
                "exclusion_record_id": record.id,
            }
            label = "Excluded" if confirmed else "Probable exclusion match"
            found.append(FindingSpec(
                f"exclusion:{record.row_key}:{party.role}:{party.name_key or party.npi}",
                FindingSeverity.CRITICAL if confirmed else FindingSeverity.WARNING,
                f"{label}: {party.role} {party.name} on {record.list_name} ({how})"[:300], detail,
            ))
            break
    evidence = _evidence(subject, len(found))
    if not found:
        return CheckResult(CheckOutcome.PASS, f"No exclusion match ({version})"[:500], evidence, source_version=version[:200])
    critical = any(f.severity == FindingSeverity.CRITICAL for f in found)
    return CheckResult(CheckOutcome.FAIL if critical else CheckOutcome.WARN,
                       "; ".join(f.title for f in found)[:500], evidence, found, source_version=version[:200])
