"""The rules a proposed listing's values must follow, shared by the portal's forms and its services.

Each rule takes the raw value and returns it normalised, or raises ValueError with a message in plain
words that a form shows next to the field.
"""
from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from backoffice.models import PrincipalRole
from backoffice.vocab import (  # noqa: F401 -- forms and services read every vocabulary through the rules
    HARM_REDUCTION_SERVICES,
    LEVELS_OF_CARE,
    PAYMENT_ACCEPTED,
    POPULATIONS,
    SERVICES,
    US_STATES,
)

PRINCIPAL_ROLES = {role.value: role.label.capitalize() for role in PrincipalRole}

CORE_SERVICES = {code: label for code, label in SERVICES.items() if code not in HARM_REDUCTION_SERVICES}

_ZIP = re.compile(r"^(\d{5})(?:-?(\d{4}))?$")
_NPI = re.compile(r"^\d{10}$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def npi(value: str) -> str:
    """A 10-digit NPI whose check digit is right (Luhn over the number prefixed with 80840)."""
    text = re.sub(r"[\s-]", "", value or "")
    if not _NPI.match(text):
        raise ValueError("An NPI is exactly 10 digits.")
    if not luhn_ok("80840" + text):
        raise ValueError("This is not a valid NPI: its check digit does not match. Check for a typing mistake.")
    return text


def website(value: str) -> str:
    text = (value or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("Enter the full address of your website, starting with https:// or http://.")
    if parts.username or parts.password:
        raise ValueError("A website address must not contain a user name or password.")
    if any(ch.isspace() for ch in text) or len(text) > 500:
        raise ValueError("Enter a single website address of at most 500 characters, without spaces.")
    try:
        _ = parts.port  # parsed when read: a port that is not a number raises here
    except ValueError:
        raise ValueError("The website address has an invalid port.") from None
    return text


def phone(value: str) -> str:
    """A real, dialable number; stored in international format (US numbers need no +1)."""
    try:
        number = phonenumbers.parse(value or "", "US")
    except phonenumbers.NumberParseException:
        raise ValueError("Enter a phone number, for example (434) 296-1234.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("This is not a valid phone number. Check the area code and the number of digits.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def email(value: str) -> str:
    try:
        return validate_email((value or "").strip(), check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(f"Enter a valid e-mail address ({error}).") from None


def state(value: str) -> str:
    code = (value or "").strip().upper()
    if code not in US_STATES:
        raise ValueError("Choose a US state or territory by its two-letter code, for example VA.")
    return code


def zip_code(value: str) -> str:
    match = _ZIP.match((value or "").strip())
    if not match:
        raise ValueError("A ZIP code is 5 digits, or 9 digits written 12345-6789.")
    return match.group(1) + (f"-{match.group(2)}" if match.group(2) else "")


def future_date(value: date | str, today: date | None = None) -> str:
    """An expiry date after today, as ISO text (the shape a proposed listing stores)."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)
        except ValueError:
            raise ValueError("Enter the date as YYYY-MM-DD.") from None
    if value <= (today or date.today()):
        raise ValueError("This date has passed: a licence or accreditation must be current. "
                         "Upload the renewed one and enter its new expiry date.")
    return value.isoformat()


def latitude(value: float) -> float:
    if not -90 <= float(value) <= 90:
        raise ValueError("Latitude is between -90 and 90.")
    return float(value)


def longitude(value: float) -> float:
    if not -180 <= float(value) <= 180:
        raise ValueError("Longitude is between -180 and 180.")
    return float(value)


def choices(allowed: dict[str, str], kept: list[str] | tuple = ()) -> dict[str, str]:
    """The vocabulary plus values the current listing already holds (imported listings may use others)."""
    return {**allowed, **{value: value for value in kept if value not in allowed}}


def subset(values: list[str], allowed: dict[str, str], label: str) -> list[str]:
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"Unknown {label}: {', '.join(map(str, unknown))}.")
    return list(dict.fromkeys(values))


def levels(values: list[str]) -> list[str]:
    return subset(values, LEVELS_OF_CARE, "level of care")
