"""A provider's listing profile as one dict: what a submission proposes and what approval applies."""
from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from backoffice.models import Accreditation, Licence, Location, Principal, PrincipalRole, Provider
from backoffice.services import audit
from backoffice.services import listing_rules as rules

SCALAR_FIELDS = ("legal_name", "public_name", "npi", "website", "phone", "email")
REQUIRED_SCALARS = ("legal_name", "public_name")
LIST_FIELDS = ("levels_of_care", "services", "populations", "payment_accepted")
CHILDREN = {
    "locations": (Location, ("street1", "street2", "city", "state", "zip", "county", "latitude", "longitude", "phone")),
    "licences": (Licence, ("state", "number", "licence_type", "issuing_agency", "levels_of_care", "expires_on")),
    "accreditations": (Accreditation, ("body", "accreditation_id", "expires_on")),
    "principals": (Principal, ("name", "role", "npi")),
}
PROFILE_FIELDS = SCALAR_FIELDS + LIST_FIELDS + tuple(CHILDREN)

LABELS = {
    "legal_name": "Legal name", "public_name": "Public name", "npi": "NPI", "website": "Website",
    "phone": "Phone", "email": "E-mail", "levels_of_care": "Levels of care", "services": "Services",
    "populations": "Populations served", "payment_accepted": "Payment accepted", "locations": "Locations",
    "licences": "Licences", "accreditations": "Accreditations", "principals": "Principals",
}


# The parts of a location, licence, accreditation or principal, as a page names them.
PART_LABELS = {
    "street1": "Street", "street2": "Street (line 2)", "city": "City", "state": "State", "zip": "ZIP code",
    "county": "County", "latitude": "Latitude", "longitude": "Longitude", "phone": "Phone", "number": "Number",
    "licence_type": "Type", "issuing_agency": "Issued by", "levels_of_care": "Levels of care",
    "expires_on": "Expires on", "body": "Body", "accreditation_id": "Accreditation id", "name": "Name",
    "role": "Role", "npi": "NPI",
}


def value_labels() -> dict[str, dict[str, str]]:
    """Words for the codes a profile holds, by the field they stand in, and words for the fields and parts."""
    return {"levels_of_care": rules.LEVELS_OF_CARE, "services": rules.SERVICES, "populations": rules.POPULATIONS,
            "payment_accepted": rules.PAYMENT_ACCEPTED,
            "role": rules.PRINCIPAL_ROLES,
            "fields": LABELS, "parts": PART_LABELS}


def current(provider: Provider) -> dict[str, Any]:
    """The provider's listing as it stands, in the shape a submission proposes."""
    profile: dict[str, Any] = {name: getattr(provider, name) for name in SCALAR_FIELDS}
    profile.update({name: list(getattr(provider, name) or []) for name in LIST_FIELDS})
    for name, (_, fields) in CHILDREN.items():
        profile[name] = [audit.snapshot(child, fields) for child in getattr(provider, name)]
    return audit.jsonable(profile)


def diff(provider: Provider, proposed: dict[str, Any]) -> list[dict[str, Any]]:
    """Field by field: the current value, the proposed one, and whether they differ."""
    now = current(provider)
    rows = []
    for name in PROFILE_FIELDS:
        if name not in proposed:
            continue
        rows.append({"field": name, "label": LABELS[name], "current": now.get(name),
                     "proposed": proposed[name], "changed": now.get(name) != proposed[name]})
    return rows


def _child(model, fields, values: dict):
    kwargs = {name: values.get(name) for name in fields}
    if "expires_on" in kwargs and isinstance(kwargs["expires_on"], str):
        kwargs["expires_on"] = date.fromisoformat(kwargs["expires_on"])
    if model is Principal:
        kwargs["role"] = PrincipalRole(kwargs["role"])
    if "levels_of_care" in kwargs and kwargs["levels_of_care"] is None:
        kwargs["levels_of_care"] = []
    return model(**kwargs)


def apply(session: Session, actor: audit.Actor, provider: Provider, proposed: dict[str, Any], reason: str) -> None:
    """Make the proposed profile the provider's listing; only fields present in `proposed` change."""
    before = current(provider)
    for name in SCALAR_FIELDS:
        if name in proposed:
            value = proposed[name]
            setattr(provider, name, value if name in REQUIRED_SCALARS else (value or None))
    for name in LIST_FIELDS:
        if name in proposed:
            setattr(provider, name, list(proposed[name] or []))
    for name, (model, fields) in CHILDREN.items():
        if name in proposed:
            setattr(provider, name, [_child(model, fields, item) for item in proposed[name] or []])
    session.flush()
    old, new = audit.changed(before, current(provider))
    if old or new:
        audit.record(session, actor, "provider.profile_applied", "provider", provider.id,
                     before=old, after=new, reason=reason, provider_id=provider.id)
