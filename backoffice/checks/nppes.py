"""NPPES NPI Registry API (version 2.1): the client, a parser for every recorded variant, and the comparison.

Variants seen in real responses: `number` and epochs as integers (2019) or strings (2022+); `gender`
(older) or `sex` (newer); errors returned with HTTP 200 as {"Errors": [...]}; empty results.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import urlencode

from backoffice.checks import names
from backoffice.checks.http import GuardedClient, OutboundError
from backoffice.checks.result import CheckResult, FindingSpec
from backoffice.models import CheckOutcome, FindingSeverity


class NppesFormatError(ValueError):
    """The answer is not an NPI Registry response we understand."""


@dataclass(frozen=True)
class NppesAddress:
    purpose: str
    address_1: str
    address_2: str
    city: str
    state: str
    postal_code: str

    def as_dict(self) -> dict:
        return {"address_1": self.address_1, "address_2": self.address_2, "city": self.city,
                "state": self.state, "postal_code": self.postal_code}


@dataclass(frozen=True)
class NppesRecord:
    number: str
    enumeration_type: str
    status: str
    organization_name: str | None
    first_name: str | None
    last_name: str | None
    sex: str | None
    deactivation_date: str | None
    addresses: tuple[NppesAddress, ...]
    other_names: tuple[str, ...] = ()

    @property
    def location(self) -> NppesAddress | None:
        return next((a for a in self.addresses if a.purpose == "LOCATION"), None)

    @property
    def display_name(self) -> str:
        return self.organization_name or " ".join(p for p in (self.first_name, self.last_name) if p)


@dataclass(frozen=True)
class NppesAnswer:
    records: tuple[NppesRecord, ...] = ()
    errors: tuple[str, ...] = ()
    result_count: int = 0


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _record(raw: dict) -> NppesRecord:
    if not isinstance(raw, dict):
        raise NppesFormatError("a result is not an object")
    basic = raw.get("basic") or {}
    number = _text(raw.get("number"))
    if not number.isdigit() or len(number) != 10:
        raise NppesFormatError(f"result number {raw.get('number')!r} is not a 10-digit NPI")
    addresses = tuple(
        NppesAddress(
            purpose=_text(a.get("address_purpose")).upper(), address_1=_text(a.get("address_1")),
            address_2=_text(a.get("address_2")), city=_text(a.get("city")), state=_text(a.get("state")),
            postal_code=_text(a.get("postal_code")),
        )
        for a in raw.get("addresses") or [] if isinstance(a, dict)
    )
    other = tuple(_text(o.get("organization_name")) for o in raw.get("other_names") or []
                  if isinstance(o, dict) and o.get("organization_name"))
    return NppesRecord(
        number=number,
        enumeration_type=_text(raw.get("enumeration_type")),
        status=_text(basic.get("status")).upper(),
        organization_name=_text(basic.get("organization_name")) or None,
        first_name=_text(basic.get("first_name")) or None,
        last_name=_text(basic.get("last_name")) or None,
        sex=(_text(basic.get("sex") or basic.get("gender")) or None),
        deactivation_date=_text(basic.get("deactivation_date")) or None,
        addresses=addresses,
        other_names=other,
    )


def parse(payload: bytes | str | dict) -> NppesAnswer:
    """Parse one API answer; raises NppesFormatError for anything that is not one."""
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise NppesFormatError(f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise NppesFormatError("the answer is not a JSON object")
    if "Errors" in payload:
        errors = payload["Errors"] or []
        return NppesAnswer(errors=tuple(
            f"{_text(e.get('field'))}: {_text(e.get('description'))}" if isinstance(e, dict) else _text(e)
            for e in errors
        ) or ("unspecified error",))
    if "results" not in payload:
        raise NppesFormatError("neither 'results' nor 'Errors' in the answer")
    results = payload["results"] or []
    if not isinstance(results, list):
        raise NppesFormatError("'results' is not a list")
    try:
        count = int(payload.get("result_count", len(results)))
    except (TypeError, ValueError):
        raise NppesFormatError(f"result_count {payload.get('result_count')!r} is not a number") from None
    return NppesAnswer(records=tuple(_record(r) for r in results), result_count=count)


@dataclass
class NppesClient:
    http: GuardedClient
    base_url: str

    def lookup_url(self, npi: str) -> str:
        return self.base_url + ("&" if "?" in self.base_url else "?") + urlencode({"version": "2.1", "number": npi})

    def lookup(self, npi: str) -> NppesAnswer:
        """Ask the registry for one NPI. Network errors propagate (OutboundError) so the task can retry."""
        response = self.http.get(self.lookup_url(npi), headers={"Accept": "application/json"})
        if response.status >= 500 or response.status == 429:
            raise OutboundError("http_status", f"NPPES answered {response.status}", transient=True)
        if response.status != 200:
            raise NppesFormatError(f"NPPES answered HTTP {response.status}")
        if response.truncated:
            raise NppesFormatError("the NPPES answer exceeded the size cap")
        return parse(response.body)


@dataclass
class ProviderFacts:
    """What the NPPES comparison needs to know about a provider, read before any network call."""

    npi: str | None
    names: list[str]
    locations: list[dict] = field(default_factory=list)


def compare(facts: ProviderFacts, answer: NppesAnswer) -> CheckResult:
    """Judge a provider against the registry: active, organisation name and LOCATION address match."""
    npi = facts.npi
    if answer.errors:
        return CheckResult.error("NPPES refused the query: " + "; ".join(answer.errors), {"errors": list(answer.errors)})
    record = next((r for r in answer.records if r.number == npi), None)
    if record is None:
        return CheckResult(
            CheckOutcome.FAIL, f"NPI {npi} is not in the NPI Registry",
            {"npi": npi, "result_count": answer.result_count},
            [FindingSpec("npi:not_found", FindingSeverity.CRITICAL, f"NPI {npi} not found in NPPES", {"npi": npi})],
        )
    evidence = {
        "npi": npi, "enumeration_type": record.enumeration_type, "status": record.status,
        "registry_name": record.display_name, "registry_location": record.location.as_dict() if record.location else None,
        "deactivation_date": record.deactivation_date,
    }
    found: list[FindingSpec] = []
    if record.status != "A":
        found.append(FindingSpec("npi:inactive", FindingSeverity.CRITICAL,
                                 f"NPI {npi} is not active in NPPES (status {record.status or 'missing'})", evidence))
    if record.enumeration_type != "NPI-2":
        found.append(FindingSpec("npi:not_organisation", FindingSeverity.WARNING,
                                 f"NPI {npi} belongs to an individual, not an organisation", evidence))
    registry_names = {names.business_key(n) for n in (record.organization_name, *record.other_names) if n}
    ours = {names.business_key(n) for n in facts.names if n}
    if record.organization_name and not (registry_names & ours):
        found.append(FindingSpec("npi:name_mismatch", FindingSeverity.WARNING,
                                 f"NPPES name '{record.organization_name}' does not match the listing", evidence))
    location = record.location
    if location and facts.locations and not any(_same_place(location, ours_loc) for ours_loc in facts.locations):
        found.append(FindingSpec("npi:address_mismatch", FindingSeverity.WARNING,
                                 "NPPES practice location does not match any listed location", evidence))
    if not found:
        return CheckResult(CheckOutcome.PASS, f"NPI {npi} active; name and location match", evidence)
    worst = max(found, key=lambda f: ["info", "warning", "critical"].index(f.severity.value))
    outcome = CheckOutcome.FAIL if worst.severity == FindingSeverity.CRITICAL else CheckOutcome.WARN
    return CheckResult(outcome, "; ".join(f.title for f in found)[:500], evidence, found)


def _same_place(registry: NppesAddress, ours: dict) -> bool:
    return (names.zip5(registry.postal_code) == names.zip5(ours.get("zip"))
            and names.address_key(registry.address_1) == names.address_key(ours.get("street1")))
