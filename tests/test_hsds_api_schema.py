"""The HSDS API answers as /hsds/openapi.json says, for inputs Schemathesis draws from that document.

The document `$ref`s the HSDS schemas at their published addresses; here they are bundled from the shipped
files into its components (each `https://raw.githubusercontent.com/.../schema/x.json` and each relative
`x.json` becomes `#/components/schemas/hsds_x`), so nothing is fetched. Bounded and derandomised like the feed's.
"""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from backoffice import create_app
from backoffice.api.hsds_profile import HSDS_SCHEMA
from backoffice.models import AdvertisingStatus, ListingStatus, VerificationStatus, utcnow
from tests.hsds_schemas import SHIPPED
from tests.test_api_schema import CHECKS

EXAMPLES = 15


def _name(ref: str) -> str:
    path = ref.removeprefix(HSDS_SCHEMA).removesuffix(".json").replace("/", "_")
    return "hsds_" + {"compiled_service": "service", "compiled_organization": "organization"}.get(path, path)


def _rewrite(node: Any, folder: str) -> Any:
    if isinstance(node, dict):
        out = {key: _rewrite(value, folder) for key, value in node.items()}
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            absolute = ref if ref.startswith("https://") else HSDS_SCHEMA + folder + ref
            out["$ref"] = "#/components/schemas/" + _name(absolute)
        return out
    if isinstance(node, list):
        return [_rewrite(value, folder) for value in node]
    return node


def bundled(document: dict) -> dict:
    doc = _rewrite(document, "")
    for path in sorted(SHIPPED.rglob("*.json")):
        relative = path.relative_to(SHIPPED).as_posix()
        if relative == "openapi.json":
            continue
        folder = relative.rpartition("/")[0] + "/" if "/" in relative else ""
        schema = _rewrite(json.loads(path.read_text(encoding="utf-8")), folder)
        doc["components"]["schemas"][_name(HSDS_SCHEMA + relative)] = schema
    return doc


_app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": "sqlite://", "WTF_CSRF_ENABLED": False})
with _app.test_client() as _client:
    _document = bundled(_client.get("/hsds/openapi.json").get_json())
schema = schemathesis.openapi.from_dict(_document)
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True)


@pytest.fixture
def hsds_data(app, session, make_provider) -> None:
    now = utcnow()
    verified = dict(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                    verified_at=now - timedelta(days=20), verified_until=now + timedelta(days=300))
    app.config["API_RATE_LIMIT"] = "100000 per minute"
    for n, (levels, services) in enumerate([(["otp", "outpatient"], ["moud", "naloxone"]),
                                            (["residential"], ["fentanyl_test_strips"]),
                                            (["iop"], ["syringe_services"])]):
        make_provider(levels_of_care=levels, services=services, populations=["adults"], payment_accepted=["medicaid"],
                      phone="+1 434-296-1234", npi="1234567893",
                      advertising_status=AdvertisingStatus.ACTIVE if n % 2 else AdvertisingStatus.NONE, **verified)
    make_provider(listing_status=ListingStatus.SUSPENDED)
    session.commit()


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_hsds_api_answers_as_its_openapi_document_says(case, app, hsds_data):
    case.call_and_validate(checks=CHECKS, app=app)
