"""Our HSDS profile: published at a stable address, its schema changes extend HSDS 3.0 and bite, and after any
sequence of approvals, suspensions, lapses and advertiser changes the HSDS organizations are exactly the feed's
listings, in the feed's order, every advertiser marked."""
from __future__ import annotations

from datetime import timedelta

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backoffice.models import AdvertisingStatus, ListingStatus, Role, VerificationStatus, utcnow
from backoffice.services import accounts, hsds_ids, listings
from backoffice.services.errors import DomainError
from tests.hsds_schemas import FORMATS, registry, validate
from tests.review_helpers import publish_catalogue
from tests.test_listing_invariants import TROUBLE, WEIGHTED, World


def test_the_profile_document_names_its_schema_changes_at_stable_addresses(client):
    index = client.get("/hsds/").get_json()
    document = client.get(index["profile"]).get_json()
    assert document["uri"] == index["profile"] == "http://localhost/hsds/profile/"
    assert document["hsds_version"] == "3.0"
    assert set(document["schema_changes"]) == {"verification", "advertiser", "organization", "organization_list",
                                               "service", "service_list", "service_at_location",
                                               "service_at_location_list"}
    for url in document["schema_changes"].values():
        schema = client.get(url).get_json()
        assert schema["$id"] == url
        jsonschema.Draft202012Validator.check_schema(schema)
    missing = client.get("/hsds/profile/schema/nothing.json")
    assert missing.status_code == 404
    assert "The profile has no schema file 'nothing.json'" in missing.get_json()["error"]["message"]


def _validator(client, name: str):
    url = client.get("/hsds/profile/").get_json()["schema_changes"][name]
    return jsonschema.Draft202012Validator({"$ref": url}, registry=registry(client), format_checker=FORMATS)


def test_the_profile_refuses_what_base_hsds_accepts(client, make_provider):
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now - timedelta(days=1), verified_until=now + timedelta(days=30),
                             advertising_status=AdvertisingStatus.ACTIVE)
    org = client.get(f"/hsds/organizations/{hsds_ids.organization(provider.id)}").get_json()
    validate(client, "/organizations/{id}", org, "organization")
    assert org["advertiser"] == {"is_advertiser": True, "disclosure": listings.ADVERTISER_DISCLOSURE}
    profile = _validator(client, "organization")
    unmarked = {key: value for key, value in org.items() if key != "advertiser"}
    validate(client, "/organizations/{id}", unmarked)  # base HSDS has no opinion on it
    assert "'advertiser' is a required property" in [e.message for e in profile.iter_errors(unmarked)]
    undisclosed = {**org, "advertiser": {"is_advertiser": True}}
    assert not profile.is_valid(undisclosed)
    wrongly = {**org, "advertiser": {"is_advertiser": False, "disclosure": listings.ADVERTISER_DISCLOSURE}}
    assert not profile.is_valid(wrongly)
    unverified = {**org, "verification": {**org["verification"], "status": "expired"}}
    assert not profile.is_valid(unverified)
    not_a_uuid = {**org, "id": "12"}
    assert not _validator(client, "organization_list").is_valid(not_a_uuid)


@pytest.fixture
def world(app, session, make_account):
    app.config["API_RATE_LIMIT"] = "100000 per minute"  # a sequence reads the API after every step
    publish_catalogue(session)
    return World(session, make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD),
                 make_account(Role.PROVIDER))


def check_hsds_is_the_feed(client) -> None:
    feed = client.get(f"/api/v1/listings?limit={listings.MAX_LIMIT}").get_json()["listings"]
    page = client.get("/hsds/organizations?per_page=100").get_json()
    assert [hsds_ids.decode(item["id"]).first for item in page["contents"]] == [item["id"] for item in feed]
    assert page["total_items"] == len(feed)
    for item, listing in zip(page["contents"], feed, strict=True):
        assert item["advertiser"]["is_advertiser"] is listing["advertiser"]
        assert item["advertiser"].get("disclosure") == listing["advertiser_disclosure"]
        assert item["verification"]["verified_until"] == listing["verification"]["verified_until"]
    services = client.get("/hsds/services?per_page=100").get_json()["contents"]
    assert [hsds_ids.decode(s["organization_id"]).first for s in services] == \
        [item["id"] for item in feed for _ in item["levels_of_care"]]
    for listing in feed:
        found = client.get(f"/hsds/organizations/{hsds_ids.organization(listing['id'])}")
        assert found.status_code == 200


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(WEIGHTED, st.integers(0, 1)), min_size=3, max_size=12))
def test_hsds_organizations_are_the_feeds_listings_after_any_operations(client, world, make_provider, steps):
    _run(client, world, make_provider, steps)


@pytest.mark.parametrize("steps", TROUBLE[:6])
def test_hsds_follows_the_feed_through_the_troublesome_sequences(client, world, make_provider, steps):
    _run(client, world, make_provider, steps)


def _run(client, world, make_provider, steps) -> None:
    session = world.session
    providers = [make_provider(levels_of_care=["outpatient"]) for _ in range(2)]
    for provider in providers:
        accounts.add_member(session, "system:test", world.member, provider)
    session.commit()
    for operation, which in steps:
        provider = providers[which]
        try:
            world.run(operation, provider)
            session.commit()
        except DomainError:
            session.rollback()
        session.expire_all()
        check_hsds_is_the_feed(client)
        for provider in providers:
            if not provider.is_in_directory(utcnow()):
                assert client.get(f"/hsds/organizations/{hsds_ids.organization(provider.id)}").status_code == 404
    validate(client, "/organizations", client.get("/hsds/organizations?full=true").get_json(), "organization")
