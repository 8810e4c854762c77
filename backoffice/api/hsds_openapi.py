"""The HSDS 3.0 OpenAPI document (data/hsds-3.0/schema/openapi.json) filled in with our details.

Filled in: title, version, contact, licence, the server, the profile; the limits of our parameters (page and
per_page ranges, format json only, booleans, ids as our UUIDs); our JSON errors (400, 404, 429). Corrected:
`/service_at_locations/{id}` answers a service_at_location (the published document names the service schema).
Left out: `proximity`, which this API does not offer.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from backoffice.api.hsds_profile import HSDS_SCHEMA, PROFILE_VERSION
from backoffice.services import hsds_ids as ids
from backoffice.services.hsds import MAX_PAGE, MAX_PER_PAGE
from backoffice.services.hsds_ids import ANY_UUID

SHIPPED = Path(__file__).resolve().parent.parent.parent / "data" / "hsds-3.0" / "schema" / "openapi.json"

ERROR = {
    "type": "object", "additionalProperties": False, "required": ["error"],
    "properties": {"error": {
        "type": "object", "additionalProperties": False, "required": ["status", "message"],
        "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}},
}
PARAMETER_SCHEMAS = {
    "page": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    "per_page": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 50},
    "format": {"type": "string", "enum": ["json"]},
    "search": {"type": "string", "minLength": 1, "maxLength": 200,
               "pattern": r"^[^\u0000-\u001f\u007f]*[^\s\u0000-\u001f\u007f][^\u0000-\u001f\u007f]*$"},
    "modified_after": {"type": "string", "format": "date-time"},
    "postcode": {"type": "string", "pattern": r"^[0-9]{5}$"},
    "taxonomy_term_id": {"type": "string", "format": "uuid",
                         "enum": [ids.taxonomy_term(ids.Term(t, code)) for t in ids.TAXONOMIES for code in t.terms]},
    "taxonomy_id": {"type": "string", "format": "uuid", "enum": [ids.taxonomy(t) for t in ids.TAXONOMIES]},
    "organization_id": {"type": "string", "format": "uuid", "pattern": ids.ORGANIZATION_PATTERN},
    "parent_id": {"type": "string", "format": "uuid", "pattern": ANY_UUID.pattern},
}


@lru_cache(maxsize=1)
def shipped() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(server_url: str, profile_url: str, contact_url: str) -> dict[str, Any]:
    doc = copy.deepcopy(shipped())
    doc["info"] = {
        "title": "Treatment provider directory: verified listings as HSDS 3.0",
        "version": PROFILE_VERSION,
        "summary": "Listed, currently verified treatment providers in Open Referral HSDS 3.0, with our profile.",
        "description": "Listing is free; advertisers are verified first, always marked (the profile's `advertiser` "
                       f"field) and advertising never changes the order. Profile: {profile_url}",
        "contact": {"name": "Directory research team", "url": contact_url},
        "license": {"name": "CC BY-SA 4.0 (HSDS and this description)",
                    "url": "https://creativecommons.org/licenses/by-sa/4.0/"},
    }
    doc["servers"] = [{"url": server_url.rstrip("/")}]
    doc["x-hsds-profile"] = profile_url
    components = doc["components"]
    components["schemas"]["Error"] = ERROR
    components["parameters"].pop("proximity", None)
    for name, parameter in components["parameters"].items():
        if name in PARAMETER_SCHEMAS:
            parameter["schema"] = PARAMETER_SCHEMAS[name]
    for path, item in doc["paths"].items():
        for parameter in item.get("parameters", []):
            if parameter.get("in") == "path":
                pattern = ids.ORGANIZATION_PATTERN if path.startswith("/organizations/") else ids.CANONICAL.pattern
                parameter["schema"] = {"type": "string", "format": "uuid", "pattern": pattern}
        operation = item["get"]
        operation["parameters"] = [p for p in operation.get("parameters", [])
                                   if p.get("$ref") != "#/components/parameters/proximity"]
        for parameter in operation["parameters"]:
            if parameter.get("name") == "parent_id":
                parameter["schema"] = PARAMETER_SCHEMAS["parent_id"]
        responses = operation["responses"]
        responses["400"] = _error("A parameter this API cannot use; the message names it")
        if "{id}" in path:
            responses["404"] = _error("No published record has this id")
        responses["429"] = _error("Too many requests")
    sal = doc["paths"]["/service_at_locations/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
    sal["schema"] = {"$ref": HSDS_SCHEMA + "service_at_location.json"}
    return doc
