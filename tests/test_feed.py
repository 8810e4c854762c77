"""The public listing feed: only verified listings leave, advertisers are always marked, order ignores advertising."""
from __future__ import annotations

import re
from datetime import timedelta

import jsonschema
import pytest

from backoffice.api.openapi import document
from backoffice.models import AdvertisingStatus, ListingStatus, VerificationStatus, utcnow
from backoffice.services import listings


def listed(make_provider, **fields):
    now = utcnow()
    defaults = dict(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                    verified_at=now - timedelta(days=10), verified_until=now + timedelta(days=300))
    return make_provider(**{**defaults, **fields})


def schema_for(name: str) -> dict:
    doc = document()
    return {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}


def validate(payload, name):
    jsonschema.validate(payload, schema_for(name), cls=jsonschema.Draft202012Validator)


def ids(response) -> list[int]:
    return [item["id"] for item in response.get_json()["listings"]]


def test_only_listed_and_currently_verified_providers_leave(client, make_provider):
    now = utcnow()
    shown = listed(make_provider)
    listed(make_provider, verified_until=now - timedelta(hours=1))                  # lapsed, sweep not run yet
    listed(make_provider, listing_status=ListingStatus.SUSPENDED)
    listed(make_provider, listing_status=ListingStatus.DELISTED, verification_status=VerificationStatus.REVOKED)
    make_provider()                                                                   # never verified
    listed(make_provider, verification_status=VerificationStatus.EXPIRED)
    response = client.get("/api/v1/listings")
    assert response.status_code == 200
    assert ids(response) == [shown.id]
    validate(response.get_json(), "ListingPage")


def test_every_advertiser_is_marked_and_others_are_not(client, make_provider):
    advertiser = listed(make_provider, advertising_status=AdvertisingStatus.ACTIVE)
    suspended = listed(make_provider, advertising_status=AdvertisingStatus.SUSPENDED)
    plain = listed(make_provider)
    items = {item["id"]: item for item in client.get("/api/v1/listings").get_json()["listings"]}
    assert items[advertiser.id]["advertiser"] is True
    # No approved copy recorded (an advertiser approved before copy was): marked, its advertisement null.
    assert items[advertiser.id]["advertiser_disclosure"] == listings.ADVERTISER_DISCLOSURE
    assert items[advertiser.id]["advertisement"] is None
    for other in (suspended, plain):
        assert items[other.id]["advertiser"] is False and items[other.id]["advertiser_disclosure"] is None
        assert items[other.id]["advertisement"] is None


def test_order_does_not_depend_on_advertising(client, session, make_provider):
    providers = [listed(make_provider) for _ in range(6)]
    before = ids(client.get("/api/v1/listings"))
    for p in providers[::2]:
        p.advertising_status = AdvertisingStatus.ACTIVE
    session.commit()
    assert ids(client.get("/api/v1/listings")) == before == sorted(before)


def test_filters_by_state_level_of_care_and_harm_reduction_service(client, session, make_provider):
    texas = listed(make_provider, levels_of_care=["otp", "outpatient"], services=["moud", "naloxone"])
    texas.locations[0].state = "TX"
    virginia = listed(make_provider, levels_of_care=["residential"], services=["fentanyl_test_strips"])
    session.commit()
    assert ids(client.get("/api/v1/listings?state=TX")) == [texas.id]
    assert ids(client.get("/api/v1/listings?state=va")) == [virginia.id]
    assert ids(client.get("/api/v1/listings?level_of_care=otp")) == [texas.id]
    assert ids(client.get("/api/v1/listings?service=naloxone")) == [texas.id]
    assert ids(client.get("/api/v1/listings?service=fentanyl_test_strips&state=VA")) == [virginia.id]
    assert ids(client.get("/api/v1/listings?service=syringe_services")) == []


def test_paging_neither_skips_nor_repeats_while_listings_change(client, session, make_provider):
    providers = [listed(make_provider) for _ in range(7)]
    first = client.get("/api/v1/listings?limit=3").get_json()
    # Between pages: one already-shown listing is suspended, one not yet shown is revoked, one is added.
    providers[0].listing_status = ListingStatus.SUSPENDED
    providers[5].verification_status = VerificationStatus.REVOKED
    providers[5].listing_status = ListingStatus.DELISTED
    added = listed(make_provider)
    session.commit()
    seen = [item["id"] for item in first["listings"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"/api/v1/listings?limit=3&cursor={cursor}").get_json()
        seen += [item["id"] for item in page["listings"]]
        cursor = page["next_cursor"]
    survivors = [p.id for p in providers if p not in (providers[0], providers[5])]
    assert len(seen) == len(set(seen))
    assert set(survivors) <= set(seen) and added.id in seen and providers[5].id not in seen


@pytest.mark.parametrize("query, message", [
    ("cursor=not-a-cursor", "cursor is not one this feed gave out"),
    ("cursor=djE6YWJj", "cursor is not one this feed gave out"),
    ("state=XX", "state 'XX' is not a US state"),
    ("level_of_care=spa", "level_of_care 'spa' is not one of"),
    ("service=<script>", "service '<script>' is not one of"),
    ("limit=0", "limit must be a whole number from 1 to 100"),
    ("limit=abc", "limit must be a whole number"),
    ("sort=advertisers_first", "unknown parameter(s) sort"),
])
def test_bad_parameters_get_a_400_with_a_message(client, query, message):
    response = client.get(f"/api/v1/listings?{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert message in body["error"]["message"]
    validate(body, "Error")


def test_empty_parameters_are_refused_naming_each(client):
    response = client.get("/api/v1/listings?state=&level_of_care=&service=&limit=&cursor=")
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert "state '' is not a US state or territory code" in message
    assert "level_of_care '' is not one of detox," in message
    assert "service '' is not one of alcohol_use_disorder_medication," in message
    assert "limit must be a whole number from 1 to 100" in message
    assert "cursor is not one this feed gave out" in message
    validate(response.get_json(), "Error")


def test_a_cursor_past_every_id_is_an_empty_last_page(client, make_provider):
    listed(make_provider)
    response = client.get("/api/v1/listings?cursor=v1.9999999999")
    assert response.status_code == 200
    assert response.get_json() == {"listings": [], "next_cursor": None}


def test_etag_and_if_none_match(client, session, make_provider):
    provider = listed(make_provider)
    first = client.get("/api/v1/listings")
    etag = first.headers["ETag"]
    assert client.get("/api/v1/listings", headers={"If-None-Match": etag}).status_code == 304
    provider.advertising_status = AdvertisingStatus.ACTIVE
    session.commit()
    changed = client.get("/api/v1/listings", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_receipt_names_the_criteria_met_and_the_catalogue_version(client, session, make_account, make_provider):
    from backoffice.models import DecisionOutcome, Role
    from backoffice.services import review
    from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted

    publish_catalogue(session)
    provider = make_provider()
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, submitted(session, provider_member(session, make_account, provider),
                                                          provider))
    assess_all(session, researcher, submission)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    response = client.get(f"/api/v1/listings/{provider.id}/verification")
    assert response.status_code == 200
    body = response.get_json()
    validate(body, "Receipt")
    assert body["verification"]["criteria_version"] == 1 and body["verification"]["decided_at"]
    assert {c["code"] for c in body["criteria"]} >= {"LEGAL_ENTITY", "NOT_EXCLUDED", "NO_PATIENT_BROKERING"}
    assert body["advertiser"] is False
    feed_item = client.get("/api/v1/listings").get_json()["listings"][0]
    assert feed_item["verification"]["criteria_version"] == 1


def test_receipt_of_an_unlisted_provider_is_a_json_404(client, make_provider):
    provider = make_provider()
    response = client.get(f"/api/v1/listings/{provider.id}/verification")
    assert response.status_code == 404 and "No listed" in response.get_json()["error"]["message"]
    validate(response.get_json(), "Error")
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["status"] == 404


def test_openapi_document_describes_the_feed(client, make_provider):
    listed(make_provider, advertising_status=AdvertisingStatus.ACTIVE, website="https://x.example.org",
           levels_of_care=["otp"], services=["moud"])
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    jsonschema.Draft202012Validator.check_schema(schema_for("ListingPage"))
    assert set(doc["paths"]) == {"/api/v1/listings", "/api/v1/listings/{id}/verification", "/api/v1/receipts/status",
                                 "/.well-known/jwks.json"}
    validate(client.get("/api/v1/listings").get_json(), "ListingPage")
    params = {p["name"] for p in doc["paths"]["/api/v1/listings"]["get"]["parameters"]}
    assert params == {"state", "level_of_care", "service", "limit", "cursor"}


def test_provider_text_is_data_not_markup(client, make_provider):
    listed(make_provider, public_name='<script>alert(1)</script>"><img onerror=x>')
    response = client.get("/api/v1/listings")
    assert response.mimetype == "application/json"
    assert response.get_json()["listings"][0]["public_name"] == '<script>alert(1)</script>"><img onerror=x>'
    assert re.search(r"[<>]", response.get_data(as_text=True)) is None


def test_the_public_api_is_rate_limited_with_a_json_message(make_app):
    app = make_app(API_RATE_LIMIT="3 per minute")
    with app.app_context():
        client = app.test_client()
        statuses = [client.get("/api/v1/listings").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        body = client.get("/api/v1/listings").get_json()
        assert body["error"]["status"] == 429 and "3 per 1 minute" in body["error"]["message"]
