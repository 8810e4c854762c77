"""Validate /hsds/ responses against the shipped HSDS 3.0 schemas, and against base + our profile.

The HSDS files `$ref` one another by their published addresses (https://raw.githubusercontent.com/openreferral/
specification/3.0/schema/...); a `referencing` registry maps those addresses onto the files in data/hsds-3.0,
so nothing is fetched. The two compiled files the published OpenAPI names but the repository does not ship
(compiled/service.json and compiled/organization.json, inlined copies) resolve to the uncompiled schemas they
were compiled from. The profile's files are read from the app itself, at the addresses it publishes.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from backoffice.api.hsds_profile import HSDS_SCHEMA

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "hsds-3.0" / "schema"
OPENAPI_URI = "urn:backoffice:hsds-openapi"
PAGE_KEYS = ["total_items", "total_pages", "page_number", "size", "first_page", "last_page", "empty", "contents"]

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@FORMATS.checks("uri", raises=ValueError)
def _uri(value) -> bool:
    return not isinstance(value, str) or value.startswith(("http://", "https://"))


def _resource(contents: dict) -> Resource:
    return Resource.from_contents(contents, default_specification=DRAFT202012)


@lru_cache(maxsize=1)
def base_registry() -> Registry:
    resources = []
    for path in sorted(SHIPPED.rglob("*.json")):
        uri = HSDS_SCHEMA + path.relative_to(SHIPPED).as_posix()
        resources.append((uri, _resource(json.loads(path.read_text(encoding="utf-8")))))
    for name in ("service", "organization"):
        resources.append((f"{HSDS_SCHEMA}compiled/{name}.json", _resource({"$ref": f"{HSDS_SCHEMA}{name}.json"})))
    return Registry().with_resources(resources)


def registry(client) -> Registry:
    """The shipped HSDS files, the app's filled-in OpenAPI document and the profile's schema files."""
    resources = [(OPENAPI_URI, _resource(client.get("/hsds/openapi.json").get_json()))]
    profile = client.get("/hsds/profile/").get_json()
    for url in profile["schema_changes"].values():
        document = client.get(url).get_json()
        assert document["$id"] == url
        resources.append((url, _resource(document)))
    return base_registry().with_resources(resources)


def _pointer(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def response_schema(path: str) -> dict:
    """The 200 response schema the OpenAPI document gives an HSDS path."""
    return {"$ref": f"{OPENAPI_URI}#/paths/{_pointer(path)}/get/responses/200/content/application~1json/schema"}


def _validate(payload, schema: dict, registry_: Registry) -> None:
    jsonschema.Draft202012Validator(schema, registry=registry_, format_checker=FORMATS).validate(payload)


def validate(client, path: str, payload, profile_item: str | None = None) -> None:
    """Valid against the HSDS OpenAPI response of `path`, then (for records of the profile) base + profile:
    a page's contents each against the profile's `profile_item` schema, a single record against it too."""
    registry_ = registry(client)
    _validate(payload, response_schema(path), registry_)
    if path.endswith("{id}") or path == "/":
        item_schema = None
    else:
        assert sorted(payload) == sorted(PAGE_KEYS), list(payload)
        item_schema = profile_item
    if profile_item is None:
        return
    profile_base = client.get("/hsds/profile/").get_json()["schema_changes"][profile_item]
    if item_schema is None:
        _validate(payload, {"$ref": profile_base}, registry_)
    else:
        _validate(payload, {"type": "object", "properties": {"contents": {"type": "array", "items": {
            "$ref": profile_base}}}}, registry_)


def validate_error(client, payload) -> None:
    _validate(payload, {"$ref": f"{OPENAPI_URI}#/components/schemas/Error"}, registry(client))
