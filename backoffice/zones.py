"""Time zones and the one way a moment or a day is written for a person: "1 Dec 2026, 09:23 EST", "1 Dec 2026".

Moments are stored in UTC; they are shown in the reader's zone (backoffice/formatting.py picks it per request).
Text that is stored once and read by many (a finding's title, an outbox body) names days only, or writes a
moment in UTC with "UTC" after it, so it never reads as a bare time. Machine formats
(exports, the API, feeds, `datetime=` attributes) stay ISO 8601 UTC and never come through here.
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

DEFAULT_ZONE = "America/New_York"
UTC = ZoneInfo("UTC")

# The zones of the fifty states, DC and the territories, offered first in every zone chooser.
US_ZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "America/Adak", "Pacific/Honolulu", "America/Detroit", "America/Indiana/Indianapolis",
    "America/Kentucky/Louisville", "America/Boise", "America/Puerto_Rico", "America/St_Thomas",
    "Pacific/Guam", "Pacific/Saipan", "Pacific/Pago_Pago",
)


@cache
def known_zones() -> frozenset[str]:
    """Every IANA zone name the system's zone database holds (read once: it walks the database's files)."""
    return frozenset(available_timezones())


def zone_problem(name: object) -> str | None:
    """Why `name` is not a time zone this product can show dates in, or None when it is one."""
    if not isinstance(name, str) or not name.strip():
        return "Choose a time zone."
    if name not in known_zones():
        return f"{name!r} is not a time zone name of the IANA database (write one like America/New_York)."
    return None


def zone_choices() -> list[tuple[str, str]]:
    """(value, label) pairs for a zone chooser: the US zones first, then every zone the database knows, sorted."""
    us = [zone for zone in US_ZONES if zone in known_zones()]
    rest = sorted(known_zones() - set(us))
    return [(zone, zone.replace("_", " ")) for zone in us + rest]


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def zone_named(name: str | None, fallback: str | None = None) -> ZoneInfo:
    """The zone of that name; an empty or unknown one gives the fallback's (DISPLAY_TIME_ZONE, as the caller
    read it), else the default."""
    for candidate in (name, fallback):
        if candidate and candidate in known_zones():
            return _zone(candidate)
    return _zone(DEFAULT_ZONE)


def as_utc(value: datetime) -> datetime:
    # Naive moments only come from SQLite, which stores UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def day_text(value: date) -> str:
    """'1 Dec 2026': the day without a leading zero, the month short."""
    return f"{value.day} {value:%b %Y}"


def moment_text(value: datetime, zone: ZoneInfo, seconds: bool = False) -> str:
    """'1 Dec 2026, 09:23 EST' in `zone` (with ':05' seconds on request, never microseconds)."""
    local = as_utc(value).astimezone(zone)
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    return f"{day_text(local)}, {clock} {local.tzname()}"
