"""Readers for exclusion lists: OIG LEIE CSV (full, monthly supplements, reinstatements), NY OMIG, PA Medicheck.

They read and validate only; backoffice.services.screening writes. Every problem is reported with its
line number, and a file with any problem is refused as a whole by the importer.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from backoffice.checks import names
from backoffice.models import ExclusionRecordKind

LEIE_COLUMNS = [
    "LASTNAME", "FIRSTNAME", "MIDNAME", "BUSNAME", "GENERAL", "SPECIALTY", "UPIN", "NPI", "DOB", "ADDRESS",
    "CITY", "STATE", "ZIP", "EXCLTYPE", "EXCLDATE", "REINDATE", "WAIVERDATE", "WVRSTATE",
]
NY_COLUMNS = ["PROVIDER_NAME", "LICENSE_NUMBER", "NPI_Number", "PROVIDER_TYPE", "SANCTION_DATE", "ACTION_TYPE"]
PA_COLUMNS = ["ProviderName", "LicenseNumber", "Status", "BeginDate", "EndDate", "NAM_LAST_PROVR",
              "NAM_FIRST_PROVR", "NAM_MIDDLE_PROVR", "NAM_BUSNS_MP", "IDN_NPI"]
# Columns that only say which monthly file a row came from: the same row in another file is the same row.
NOT_IDENTIFYING = {"SOURCE_FILE"}
# The columns that say who is excluded and which exclusion it is: the same record across files and list
# versions however its address, NPI or other columns change (a researcher's judgement is kept against these).
IDENTITY_COLUMNS = {
    "oig_leie": ("LASTNAME", "FIRSTNAME", "MIDNAME", "BUSNAME", "DOB", "EXCLDATE"),
    "ny_omig": ("PROVIDER_NAME", "LICENSE_NUMBER", "SANCTION_DATE"),
    "pa_medicheck": ("NAM_LAST_PROVR", "NAM_FIRST_PROVR", "NAM_BUSNS_MP", "ProviderName", "LicenseNumber",
                     "BeginDate"),
}
NO_DATE = {"", "0", "00000000"}
NO_NPI = {"", "0", "0000000000", "NA", "N/A"}
# PA writes 12/31/2299 (sometimes 12/31/2099) for an open-ended preclusion.
OPEN_ENDED_YEAR = 2099
NY_BUSINESS_WORDS = {"BUSINESS", "PHARMACY", "GROUP", "PRACTICE", "CLINIC", "FACILITY", "AGENCY", "LABORATORY",
                     "HOSPITAL", "CENTER", "TRANSPORTATION", "COMPANY", "CORPORATION"}
BUSINESS_NAME_WORDS = {"INC", "LLC", "CORP", "CORPORATION", "PC", "PLLC", "LTD", "CO", "COMPANY", "PHARMACY",
                       "CENTER", "SERVICES", "GROUP", "ASSOCIATES", "CLINIC", "HOSPITAL", "MEDICAL", "HEALTH"}


class ExclusionFileError(ValueError):
    """The file as a whole cannot be read as any known exclusion list."""


@dataclass
class ExclusionRow:
    line: int
    kind: ExclusionRecordKind
    business_name: str | None
    last_name: str | None
    first_name: str | None
    middle_name: str | None
    name_key: str
    npi: str | None
    state: str | None
    city: str | None
    exclusion_type: str | None
    excluded_on: date | None
    reinstated_on: date | None
    raw: dict
    row_key: str = ""
    identity: str = ""


@dataclass
class ExclusionFile:
    list_name: str
    file_name: str
    sha256: str
    rows: list[ExclusionRow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Real-file quirks that were handled: the row is imported, the note says how.
    warnings: list[str] = field(default_factory=list)
    duplicates: int = 0

    @property
    def latest_date(self) -> date | None:
        dates = [d for row in self.rows for d in (row.excluded_on, row.reinstated_on)
                 if d and d.year < OPEN_ENDED_YEAR]
        return max(dates) if dates else None


class _RowProblem(ValueError):
    pass


def _clean(value: str | None) -> str:
    return re.sub(r"\s+", " ", value or "").strip()


def _yyyymmdd(value: str, column: str) -> date | None:
    value = _clean(value)
    if value in NO_DATE:
        return None
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise _RowProblem(f"{column} {value!r} is not a date (YYYYMMDD, or 00000000 for none)") from None


def _us_date(value: str, column: str) -> date | None:
    value = _clean(value).split(" ")[0]
    if not value:
        return None
    try:
        return datetime.strptime(value, "%m/%d/%Y").date()
    except ValueError:
        raise _RowProblem(f"{column} {value!r} is not a date (M/D/YYYY)") from None


def _npi(value: str, column: str, notes: list[str]) -> str | None:
    """The NPI, or None; a malformed one (real state files have 9-digit ones) is noted and left out."""
    value = _clean(value)
    if value.upper() in NO_NPI:
        return None
    if not (value.isdigit() and len(value) == 10):
        notes.append(f"{column} {value!r} is not a 10-digit NPI; the row is kept and screened by name only")
        return None
    return value


def _state(value: str, column: str) -> str | None:
    value = _clean(value)
    if not value:
        return None
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise _RowProblem(f"{column} {value!r} is not a two-letter state")
    return value.upper()


def _decode(data: bytes, encoding: str | None) -> str:
    if encoding:
        return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Government CSVs are often Windows-1252 / latin-1; every byte decodes, nothing is lost.
        return data.decode("latin-1")


def _row_key(list_name: str, raw: dict) -> str:
    identifying = {k: _clean(v) for k, v in raw.items() if k not in NOT_IDENTIFYING}
    return hashlib.sha256(f"{list_name}|{json.dumps(identifying, sort_keys=True)}".encode()).hexdigest()


def record_identity(list_name: str, kind: ExclusionRecordKind | str, raw: dict) -> str:
    """The digest of a row's identifying columns (case and spacing ignored), with its list and kind."""
    identifying = [_clean(raw.get(column)).upper() for column in IDENTITY_COLUMNS[list_name]]
    return hashlib.sha256(f"{list_name}|{kind}|{json.dumps(identifying)}".encode()).hexdigest()


def _leie_row(raw: dict, notes: list[str]) -> ExclusionRow:
    business = _clean(raw["BUSNAME"]) or None
    last, first, middle = _clean(raw["LASTNAME"]) or None, _clean(raw["FIRSTNAME"]) or None, _clean(raw["MIDNAME"]) or None
    if not business and not last:
        raise _RowProblem("neither BUSNAME nor LASTNAME is given")
    excluded_on = _yyyymmdd(raw["EXCLDATE"], "EXCLDATE")
    if excluded_on is None:
        raise _RowProblem("EXCLDATE is missing")
    reinstated_on = _yyyymmdd(raw["REINDATE"], "REINDATE")
    _yyyymmdd(raw["WAIVERDATE"], "WAIVERDATE")
    return ExclusionRow(
        line=0,
        kind=ExclusionRecordKind.REINSTATEMENT if reinstated_on else ExclusionRecordKind.EXCLUSION,
        business_name=business, last_name=last, first_name=first, middle_name=middle,
        name_key=names.business_key(business) if business else names.person_key(first, last),
        npi=_npi(raw["NPI"], "NPI", notes), state=_state(raw["STATE"], "STATE"), city=_clean(raw["CITY"]) or None,
        exclusion_type=_clean(raw["EXCLTYPE"]) or None,  # real files pad it with trailing spaces
        excluded_on=excluded_on, reinstated_on=reinstated_on, raw=raw,
    )


def _ny_row(raw: dict, notes: list[str]) -> ExclusionRow:
    name = _clean(raw["PROVIDER_NAME"])
    if not name:
        raise _RowProblem("PROVIDER_NAME is empty")
    words = names.tokens(name)
    provider_type = names.tokens(raw["PROVIDER_TYPE"])
    is_business = (bool(NY_BUSINESS_WORDS & set(provider_type)) and "OWNER" not in provider_type) \
        or bool(BUSINESS_NAME_WORDS & set(words))
    last = first = None
    if not is_business and len(words) >= 2:
        # NY writes people as "LAST FIRST MIDDLE CREDENTIAL".
        last, first = words[0], words[1]
    return ExclusionRow(
        line=0, kind=ExclusionRecordKind.EXCLUSION,
        business_name=name if is_business or last is None else None, last_name=last, first_name=first,
        middle_name=None,
        name_key=names.person_key(first, last) if last else names.business_key(name),
        npi=_npi(raw["NPI_Number"], "NPI_Number", notes), state="NY", city=None,
        exclusion_type=_clean(raw["ACTION_TYPE"]) or None,
        excluded_on=_us_date(raw["SANCTION_DATE"], "SANCTION_DATE"), reinstated_on=None, raw=raw,
    )


def _pa_row(raw: dict, notes: list[str]) -> ExclusionRow:
    business = _clean(raw["NAM_BUSNS_MP"]) or None
    last, first = _clean(raw["NAM_LAST_PROVR"]) or None, _clean(raw["NAM_FIRST_PROVR"]) or None
    display = _clean(raw["ProviderName"])
    name_key = names.business_key(business) if business else names.person_key(first, last)
    if not name_key and "," in display and not BUSINESS_NAME_WORDS & set(names.tokens(display)):
        # Some rows leave the first-name column empty ("Piganelli, Cheryl Ann RPh"): read the display name.
        name_key = names.person_key_from_full_name(display)
    if not name_key and display:
        # ...and some put a business in the last-name column only ("American Health Products").
        business, last, first = display, None, None
        name_key = names.business_key(display)
    if not name_key:
        raise _RowProblem("no provider name")
    end = _us_date(raw["EndDate"], "EndDate")
    return ExclusionRow(
        line=0, kind=ExclusionRecordKind.EXCLUSION,
        business_name=business, last_name=last, first_name=first,
        middle_name=_clean(raw["NAM_MIDDLE_PROVR"]) or None, name_key=name_key,
        npi=_npi(raw["IDN_NPI"], "IDN_NPI", notes), state="PA", city=None,
        exclusion_type=_clean(raw["Status"]) or None,
        excluded_on=_us_date(raw["BeginDate"], "BeginDate"),
        # An end date in the past means the preclusion is over; 12/31/2299 means open-ended.
        reinstated_on=end if end and end.year < OPEN_ENDED_YEAR else None, raw=raw,
    )


FORMATS = {
    "oig_leie": (LEIE_COLUMNS, ",", _leie_row),
    "ny_omig": (NY_COLUMNS, "\t", _ny_row),
    "pa_medicheck": (PA_COLUMNS, ",", _pa_row),
}


def _detect(first_line: str) -> str:
    for list_name, (columns, delimiter, _) in FORMATS.items():
        header = next(csv.reader([first_line], delimiter=delimiter), [])
        if set(columns) <= {h.strip() for h in header}:
            return list_name
    raise ExclusionFileError(
        "the header matches none of the known lists (OIG LEIE CSV, NY OMIG TSV, PA Medicheck CSV); "
        f"it starts {first_line[:120]!r}"
    )


def read(path: Path, expect: set[str] | None = None, encoding: str | None = None) -> ExclusionFile:
    """Read and validate a whole file; problems land in .errors with line numbers."""
    data = path.read_bytes()
    if not data.strip():
        raise ExclusionFileError("the file is empty")
    text = _decode(data, encoding)
    first_line = text.splitlines()[0]
    list_name = _detect(first_line)
    if expect and list_name not in expect:
        raise ExclusionFileError(f"this is a {list_name} file, expected {' or '.join(sorted(expect))}")
    columns, delimiter, make_row = FORMATS[list_name]
    parsed = ExclusionFile(list_name=list_name, file_name=path.name, sha256=hashlib.sha256(data).hexdigest())
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    reader.fieldnames = [h.strip() for h in reader.fieldnames or []]
    seen: set[str] = set()
    for raw in reader:
        line = reader.line_num
        if None in raw or any(raw.get(c) is None for c in columns):
            parsed.errors.append(f"line {line}: expected {len(reader.fieldnames)} columns, found a different number")
            continue
        if not any(_clean(v) not in NO_DATE for v in raw.values()):
            continue  # a blank line, or one holding only a 0 flag
        notes: list[str] = []
        try:
            row = make_row(raw, notes)
        except _RowProblem as exc:
            parsed.errors.append(f"line {line}: {exc}")
            continue
        parsed.warnings.extend(f"line {line}: {note}" for note in notes)
        if not row.name_key:
            parsed.errors.append(f"line {line}: the name has no letters or digits to match on")
            continue
        row.line = line
        row.row_key = _row_key(list_name, raw)
        row.identity = record_identity(list_name, row.kind, raw)
        if row.row_key in seen:
            parsed.duplicates += 1
            continue
        seen.add(row.row_key)
        parsed.rows.append(row)
    if not parsed.rows and not parsed.errors:
        raise ExclusionFileError("the file has a header but no rows")
    return parsed
