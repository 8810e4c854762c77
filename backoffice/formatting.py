"""How the staff pages write what a person reads: one format for every moment and day, words for roles,
the re-check status as it truly stands. Registered as Jinja filters by register(); Flask-Admin's columns use
the same functions (backoffice/admin/columns.py)."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from functools import cache
from typing import Iterable, Mapping

from flask import Flask, g
from sqlalchemy import Enum as EnumType

from backoffice.extensions import db
from backoffice.models import Base
from backoffice.services import accounts, profile

# ISO 8601 text as JSON values carry moments ("2026-12-01T09:23:45.123456+00:00") and days ("2026-12-01").
_ISO_MOMENT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parsed(value):
    """A datetime or date from a value that is one, or ISO text of one; anything else as it was."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if _ISO_MOMENT.match(text):
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            if _ISO_DAY.match(text):
                return date.fromisoformat(text)
        except ValueError:
            return value
    return value


def day(value) -> str:
    """A day as '1 Dec 2026' (a moment gives its UTC day); nothing gives ''."""
    value = _parsed(value)
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        value = _utc(value)
    if isinstance(value, date):
        return f"{value.day} {value:%b %Y}"
    return str(value)


def when(value, seconds: bool = False) -> str:
    """A moment as '1 Dec 2026, 09:23 UTC' (with seconds on request, never microseconds); a day as
    '1 Dec 2026'; nothing gives ''."""
    value = _parsed(value)
    if isinstance(value, datetime):
        value = _utc(value)
        return f"{value.day} {value:%b %Y}, {value.strftime('%H:%M:%S' if seconds else '%H:%M')} UTC"
    return day(value)


def _utc(value: datetime) -> datetime:
    # Naive moments only come from SQLite, which stores UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def is_moment(value) -> bool:
    """True for a datetime, a date, or ISO text of one (a JSON value that is a time)."""
    return isinstance(value, (datetime, date)) or (
        isinstance(value, str) and bool(_ISO_MOMENT.match(value.strip()) or _ISO_DAY.match(value.strip())))


def role_label(role) -> str:
    """A role in words: research_lead -> 'research lead'."""
    value = getattr(role, "value", role)
    return str(value).replace("_", " ")


def roles_text(roles) -> str:
    return ", ".join(sorted(role_label(r) for r in roles))


@cache
def labels() -> dict[str, dict[str, str]]:
    """Words for every code a staff page may show, by the name of the field it stands in: the listing
    vocabularies (profile.value_labels) and every enum column of the models (a state, a kind, an outcome)."""
    words: dict[str, dict[str, str]] = {}
    for mapper in Base.registry.mappers:
        for column in mapper.columns:
            enum_class = getattr(column.type, "enum_class", None) if isinstance(column.type, EnumType) else None
            if enum_class is not None:
                words.setdefault(column.key, {}).update({m.value: m.label for m in enum_class})
    for field, vocabulary in profile.value_labels().items():
        words[field] = {**words.get(field, {}), **vocabulary}
    return words


def know_actors(actor_labels: Iterable[str | None]) -> None:
    """Look up the people behind many actor labels at once (a page of the audit log) for `actor` below."""
    known = g.setdefault("actor_names", {})
    wanted = {label for label in actor_labels if label} - known.keys()
    if wanted:
        known.update(accounts.actor_names(db.session, wanted))


def actor(label: str | None) -> str:
    """An actor as staff read it: `user:6` becomes the person's name and e-mail (accounts.actor_names); system
    jobs keep their name. The audit record keeps the label; this is only how a staff page writes it."""
    if not label:
        return ""
    know_actors([label])
    return g.actor_names[label]


def recheck_status(last_rechecked_at: datetime | None, latest_runs: Mapping) -> str:
    """When the provider was last re-checked, as it truly stands: the last complete re-check window, and the
    newest single check run with its outcome (so a window that never completed is not read as 'never checked')."""
    runs = [run for run in latest_runs.values() if run is not None]
    newest = max(runs, key=lambda run: (run.started_at, run.id)) if runs else None
    latest = f"latest check: {newest.check.label}, {newest.outcome.label}, {when(newest.started_at)}" if newest else ""
    if last_rechecked_at is not None:
        return f"{when(last_rechecked_at)}" + (f" ({latest})" if latest else "")
    if newest is not None:
        return f"never completed; {latest}"
    return "never"


def verification(provider) -> str:
    """The verification in force in words: 'verified until 1 Dec 2026', 'expired on 1 Dec 2026', 'revoked'."""
    status, until = provider.verification_now, provider.verified_until
    if until is not None and status.value == "verified":
        return f"verified until {day(until)}"
    if until is not None and status.value == "expired" and until <= datetime.now(timezone.utc):
        return f"expired on {day(until)}"
    return status.label


def register(app: Flask) -> None:
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["day"] = day
    app.jinja_env.filters["role_label"] = role_label
    app.jinja_env.filters["roles_text"] = roles_text
    app.jinja_env.filters["actor"] = actor
    app.jinja_env.filters["verification"] = verification
    app.jinja_env.globals["code_labels"] = labels
    app.jinja_env.tests["moment"] = is_moment
