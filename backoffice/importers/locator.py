"""Read SAMHSA treatment-locator exports: FindTreatment.gov JSON and the OEPS CSV files.

Every row becomes either a FacilityRecord or a RowError naming the row and the reason.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

from backoffice.jsonerrors import where_it_breaks
from backoffice.vocab import US_STATES, samhsa_mapping


class ImportFileError(Exception):
    """The file as a whole cannot be read (not JSON, unknown columns, ...)."""


class NothingToImport(Exception):
    """The file is what its format allows but holds no record to import (an HSDS API's root answer): not an error."""


@dataclass
class FacilityRecord:
    source: str
    key: str
    where: str
    legal_name: str
    public_name: str
    street1: str
    street2: str | None
    city: str
    state: str
    zip: str
    county: str | None = None
    phone: str | None = None
    website: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    # A source that carries the NPI (HSDS organization_identifiers); None leaves the provider's NPI as it is.
    npi: str | None = None
    levels_of_care: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    populations: list[str] = field(default_factory=list)
    payment_accepted: list[str] = field(default_factory=list)
    # Source values the mapping onto the vocabularies does not know: not in the listing, named in the summary.
    unmapped: list[str] = field(default_factory=list)


@dataclass
class RowError:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def classify(items: list[str]) -> tuple[list[str], list[str]]:
    """Levels of care and services named by a list of locator service labels (data/vocab/samhsa-locator-vN.json)."""
    mapped = samhsa_mapping().map_labels(items)
    return mapped.codes["levels_of_care"], mapped.codes["services"]


def split_items(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(";") if part.strip()]


def natural_key(*parts: str | None) -> str:
    normalised = "|".join(re.sub(r"\s+", " ", (p or "").strip().lower()) for p in parts)
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def normalise_zip(zip5: str | int | None, zip4: str | int | None = None) -> str:
    """ZIP or ZIP+4; restores the leading zeros that spreadsheet exports dropped."""
    text = str(zip5 if zip5 is not None else "").strip()
    if re.fullmatch(r"\d{5}-\d{4}", text):
        return text
    if not re.fullmatch(r"\d{3,5}", text):
        raise ValueError(f"ZIP code {text!r} is not 5 digits" if text else "ZIP code is missing")
    text = text.zfill(5)
    plus4 = str(zip4 if zip4 is not None else "").strip()
    if plus4.upper() == "NA":  # the OEPS exports were written by R, whose missing value is "NA"
        plus4 = ""
    if plus4:
        if not re.fullmatch(r"\d{1,4}", plus4):
            raise ValueError(f"ZIP+4 extension {plus4!r} is not 4 digits")
        text = f"{text}-{plus4.zfill(4)}"
    return text


def normalise_website(url: str | None) -> str | None:
    text = (url or "").strip()
    # The locator writes a bare scheme where a facility has no website.
    if not text or text.lower() in {"http://", "https://", "na"}:
        return None
    if "://" not in text and not text.lower().startswith(("javascript:", "data:", "vbscript:")):
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname or " " in text:
        raise ValueError(f"website {url!r} is not an http or https address")
    return text


def coordinate(value, low: float, high: float, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a number") from None
    if not low <= number <= high:
        raise ValueError(f"{name} {number} is out of range")
    return number


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    return "" if value is None else str(value).strip()


def build_record(source: str, where: str, key: str | None, row: dict, *, name1: str, name2: str = "",
                 street1: str, street2: str = "", city: str, state: str, zip5, zip4=None,
                 county: str = "", phone: str = "", website: str = "", latitude=None, longitude=None,
                 levels: list[str] = (), services: list[str] = (), populations: list[str] = (),
                 payment: list[str] = (), unmapped: list[str] = ()) -> FacilityRecord | RowError:
    """Validate one row's fields; every problem of the row is reported together."""
    problems: list[str] = []
    if not name1:
        problems.append("facility name is missing")
    if not street1:
        problems.append("street address is missing")
    if not city:
        problems.append("city is missing")
    state = state.upper()
    if not state:
        problems.append("state is missing")
    elif state not in US_STATES:
        problems.append(f"state {state!r} is not a US state or territory code")
    for label, value, limit in (
        ("facility name", name1, 300), ("second name", name2, 300), ("street address", street1, 200),
        ("second address line", street2, 200), ("city", city, 100), ("county", county, 100),
        ("phone", phone, 40), ("website", website, 500),
    ):
        if value and len(value) > limit:
            problems.append(f"{label} is {len(value)} characters long; at most {limit} fit")
    values = {}
    for name, fn in (
        ("zip", lambda: normalise_zip(zip5, zip4)),
        ("website", lambda: normalise_website(website)),
        ("latitude", lambda: coordinate(latitude, -90, 90, "latitude")),
        ("longitude", lambda: coordinate(longitude, -180, 180, "longitude")),
    ):
        try:
            values[name] = fn()
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        return RowError(where, "; ".join(problems))
    if name2.upper().startswith("DBA "):
        public_name = name2[4:].strip()
    elif name2:
        public_name = f"{name1} ({name2})"
    else:
        public_name = name1
    return FacilityRecord(
        source=source,
        key=key or natural_key(name1, name2, street1, street2, city, state, values["zip"][:5]),
        where=where,
        legal_name=name1,
        public_name=public_name[:300],
        street1=street1,
        street2=street2 or None,
        city=city,
        state=state,
        zip=values["zip"],
        county=county or None,
        phone=phone or None,
        website=values["website"],
        latitude=values["latitude"],
        longitude=values["longitude"],
        levels_of_care=list(levels),
        services=list(services),
        populations=list(populations),
        payment_accepted=list(payment),
        unmapped=list(unmapped),
    )


# The locator's typeFacility: a substance-use or a mental-health facility.
FACILITY_TYPES = {"SA": "substance_use_treatment", "MH": "mental_health_treatment"}


def _findtreatment_rows(data) -> list:
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        return data["rows"]
    if isinstance(data, list):
        return data
    raise ImportFileError("expected a FindTreatment.gov export: an object with a 'rows' list, or a list of rows")


def parse_findtreatment(text: str) -> Iterator[FacilityRecord | RowError]:
    mapping = samhsa_mapping()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"not valid JSON: {where_it_breaks(exc)}") from None
    except RecursionError:
        raise ImportFileError("not a locator export: the JSON is nested too deeply") from None
    for index, row in enumerate(_findtreatment_rows(data)):
        where = f"row {index}"
        if not isinstance(row, dict):
            yield RowError(where, "is not an object")
            continue
        frid = _text(row, "frid")
        if frid:
            where = f"row {index} (frid {frid[:12]}…)"
        services = row.get("services") or []
        if not isinstance(services, list):
            yield RowError(where, "'services' is not a list")
            continue
        labels: list[str] = []
        unmapped: list[str] = []
        for item in services:
            if isinstance(item, dict) and isinstance(item.get("f3"), str):
                group = str(item.get("f2", ""))
                for label in split_items(item["f3"]):
                    labels.append(label)
                    if mapping.codes_for(label) is None:
                        unmapped.append(f"{group}: {label}")
        codes = mapping.map_labels(labels).codes
        type_facility = _text(row, "typeFacility")
        if type_facility in FACILITY_TYPES:
            codes["services"] = sorted({*codes["services"], FACILITY_TYPES[type_facility]})
        yield build_record(
            "findtreatment", where, frid if re.fullmatch(r"[0-9a-f]{64}", frid) else None, row,
            name1=_text(row, "name1"), name2=_text(row, "name2"), street1=_text(row, "street1"),
            street2=_text(row, "street2"), city=_text(row, "city"), state=_text(row, "state"),
            zip5=_text(row, "zip"), phone=_text(row, "phone"), website=_text(row, "website"),
            latitude=row.get("latitude"), longitude=row.get("longitude"), levels=codes["levels_of_care"],
            services=codes["services"], populations=codes["populations"], payment=codes["payment_accepted"],
            unmapped=unmapped,
        )


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Some SAMHSA exports are Windows-1252; latin-1 is the last resort and never fails.
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


# Each source a provider can be imported from, as a page names it.
SOURCE_NAMES = {
    "findtreatment": "FindTreatment.gov locator export",
    "oeps_mental_health": "SAMHSA locator: mental-health facilities (OEPS)",
    "oeps_substance_use": "SAMHSA locator: substance-use treatment facilities (OEPS)",
    "oeps_otp": "SAMHSA directory of opioid treatment programs (OEPS)",
}

OEPS_LAYOUTS = {
    # source name: (columns that identify the layout, service implied by the file)
    "oeps_mental_health": ({"name1", "street1", "type_facility"}, ["mental_health_treatment"], []),
    "oeps_substance_use": ({"name1", "street1", "county"}, ["substance_use_treatment"], []),
    "oeps_otp": ({"ID", "ADDRESS", "CITY", "STATE", "POSTAL"}, ["moud", "substance_use_treatment"], ["otp"]),
}


def detect_csv_layout(columns: set[str]) -> str:
    for source, (required, _, _) in OEPS_LAYOUTS.items():
        if required <= columns:
            return source
    raise ImportFileError(
        "unknown CSV layout: expected the OEPS mental-health, substance-use or OTP columns, got "
        + ", ".join(sorted(c for c in columns if c)[:12])
    )


def parse_oeps_csv(text: str) -> tuple[str, Iterator[FacilityRecord | RowError]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise ImportFileError("the CSV file is empty")
    source = detect_csv_layout(set(reader.fieldnames))
    _, services, levels = OEPS_LAYOUTS[source]

    def rows() -> Iterator[FacilityRecord | RowError]:
        try:
            for row in reader:
                where = f"line {reader.line_num}"
                if None in row:
                    yield RowError(where, "has more fields than the header")
                    continue
                if source == "oeps_otp":
                    yield build_record(
                        source, where, None, row, name1=_text(row, "ID"), street1=_text(row, "ADDRESS"),
                        city=_text(row, "CITY"), state=_text(row, "STATE"), zip5=_text(row, "POSTAL"),
                        latitude=row.get("Latitude"), longitude=row.get("Longitude"),
                        levels=levels, services=services,
                    )
                else:
                    yield build_record(
                        source, where, None, row, name1=_text(row, "name1"), name2=_text(row, "name2"),
                        street1=_text(row, "street1"), street2=_text(row, "street2"), city=_text(row, "city"),
                        state=_text(row, "state"), zip5=_text(row, "zip"), zip4=_text(row, "zip4"),
                        county=_text(row, "county"), phone=_text(row, "phone"),
                        website=_text(row, "website"), latitude=row.get("latitude"),
                        longitude=row.get("longitude"), levels=levels, services=services,
                    )
        except csv.Error as exc:
            # The reader cannot go on past a broken line, so the rest of the file would go unread.
            raise ImportFileError(f"malformed CSV after line {reader.line_num}: {exc}; the rows from there on "
                                  "cannot be read") from None

    return source, rows()


def read_file(path: Path) -> tuple[str, Iterator[FacilityRecord | RowError]]:
    """The source name and the parsed rows of a locator file, chosen by its content."""
    raw = path.read_bytes()
    if not raw.strip():
        raise ImportFileError("the file is empty")
    text = _decode(raw)
    if text.lstrip()[:1] in ("{", "["):
        return "findtreatment", parse_findtreatment(text)
    return parse_oeps_csv(text)
