"""Readable cells for every Flask-Admin list and details page: the type formatters of the secured base view.

Nothing reaches a page as Python's own spelling: no `None`, no `<... object at 0x...>`, no enum codes, no
ISO timestamps. Moments and days use backoffice.formatting; JSON values and lists of codes go through the same
`_values.html` macro the case page uses, so a code reads the same in words everywhere. A provider's locations,
licences, accreditations and principals (its own rows, or the records a request proposes) each read as one
line a person would write: "VA licence LIC-778 (Outpatient substance use), expires 27 Sep 2027, ...".
"""
from __future__ import annotations

import re
from datetime import date, datetime
from enum import Enum
from typing import Any, Callable, Mapping

from flask import get_template_attribute
from markupsafe import Markup, escape

from backoffice import formatting
from backoffice.models import Account, Base
from backoffice.services import audit, profile

# Column names whose values are codes of another field's vocabulary.
VOCABULARY_OF = {"applies_to_levels": "levels_of_care"}
DASH = Markup('<span class="text-muted">—</span>')


def _keys(value) -> set[str]:
    if isinstance(value, Mapping):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, (list, tuple)):
        return {key for item in value for key in _keys(item)}
    return set()


def _show(value, name: str) -> Markup:
    """A value through the `_values.html` macro; a key with no words of its own reads as a heading
    ("Signed by", not "signed_by")."""
    show = get_template_attribute("_values.html", "show")
    labels = formatting.labels()  # cached: extended in a copy, never in place
    headings = {key: key.replace("_", " ").capitalize() for key in _keys(value) if isinstance(key, str)}
    labels = {**labels, "parts": {**headings, **labels.get("parts", {})}}
    return Markup(show(value, labels, VOCABULARY_OF.get(name, name)))


def _words(field: str, codes) -> str:
    vocabulary = formatting.labels().get(field, {})
    return ", ".join(vocabulary.get(code, str(code).replace("_", " ")) for code in codes or ())


def _joined(*parts: str | None) -> str:
    return ", ".join(part for part in parts if part)


def location_text(record: Mapping[str, Any]) -> str:
    """'12 Main Street, Suite 4, Charlottesville, VA 22902 (Albemarle County), phone +1 434-296-1234'."""
    text = _joined(record.get("street1"), record.get("street2"), record.get("city"),
                   " ".join(p for p in (record.get("state"), record.get("zip")) if p))
    if record.get("county"):
        text += f" ({record['county']} County)"
    return _joined(text, f"phone {record['phone']}" if record.get("phone") else None)


def licence_text(record: Mapping[str, Any]) -> str:
    """'VA licence LIC-778 (Outpatient substance use), expires 27 Sep 2027, issued by DBHDS, covering ...'."""
    text = f"{record.get('state') or ''} licence {record.get('number') or '(no number)'}".strip()
    if record.get("licence_type"):
        text += f" ({record['licence_type']})"
    expires = f"expires {formatting.day(record['expires_on'])}" if record.get("expires_on") else "no expiry recorded"
    levels = _words("levels_of_care", record.get("levels_of_care"))
    return _joined(text, expires, f"issued by {record['issuing_agency']}" if record.get("issuing_agency") else None,
                   f"covering {levels}" if levels else None)


def accreditation_text(record: Mapping[str, Any]) -> str:
    """'CARF accreditation CARF-55, expires 19 Jun 2027'."""
    text = f"{record.get('body') or 'Unnamed body'} accreditation"
    if record.get("accreditation_id"):
        text += f" {record['accreditation_id']}"
    return _joined(text, f"expires {formatting.day(record['expires_on'])}" if record.get("expires_on")
                   else "no expiry recorded")


def principal_text(record: Mapping[str, Any]) -> str:
    """'Dr. Ada Byron (Medical director), NPI 1245319599'."""
    role = record.get("role")
    role = getattr(role, "value", role)
    text = record.get("name") or "Unnamed"
    if role:
        text += f" ({_words('role', [role])})"
    return _joined(text, f"NPI {record['npi']}" if record.get("npi") else None)


#: One line of text for each kind of part of a provider's listing, by the field that holds them.
PART_TEXT: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "locations": location_text, "licences": licence_text, "accreditations": accreditation_text,
    "principals": principal_text,
}


def part_lines(name: str, records) -> list:
    """The records a listing field holds (its rows or a request's JSON) as lines of text; other values as given."""
    text = PART_TEXT.get(name)
    if text is None or not isinstance(records, (list, tuple)):
        return records
    return [text(record) if isinstance(record, Mapping) else record for record in records]


# The attributes a row is known by, in order, for a row with no `__str__` of its own.
NAMED_BY = ("public_name", "name", "title", "file_name", "code")


def describe(model) -> str | dict:
    """A related row by what a person knows it by: a name, one line of labelled text, or a record."""
    if isinstance(model, Account):
        return f"{model.name} <{model.email}>"
    for name, (cls, fields) in profile.CHILDREN.items():
        if isinstance(model, cls):
            return PART_TEXT[name](audit.snapshot(model, fields))
    if type(model).__str__ is not object.__str__:
        return str(model)
    for attribute in NAMED_BY:
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    # "Exclusion source #3", never the class's own spelling.
    words = re.sub(r"(?<!^)(?=[A-Z])", " ", type(model).__name__).capitalize()
    return f"{words} #{getattr(model, 'id', '?')}"


def none_cell(view, value, name):
    return DASH


def bool_cell(view, value, name):
    return "yes" if value else "no"


def moment_cell(view, value, name):
    return formatting.when(value)


def day_cell(view, value, name):
    return formatting.day(value)


def enum_cell(view, value, name):
    return escape(value.label) if hasattr(value, "label") else escape(str(value.value).replace("_", " "))


def model_cell(view, value, name):
    described = describe(value)
    return _show(described, name) if isinstance(described, dict) else escape(described)


def list_cell(view, values, name):
    items = part_lines(name, [describe(v) if isinstance(v, Base) else v for v in values])
    if not items:
        return DASH
    return _show(items, name)


def json_cell(view, value, name):
    """A JSON value; a proposed listing's locations, licences, accreditations and principals as lines."""
    if isinstance(value, Mapping):
        value = {key: part_lines(key, item) for key, item in value.items()}
    return _show(value, name) if value else DASH


# Order matters: the first matching type wins, bool before int, datetime before date (a datetime is a date).
TYPE_FORMATTERS = {
    type(None): none_cell,
    bool: bool_cell,
    datetime: moment_cell,
    date: day_cell,
    Enum: enum_cell,
    Base: model_cell,
    list: list_cell,
    tuple: list_cell,
    dict: json_cell,
}
