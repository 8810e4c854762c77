"""The OpenAPI 3.1 description of the listing feed; a test checks real responses against it."""
from __future__ import annotations

from backoffice.services import advertising_copy, rechecks, sources
from backoffice.services.listings import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT
from backoffice.vocab import LEVELS_OF_CARE, SERVICES, US_STATES, VOCABULARIES

_NULLABLE_STRING = {"type": ["string", "null"]}
# The media type of a compact JWS (RFC 7515, section 9.2.1): signed receipts and the status list.
JOSE = "application/jose"
_COMPACT_JWS = {"type": "string", "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                "description": "A compact JWS: EdDSA (Ed25519), its payload RFC 8785 canonical JSON, its header's "
                               "kid one of the keys at /.well-known/jwks.json."}


def _codes(vocabulary: dict[str, str]) -> dict:
    """A listing's coded list: distinct codes of one vocabulary, sorted; each code's label is described."""
    return {"type": "array", "uniqueItems": True,
            "items": {"type": "string", "enum": sorted(vocabulary)},
            "description": "; ".join(f"{code}: {label}" for code, label in sorted(vocabulary.items()))}
_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}

_DISCLOSURE = {"type": ["string", "null"], "minLength": 1,
               "description": "Shown beside every advertiser, null otherwise: who pays to advertise and, once the "
                              "research team has approved its advertisement, what that advertisement says and where "
                              "it links. Advertising never affects order or verification."}
_ADVERTISEMENT = {
    "type": ["object", "null"], "additionalProperties": False,
    "required": ["headline", "text", "claims", "landing_url", "approved_at"],
    "description": "The advertisement the research team approved, in force while the provider advertises; null for "
                   "a provider that does not advertise (or whose approval predates recorded advertisements).",
    "properties": {
        "headline": {"type": "string", "maxLength": advertising_copy.HEADLINE_MAX},
        "text": {"type": "string", "maxLength": advertising_copy.TEXT_MAX},
        "claims": {"type": "array", "maxItems": advertising_copy.CLAIMS_MAX,
                   "items": {"type": "string", "maxLength": advertising_copy.CLAIM_MAX},
                   "description": "The factual claims of the advertisement, each checked by the research team."},
        "landing_url": {"type": "string", "format": "uri", "maxLength": advertising_copy.URL_MAX,
                        "description": "A page on the provider's own website."},
        "approved_at": {"type": "string", "format": "date-time"},
    },
}

_FIELDS = {
    "type": "object", "additionalProperties": False, "required": list(sources.FIELDS),
    "description": "Per listed field, when a check last confirmed it and by which source (both null when no check "
                   "has confirmed it). A check that fails leaves the last confirmation as it was.",
    "properties": {name: {
        "type": "object", "additionalProperties": False, "required": ["confirmed_at", "source"],
        "properties": {"confirmed_at": _DATE_TIME, "source": _NULLABLE_STRING}} for name in sources.FIELDS},
}
_CHECKS = {
    "type": "array",
    "description": "The latest run of each automated check, the sources it rested on and their dates. A run against "
                   "a source older than its expected freshness is an error run that says 'Source stale', never a "
                   "pass.",
    "items": {
        "type": "object", "additionalProperties": False, "required": ["check", "outcome", "checked_at", "sources"],
        "properties": {
            "check": {"type": "string", "enum": [c.value for c in rechecks.NETWORK_CHECKS]},
            "outcome": {"type": "string", "enum": ["pass", "warn", "fail", "error"]},
            "checked_at": {"type": "string", "format": "date-time"},
            "sources": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["source", "as_of", "stale"],
                "properties": {"source": {"type": "string"},
                               "as_of": {**_DATE_TIME, "description": "When the source was last imported or "
                                                                      "answered (null: never)."},
                               "stale": {"type": "boolean"}}}},
        },
    },
}

SCHEMAS = {
    "Location": {
        "type": "object", "additionalProperties": False,
        "required": ["street1", "street2", "city", "state", "zip", "latitude", "longitude"],
        "properties": {
            "street1": {"type": "string"}, "street2": _NULLABLE_STRING, "city": {"type": "string"},
            "state": {"type": "string", "enum": sorted(US_STATES)},
            "zip": {"type": "string", "pattern": r"^\d{5}(-\d{4})?$"},
            "latitude": {"type": ["number", "null"]}, "longitude": {"type": ["number", "null"]},
        },
    },
    "Verification": {
        "type": "object", "additionalProperties": False,
        "required": ["status", "verified_at", "verified_until", "criteria_version", "last_rechecked_at", "fields"],
        "properties": {
            "status": {"type": "string", "enum": ["verified"]},
            "verified_at": _DATE_TIME, "verified_until": {"type": "string", "format": "date-time"},
            "criteria_version": {"type": ["integer", "null"]}, "last_rechecked_at": _DATE_TIME,
            "fields": _FIELDS,
        },
    },
    "Listing": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "public_name", "legal_name", "website", "phone", "locations", "levels_of_care",
                     "services", "populations", "payment_accepted", "verification", "advertiser",
                     "advertiser_disclosure", "advertisement"],
        "properties": {
            "id": {"type": "integer"}, "public_name": {"type": "string"}, "legal_name": {"type": "string"},
            "website": _NULLABLE_STRING, "phone": _NULLABLE_STRING,
            "locations": {"type": "array", "items": {"$ref": "#/components/schemas/Location"}},
            **{name: _codes(vocabulary) for name, vocabulary in VOCABULARIES.items()},
            "verification": {"$ref": "#/components/schemas/Verification"},
            "advertiser": {"type": "boolean", "description": "True for every provider that advertises."},
            "advertiser_disclosure": _DISCLOSURE,
            "advertisement": _ADVERTISEMENT,
        },
    },
    "ListingPage": {
        "type": "object", "additionalProperties": False, "required": ["listings", "next_cursor"],
        "properties": {
            "listings": {"type": "array", "items": {"$ref": "#/components/schemas/Listing"}},
            "next_cursor": {"type": ["string", "null"], "pattern": CURSOR_PATTERN},
            "next": {"type": "string", "description": "The next page's URL, when there is one."},
        },
    },
    "Receipt": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "public_name", "verification", "criteria", "checks", "advertiser",
                     "advertiser_disclosure", "advertisement"],
        "properties": {
            "id": {"type": "integer"}, "public_name": {"type": "string"},
            "verification": {
                "type": "object", "additionalProperties": False,
                "required": ["status", "verified_at", "verified_until", "criteria_version", "last_rechecked_at",
                             "decision_id", "decided_at", "decided_by", "second_signoff", "signed_off_by",
                             "fields"],
                "properties": {
                    "status": {"type": "string", "enum": ["verified"]}, "verified_at": _DATE_TIME,
                    "verified_until": {"type": "string", "format": "date-time"},
                    "criteria_version": {"type": ["integer", "null"]}, "last_rechecked_at": _DATE_TIME,
                    "decision_id": {"type": ["integer", "null"],
                                    "description": "The research decision that granted this verification."},
                    "decided_at": _DATE_TIME,
                    "decided_by": {"type": ["string", "null"], "description": "The researcher who decided."},
                    "second_signoff": {"type": "boolean"},
                    "signed_off_by": {"type": ["string", "null"],
                                      "description": "The second researcher who signed the decision off."},
                    "fields": _FIELDS,
                },
            },
            "checks": _CHECKS,
            "criteria": {"type": "array", "items": {
                "type": "object", "additionalProperties": False, "required": ["code", "title", "status"],
                "properties": {"code": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "string", "enum": ["met", "not_applicable"]}}}},
            "advertiser": {"type": "boolean"},
            "advertiser_disclosure": _DISCLOSURE,
            "advertisement": _ADVERTISEMENT,
        },
    },
    "Error": {
        "type": "object", "additionalProperties": False, "required": ["error"],
        "properties": {"error": {
            "type": "object", "additionalProperties": False, "required": ["status", "message"],
            "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}},
    },
}


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Treatment provider directory: verified listings",
            "version": "1",
            "description": "Listed, currently verified providers. Listing is free; advertisers are verified "
                           "first, always marked, and advertising never changes the order.",
        },
        "paths": {
            "/api/v1/listings": {"get": {
                "summary": "Listed, currently verified providers in a stable order (by id)",
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"type": "string", "enum": sorted(US_STATES)}},
                    {"name": "level_of_care", "in": "query",
                     "schema": {"type": "string", "enum": sorted(LEVELS_OF_CARE)}},
                    {"name": "service", "in": "query", "schema": {"type": "string", "enum": sorted(SERVICES)}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                     "description": "next_cursor from the previous page: where that page ended"},
                ],
                "responses": {
                    "200": {"description": "A page of listings", "headers": {"ETag": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ListingPage"}}}},
                    "304": {"description": "Not modified since the ETag given in If-None-Match"},
                    "400": _error("A parameter the feed cannot use"),
                    "429": _error("Too many requests"),
                },
            }},
            "/api/v1/listings/{id}/verification": {"get": {
                "summary": "The verification receipt of one listing, as JSON or signed",
                "description": "As JSON by default. Signed with `?format=jws` or `Accept: application/jose`: a "
                               "compact JWS (typ verification-receipt+jwt) whose payload carries iss "
                               "(PUBLIC_BASE_URL), sub (this URL), iat, exp (never later than verified_until), "
                               "jti (the receipt id, `decision-<id>` of the decision that granted the "
                               "verification), status (where the status list is and the id to look up in it) "
                               "and receipt (the JSON answer). Check it with backoffice/receiptverify.py or any "
                               "JOSE library that verifies EdDSA.",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                               {"name": "format", "in": "query", "schema": {"type": "string",
                                                                           "enum": ["json", "jws"]},
                                "description": "Overrides the Accept header."}],
                "responses": {
                    "200": {"description": "The receipt",
                            "headers": {"Vary": {"schema": {"type": "string"},
                                                 "description": "Names Accept: the two formats share one URL."}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Receipt"}},
                                        JOSE: {"schema": _COMPACT_JWS}}},
                    "304": {"description": "Not modified"},
                    "400": _error("A format this endpoint does not answer in"),
                    "404": _error("No listed, currently verified provider has this id (in both formats)"),
                    "429": _error("Too many requests"),
                },
            }},
            "/api/v1/receipts/status": {"get": {
                "summary": "The signed list of receipts that no longer hold",
                "description": "A compact JWS (typ receipt-status+jwt) whose payload has iss, iat, exp (an hour "
                               "on: fetch it again after), type RevokedReceiptList and `revoked`: every receipt "
                               "that may still be unexpired but no longer holds, each with its id, sub_id (the "
                               "listing's id), reason (revoked, suspended, lapsed or superseded: a later "
                               "decision's receipt holds now) and since (RFC 3339).",
                "responses": {
                    "200": {"description": "The status list", "content": {JOSE: {"schema": _COMPACT_JWS}}},
                    "429": _error("Too many requests"),
                },
            }},
            "/.well-known/jwks.json": {"get": {
                "summary": "The public keys that sign receipts and the status list",
                "description": "A JWK set of Ed25519 keys (kty OKP, crv Ed25519, kid the RFC 7638 thumbprint), the "
                               "current key first, retired keys after it with valid_from and valid_until: the "
                               "period each signed in.",
                "responses": {
                    "200": {"description": "The JWK set", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["keys"],
                        "properties": {"keys": {"type": "array", "items": {
                            "type": "object", "required": ["kty", "crv", "x", "kid", "alg", "use"],
                            "properties": {
                                "kty": {"const": "OKP"}, "crv": {"const": "Ed25519"}, "x": {"type": "string"},
                                "kid": {"type": "string"}, "alg": {"const": "EdDSA"}, "use": {"const": "sig"},
                                "valid_from": {"type": "string", "format": "date-time"},
                                "valid_until": {"type": "string", "format": "date-time"}}}}}}}}},
                },
            }},
        },
        "components": {"schemas": SCHEMAS},
    }
