"""Readable cells for every Flask-Admin list and details page: the type formatters of the secured base view.

Nothing reaches a page as Python's own spelling: no `None`, no `<... object at 0x...>`, no enum codes, no
ISO timestamps. Moments and days use backoffice.formatting; JSON values, lists of codes and a provider's
locations, licences, accreditations and principals go through the same `_values.html` macro the case page
uses, so a code reads the same in words everywhere.
"""
from __future__ import annotations

from datetime import date, datetime
from enum import Enum

from flask import get_template_attribute
from markupsafe import Markup, escape

from backoffice import formatting
from backoffice.models import Account, Base
from backoffice.services import audit, profile

# Column names whose values are codes of another field's vocabulary.
VOCABULARY_OF = {"applies_to_levels": "levels_of_care"}
DASH = Markup('<span class="text-muted">—</span>')


def _show(value, name: str) -> Markup:
    show = get_template_attribute("_values.html", "show")
    return Markup(show(value, formatting.labels(), VOCABULARY_OF.get(name, name)))


def describe(model) -> str | dict:
    """A related row by what a person knows it by: a name, or its parts as a record of labelled values."""
    if isinstance(model, Account):
        return f"{model.name} <{model.email}>"
    for cls, fields in profile.CHILDREN.values():
        if isinstance(model, cls):
            return audit.snapshot(model, fields)
    if type(model).__str__ is not object.__str__:
        return str(model)
    return f"{type(model).__name__} #{getattr(model, 'id', '?')}"


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
    items = [describe(v) if isinstance(v, Base) else v for v in values]
    if not items:
        return DASH
    return _show(items, name)


def json_cell(view, value, name):
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
