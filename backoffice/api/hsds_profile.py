"""Our HSDS profile: the verification and advertiser fields HSDS 3.0 does not have, as JSON Schema changes.

Each profile schema extends the HSDS 3.0 schema of the same name (allOf its published `$ref`), adds
`verification` and `advertiser` and makes them required, so a consumer validates a record against base HSDS and
the profile at once. The files are served at /hsds/profile/schema/<name>.json; their `$id`s are those addresses.
"""
from __future__ import annotations

from typing import Any

from backoffice.services.listings import ADVERTISER_DISCLOSURE

HSDS_SCHEMA = "https://raw.githubusercontent.com/openreferral/specification/3.0/schema/"
PROFILE_VERSION = "1.0"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}


def _extends(base: str, title: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "title": title,
        "allOf": [{"$ref": HSDS_SCHEMA + base}],
        "type": "object",
        "required": ["verification", "advertiser"],
        "properties": {"verification": {"$ref": "verification.json"}, "advertiser": {"$ref": "advertiser.json"},
                       **(extra or {})},
    }


def schemas() -> dict[str, dict[str, Any]]:
    """The profile's schema files by name, without their `$id` (see `schema`)."""
    return {
        "verification.json": {
            "title": "Verification by the directory's research team",
            "description": "Only currently verified providers are published; the receipt names the decision.",
            "type": "object", "additionalProperties": False,
            "required": ["status", "verified_at", "verified_until", "criteria_version", "receipt_url",
                         "last_rechecked_at"],
            "properties": {
                "status": {"type": "string", "enum": ["verified"]},
                "verified_at": _TIME_OR_NULL,
                "verified_until": _TIME,
                "criteria_version": {"type": ["integer", "null"],
                                     "description": "The version of the published listing criteria it met."},
                "receipt_url": {"type": "string", "format": "uri",
                                "description": "The verification receipt: which criteria were met, who decided."},
                "last_rechecked_at": _TIME_OR_NULL,
            },
        },
        "advertiser.json": {
            "title": "Advertiser mark",
            "description": "Every advertiser is marked and carries the disclosure; advertising never changes the "
                           "order of any list.",
            "type": "object", "additionalProperties": False,
            "required": ["is_advertiser"],
            "properties": {
                "is_advertiser": {"type": "boolean"},
                "disclosure": {"type": "string", "pattern": "^Advertiser: ", "minLength": 40,
                               "description": "The sentence shown beside the advertiser, as in the feed: who pays "
                                              "and, once approved, the advertisement it runs. For example: "
                                              + ADVERTISER_DISCLOSURE},
                "advertisement": {
                    "type": "object", "description": "The advertising copy the research team approved.",
                    "additionalProperties": False,
                    "required": ["headline", "text", "claims", "landing_url", "approved_at"],
                    "properties": {"headline": {"type": "string", "minLength": 1},
                                   "text": {"type": "string"},
                                   "claims": {"type": "array", "items": {"type": "string"}},
                                   "landing_url": {"type": "string", "format": "uri"},
                                   "approved_at": {"type": "string", "format": "date-time"}}},
            },
            "if": {"properties": {"is_advertiser": {"const": True}}},
            "then": {"required": ["disclosure"]},
            "else": {"not": {"anyOf": [{"required": ["disclosure"]}, {"required": ["advertisement"]}]}},
        },
        "organization_list.json": _extends("compiled/organization_list.json", "Organization (list item)"),
        "organization.json": _extends("organization.json", "Organization", {
            "services": {"type": "array", "items": {"$ref": "service_list.json"}}}),
        "service_list.json": _extends("compiled/service_list.json", "Service (list item)", {
            "organization": {"$ref": "organization_list.json"}}),
        "service.json": _extends("service.json", "Service", {
            "organization": {"$ref": "organization_list.json"}}),
        "service_at_location_list.json": {
            "title": "Service at location (list item)",
            "allOf": [{"$ref": HSDS_SCHEMA + "compiled/service_at_location_list.json"}],
            "type": "object", "required": ["service"],
            "properties": {"service": {"$ref": "service_list.json"}},
        },
        "service_at_location.json": {
            "title": "Service at location",
            "allOf": [{"$ref": HSDS_SCHEMA + "service_at_location.json"}],
            "type": "object", "required": ["service"],
            "properties": {"service": {"$ref": "service_list.json"}},
        },
    }


def schema(name: str, base: str) -> dict[str, Any] | None:
    """One profile schema file with its `$id` (`base` is the absolute address of /hsds/profile/schema/)."""
    found = schemas().get(name)
    return {"$schema": DRAFT, "$id": base + name, **found} if found is not None else None


def document(profile_url: str, schema_base: str, api_url: str) -> dict[str, Any]:
    """The profile document: what it adds to HSDS 3.0, and where its schema changes are."""
    return {
        "name": "Verified treatment listings",
        "uri": profile_url,
        "version": PROFILE_VERSION,
        "hsds_version": "3.0",
        "description": "HSDS 3.0 as published by a directory of addiction and mental-health treatment providers. "
                       "Every organization and service carries `verification` (the research team's verification "
                       "in force: when, until when, under which version of the criteria, its receipt, the last "
                       "re-check) and `advertiser` (whether the provider advertises, with the disclosure shown "
                       "on every advertiser). Only listed, currently verified providers are published, in the "
                       "order of their ids; advertising never changes it.",
        "api": api_url,
        "schema_changes": {name.removesuffix(".json"): schema_base + name for name in schemas()},
        "validation": "Validate a record against the HSDS 3.0 schema and the profile schema of the same name "
                      "(which extends it with allOf); the page wrapper is the HSDS OpenAPI `Page`.",
        "licence": "The profile's schemas are published under CC BY-SA 4.0, like HSDS itself.",
    }
