"""Read an Open Referral HSDS 3.0 JSON dataset: each organization a FacilityRecord or a RowError.

A file holds one organization, a list of them, or an HSDS page (`contents`); a folder, every `*.json` file in
it, in name order. Each organization is validated against the shipped HSDS 3.0 organization schema (its
`$ref`s resolved from data/hsds-3.0, nothing fetched), then mapped: `name` the public name, `alternate_name`
the legal name (else the name), `website`, the first phone, its first US physical address as the location,
and the codes of our taxonomies found in its services' attributes (a term's `code`) as the coded lists; an
`organization_identifiers` entry of type NPI is the NPI (checked as every NPI is: ten digits, a valid check digit).
The organization's HSDS id is the import key, so a re-import updates instead of duplicating.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from backoffice.importers.locator import FacilityRecord, ImportFileError, NothingToImport, RowError
from backoffice.jsonerrors import where_it_breaks
from backoffice.services.listing_rules import npi as valid_npi
from backoffice.vocab import US_STATES, VOCABULARIES

SOURCE = "hsds"
SCHEMAS = Path(__file__).resolve().parent.parent.parent / "data" / "hsds-3.0" / "schema"
PUBLISHED = "https://raw.githubusercontent.com/openreferral/specification/3.0/schema/"
ZIP = re.compile(r"^\d{5}(-\d{4})?$")
NPI_TYPES = {"npi", "national provider identifier"}


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    resources = [(PUBLISHED + path.relative_to(SCHEMAS).as_posix(),
                  Resource.from_contents(json.loads(path.read_text(encoding="utf-8")), default_specification=DRAFT202012))
                 for path in sorted(SCHEMAS.rglob("*.json"))]
    return jsonschema.Draft202012Validator({"$ref": PUBLISHED + "organization.json"},
                                           registry=Registry().with_resources(resources),
                                           format_checker=jsonschema.FormatChecker())


def _is_api_root(data: Any) -> bool:
    """An HSDS API's `/` answer (the shipped example's shape): its version and links, no organization."""
    return isinstance(data, dict) and "id" not in data and "version" in data and \
        ("openapi_url" in data or "profile" in data)


def _organizations(path: Path) -> list[Any]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ImportFileError("the folder holds no .json file")
    found: list[Any] = []
    roots: list[str] = []
    for file in files:
        text = file.read_text(encoding="utf-8-sig", errors="strict")
        if not text.strip():
            raise ImportFileError(f"{file.name} is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"{file.name} is not JSON ({where_it_breaks(exc)})") from None
        if isinstance(data, dict) and isinstance(data.get("contents"), list):
            data = data["contents"]
        elif _is_api_root(data):
            roots.append(f"{file.name} is an HSDS API's root answer (version {data['version']})")
            continue  # beside the pages saved from that API, it says which API they are from
        found += data if isinstance(data, list) else [data]
    if roots and not found:
        raise NothingToImport(f"{'; '.join(roots)}, which lists no organization: save the pages of its "
                              "/organizations?full=true&full_service=true and import those")
    return found


def _problem(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def _address(record: dict) -> tuple[dict, dict] | None:
    for location in record.get("locations") or []:
        for address in location.get("addresses") or []:
            state = str(address.get("state_province", "")).strip().upper()
            if address.get("address_type", "physical") == "physical" and address.get("country") in ("US", "USA") \
                    and state in US_STATES and ZIP.match(str(address.get("postal_code", "")).strip()):
                return location, address
    return None


def _codes(record: dict) -> tuple[dict[str, list[str]], list[str]]:
    """Our codes among the terms of the services' attributes; any other term is named as not mapped."""
    lists: dict[str, set[str]] = {name: set() for name in VOCABULARIES}
    unmapped: list[str] = []
    for service in record.get("services") or []:
        for attribute in service.get("attributes") or []:
            term = attribute.get("taxonomy_term") or {}
            code = term.get("code")
            homes = [name for name, vocabulary in VOCABULARIES.items() if code in vocabulary]
            for name in homes:
                lists[name].add(code)
            if not homes and (term.get("name") or code):
                unmapped.append(f"TERM: {term.get('name') or code}")
    return {name: sorted(codes) for name, codes in lists.items()}, unmapped


def _npi(record: dict) -> tuple[str | None, str | None]:
    """The NPI among the organization's identifiers (type "NPI", any case), or why it cannot be used."""
    found: list[str] = []
    for position, identifier in enumerate(record.get("organization_identifiers") or []):
        if str(identifier.get("identifier_type", "")).strip().casefold() not in NPI_TYPES:
            continue
        try:
            number = valid_npi(str(identifier.get("identifier", "")))
        except ValueError as exc:
            return None, f"organization_identifiers/{position}: {exc}"
        if number not in found:
            found.append(number)
    if len(found) > 1:
        return None, f"organization_identifiers: more than one NPI ({', '.join(found)}); a provider has one"
    return (found[0] if found else None), None


def _record(number: int, record: Any) -> FacilityRecord | RowError:
    where = f"record {number}"
    errors = sorted(_validator().iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        return RowError(where, f"not an HSDS 3.0 organization: {_problem(errors[0])}")
    found = _address(record)
    if found is None:
        return RowError(where, "no US physical address (a location with address_1, city, a US state_province and "
                               "a five-digit postal_code)")
    location, address = found
    name = " ".join(record["name"].split())
    if not name:
        return RowError(where, "the organization's name is empty")
    npi, problem = _npi(record)
    if problem:
        return RowError(where, problem)
    phones = [p.get("number") for p in (record.get("phones") or []) + (location.get("phones") or []) if p.get("number")]
    lists, unmapped = _codes(record)
    return FacilityRecord(
        source=SOURCE, key=record["id"], where=where,
        legal_name=" ".join((record.get("alternate_name") or name).split())[:300], public_name=name[:300],
        street1=str(address["address_1"]).strip()[:200], street2=(address.get("address_2") or None),
        city=str(address["city"]).strip()[:100], state=str(address["state_province"]).strip().upper(),
        zip=str(address["postal_code"]).strip(), county=address.get("region") or None,
        phone=phones[0][:40] if phones else None, website=record.get("website") or None,
        latitude=location.get("latitude"), longitude=location.get("longitude"), npi=npi,
        unmapped=unmapped, **lists)


def read(path: Path) -> tuple[str, Iterator[FacilityRecord | RowError]]:
    """The source name and the organizations of an HSDS dataset, each a record or the reason it is not one."""
    organizations = _organizations(path)
    if not organizations:
        raise ImportFileError("the dataset holds no organization")
    return SOURCE, (_record(number, record) for number, record in enumerate(organizations, start=1))
