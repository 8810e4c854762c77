"""The HSDS 3.0 API: every response valid against the shipped HSDS schemas and our profile, only verified
listings (also not by id), the feed's order, clear refusals of bad parameters, ids that round-trip."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import event

from backoffice.extensions import db
from backoffice.models import (
    Accreditation,
    AdvertisingStatus,
    Licence,
    ListingStatus,
    Location,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, hsds_ids, listings, profile
from backoffice.services.hsds import RESEARCH_TEAM
from backoffice.vocab import LEVELS_OF_CARE, PAYMENT_ACCEPTED, POPULATIONS, SERVICES
from tests.hsds_schemas import validate, validate_error


def listed(make_provider, **fields):
    now = utcnow()
    defaults = dict(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                    verified_at=now - timedelta(days=10), verified_until=now + timedelta(days=300))
    return make_provider(**{**defaults, **fields})


def unpublished(make_provider):
    """Providers that must never appear: lapsed (sweep not run yet), suspended, revoked, never verified."""
    now = utcnow()
    return [listed(make_provider, verified_until=now - timedelta(hours=1)),
            listed(make_provider, listing_status=ListingStatus.SUSPENDED),
            listed(make_provider, listing_status=ListingStatus.DELISTED, verification_status=VerificationStatus.REVOKED),
            make_provider()]


def org_ids(payload) -> list[int]:
    return [hsds_ids.decode(item["id"]).first for item in payload["contents"]]


FOREIGN = "5b2c3f0e-8a51-4f0c-9d3a-2e6b1c7d9f10"  # a version-4 UUID: not ours


def term_id(taxonomy: str, code: str) -> str:
    return hsds_ids.taxonomy_term(hsds_ids.term(taxonomy, code))


@pytest.fixture
def directory(session, make_provider):
    """Five listed providers (two advertisers, one with licences, accreditation, NPI, phone, two locations) and
    four that never leave."""
    rich = listed(make_provider, public_name="Blue Ridge <Recovery> & Wellness", npi="1234567893",
                  phone="+1 434-296-1234", email="intake@blueridge.example.org",
                  levels_of_care=["otp", "outpatient"], services=["moud", "naloxone", "substance_use_treatment"],
                  populations=["adults", "veterans"], payment_accepted=["medicaid", "self_pay"],
                  last_rechecked_at=utcnow() - timedelta(days=2))
    rich.locations.append(Location(street1="9 Water Street", street2="Suite 2", city="Staunton", state="VA",
                                   zip="24401", county="Augusta", latitude=38.15, longitude=-79.07,
                                   phone="540-555-0100"))
    rich.licences.append(Licence(state="VA", number="OTP-77", licence_type="Opioid treatment program",
                                 issuing_agency="DBHDS", levels_of_care=["otp"],
                                 expires_on=(utcnow() + timedelta(days=200)).date()))
    rich.licences.append(Licence(state="VA", number="OP-12", licence_type="Outpatient", levels_of_care=["outpatient"]))
    rich.accreditations.append(Accreditation(body="CARF", accreditation_id="C-1"))
    session.commit()
    others = [listed(make_provider, advertising_status=AdvertisingStatus.ACTIVE, levels_of_care=["residential"],
                     services=["fentanyl_test_strips"]),
              listed(make_provider),
              listed(make_provider, advertising_status=AdvertisingStatus.ACTIVE, levels_of_care=["detox", "iop"]),
              listed(make_provider, levels_of_care=["telehealth"], services=["syringe_services", "naloxone"])]
    hidden = unpublished(make_provider)
    return {"rich": rich, "shown": [rich, *others], "hidden": hidden}


def test_index_names_the_version_profile_openapi_and_lists(client):
    payload = client.get("/hsds/").get_json()
    validate(client, "/", payload)
    assert payload["version"] == "3.0"
    assert payload["profile"] == "http://localhost/hsds/profile/"
    assert payload["openapi_url"] == "http://localhost/hsds/openapi.json"
    assert payload["links"]["services"] == "http://localhost/hsds/services"
    assert client.get(payload["profile"]).get_json()["uri"] == payload["profile"]


def test_organizations_are_the_feeds_listings_in_the_feeds_order_page_by_page(client, directory):
    feed = [item["id"] for item in client.get("/api/v1/listings").get_json()["listings"]]
    assert feed == [p.id for p in directory["shown"]]
    seen = []
    for number in (1, 2, 3):
        response = client.get(f"/hsds/organizations?per_page=2&page={number}")
        assert response.status_code == 200
        payload = response.get_json()
        validate(client, "/organizations", payload, "organization_list")
        assert (payload["total_items"], payload["total_pages"], payload["page_number"], payload["size"]) == (5, 3, number, 2)
        assert payload["first_page"] is (number == 1) and payload["last_page"] is (number == 3)
        seen += org_ids(payload)
    assert seen == feed
    beyond = client.get("/hsds/organizations?per_page=2&page=4").get_json()
    validate(client, "/organizations", beyond, "organization_list")
    assert beyond["empty"] is True and beyond["contents"] == [] and beyond["last_page"] is True
    full = client.get("/hsds/organizations?full=true&full_service=true").get_json()
    validate(client, "/organizations", full, "organization")
    assert org_ids(full) == feed


def test_hidden_providers_never_appear_not_even_by_id(client, directory):
    for path in ("/hsds/organizations", "/hsds/services", "/hsds/service_at_locations"):
        text = client.get(path + "?per_page=100").get_data(as_text=True)
        for provider in directory["hidden"]:
            assert hsds_ids.organization(provider.id) not in text, path
    for provider in directory["hidden"]:
        for url in (f"/hsds/organizations/{hsds_ids.organization(provider.id)}",
                    f"/hsds/services/{hsds_ids.service(provider.id, hsds_ids.term('level_of_care', 'outpatient'))}",
                    f"/hsds/service_at_locations/"
                    f"{hsds_ids.service_at_location(provider.id, hsds_ids.term('level_of_care', 'outpatient'), provider.locations[0].id)}"):
            response = client.get(url)
            assert response.status_code == 404, url
            validate_error(client, response.get_json())


def test_one_organization_in_full(client, directory):
    rich = directory["rich"]
    response = client.get(f"/hsds/organizations/{hsds_ids.organization(rich.id)}")
    assert response.status_code == 200
    org = response.get_json()
    validate(client, "/organizations/{id}", org, "organization")
    assert org["name"] == "Blue Ridge <Recovery> & Wellness" and org["alternate_name"] == rich.legal_name
    assert b"<Recovery>" not in response.data  # markup characters stay escaped in the bytes, like the feed
    assert org["organization_identifiers"][0]["identifier"] == "1234567893"
    assert org["phones"][0]["number"] == "+1 434-296-1234"
    assert [loc["addresses"][0]["city"] for loc in org["locations"]] == ["Charlottesville", "Staunton"]
    assert org["locations"][1]["addresses"][0] | {"id": None, "location_id": None} == {
        "id": None, "location_id": None, "address_1": "9 Water Street", "address_2": "Suite 2", "city": "Staunton",
        "region": "Augusta", "state_province": "VA", "postal_code": "24401", "country": "US", "address_type": "physical"}
    assert org["locations"][1]["phones"][0]["number"] == "540-555-0100"
    assert [s["name"] for s in org["services"]] == [LEVELS_OF_CARE["otp"], LEVELS_OF_CARE["outpatient"]]
    otp = org["services"][0]
    assert otp["licenses"].startswith("Opioid treatment program OTP-77 (VA, issued by DBHDS, expires ")
    assert "OP-12" not in otp["licenses"]
    assert otp["accreditations"] == "CARF C-1"
    assert otp["assured_date"] == rich.verified_at.date().isoformat()
    assert org["verification"]["receipt_url"] == f"http://localhost/api/v1/listings/{rich.id}/verification"
    assert org["verification"]["status"] == "verified"
    assert org["advertiser"] == {"is_advertiser": False}
    with_services = client.get(f"/hsds/organizations/{org['id']}?full_service=true").get_json()
    validate(client, "/organizations/{id}", with_services, "organization")
    assert len(with_services["services"][0]["attributes"]) == 1 + 3 + 2 + 2


def test_every_advertiser_carries_the_mark_and_the_feeds_disclosure(client, directory):
    feed = {item["id"]: item for item in client.get("/api/v1/listings").get_json()["listings"]}
    for path, schema in (("/hsds/organizations", "organization_list"), ("/hsds/services", "service_list")):
        payload = client.get(path).get_json()
        validate(client, path.removeprefix("/hsds"), payload, schema)
        for item in payload["contents"]:
            provider_id = hsds_ids.decode(item.get("organization_id", item["id"])).first
            mark = item["advertiser"]
            assert mark["is_advertiser"] is feed[provider_id]["advertiser"]
            assert mark.get("disclosure") == feed[provider_id]["advertiser_disclosure"]
            if mark["is_advertiser"]:
                assert mark["disclosure"] == listings.ADVERTISER_DISCLOSURE
    assert sum(item["advertiser"]["is_advertiser"] for item in client.get("/hsds/organizations").get_json()["contents"]) == 2


def test_services_one_per_level_of_care_filtered_by_term_taxonomy_and_organization(client, directory):
    rich, shown = directory["rich"], directory["shown"]
    everything = client.get("/hsds/services?per_page=100").get_json()
    validate(client, "/services", everything, "service_list")
    assert everything["total_items"] == 2 + 1 + 1 + 2 + 1
    pairs = [(hsds_ids.decode(s["organization_id"]).first, s["name"]) for s in everything["contents"]]
    assert [p for p, _ in pairs] == sorted(p for p, _ in pairs)
    naloxone = client.get(f"/hsds/services?taxonomy_term_id={term_id('service', 'naloxone')}").get_json()
    validate(client, "/services", naloxone, "service_list")
    assert {hsds_ids.decode(s["organization_id"]).first for s in naloxone["contents"]} == {rich.id, shown[4].id}
    otp = client.get(f"/hsds/services?taxonomy_term_id={term_id('level_of_care', 'otp')}&full=true").get_json()
    validate(client, "/services", otp, "service")
    assert [s["name"] for s in otp["contents"]] == [LEVELS_OF_CARE["otp"]]
    terms = {a["taxonomy_term"]["code"] for a in otp["contents"][0]["attributes"]}
    assert terms == {"otp", "moud", "naloxone", "substance_use_treatment", "adults", "veterans", "medicaid", "self_pay"}
    assert len(otp["contents"][0]["service_at_locations"]) == 2
    by_org = client.get(f"/hsds/services?organization_id={hsds_ids.organization(shown[3].id)}").get_json()
    assert [s["name"] for s in by_org["contents"]] == [LEVELS_OF_CARE["detox"], LEVELS_OF_CARE["iop"]]
    payments = hsds_ids.taxonomy(hsds_ids.TAXONOMY_BY_NAME["payment"])
    paying = client.get(f"/hsds/services?taxonomy_id={payments}").get_json()
    assert {hsds_ids.decode(s["organization_id"]).first for s in paying["contents"]} == {rich.id}
    searched = client.get("/hsds/services?search=blue%20ridge").get_json()
    assert searched["total_items"] == 2
    none = client.get(f"/hsds/services?taxonomy_term_id={term_id('level_of_care', 'hospital_inpatient')}").get_json()
    validate(client, "/services", none, "service_list")
    assert none["empty"] is True and none["total_items"] == 0 and none["total_pages"] == 0
    minimal = client.get("/hsds/services?minimal=true").get_json()
    validate(client, "/services", minimal)
    assert set(minimal["contents"][0]) == {"id", "name", "status", "last_modified"}


def test_one_service_and_one_service_at_location(client, directory):
    rich = directory["rich"]
    otp = hsds_ids.term("level_of_care", "otp")
    service = client.get(f"/hsds/services/{hsds_ids.service(rich.id, otp)}").get_json()
    validate(client, "/services/{id}", service, "service")
    assert service["organization"]["name"] == rich.public_name and service["status"] == "active"
    assert all(m["updated_by"] == RESEARCH_TEAM for m in service["metadata"])
    missing = client.get(f"/hsds/services/{hsds_ids.service(rich.id, hsds_ids.term('level_of_care', 'detox'))}")
    assert missing.status_code == 404  # a level of care the provider does not offer
    sal_page = client.get("/hsds/service_at_locations?per_page=3&page=2").get_json()
    validate(client, "/service_at_locations", sal_page, "service_at_location_list")
    assert sal_page["total_items"] == 2 * 2 + 1 + 1 + 2 + 1
    located = client.get("/hsds/service_at_locations?postcode=24401").get_json()
    assert [s["location"]["addresses"][0]["city"] for s in located["contents"]] == ["Staunton", "Staunton"]
    one = located["contents"][0]["id"]
    sal = client.get(f"/hsds/service_at_locations/{one}").get_json()
    validate(client, "/service_at_locations/{id}", sal, "service_at_location")
    assert sal["location"]["location_type"] == "physical" and sal["service"]["name"] == LEVELS_OF_CARE["otp"]


def test_taxonomies_and_their_terms(client):
    taxonomies = client.get("/hsds/taxonomies").get_json()
    validate(client, "/taxonomies", taxonomies)
    assert [t["name"] for t in taxonomies["contents"]] == ["Levels of care", "Services", "Populations served",
                                                           "Payment accepted"]
    terms = client.get("/hsds/taxonomy_terms?per_page=100").get_json()
    validate(client, "/taxonomy_terms", terms)
    assert terms["total_items"] == len(LEVELS_OF_CARE) + len(SERVICES) + len(POPULATIONS) + len(PAYMENT_ACCEPTED)
    harm = client.get(f"/hsds/taxonomy_terms?taxonomy_id={taxonomies['contents'][1]['id']}&search=syringe").get_json()
    assert [t["name"] for t in harm["contents"]] == ["Syringe services"]
    term = client.get(f"/hsds/taxonomy_terms/{term_id('service', 'fentanyl_test_strips')}").get_json()
    validate(client, "/taxonomy_terms/{id}", term)
    assert term["name"] == "Fentanyl test strips" and term["taxonomy_id"] == taxonomies["contents"][1]["id"]
    one = client.get(f"/hsds/taxonomies/{taxonomies['contents'][0]['id']}").get_json()
    validate(client, "/taxonomies/{id}", one)
    assert client.get(f"/hsds/taxonomy_terms?parent_id={uuid.uuid4()}").get_json()["empty"] is True


@pytest.mark.parametrize("query, words", [
    ("per_page=101", "per_page must be a whole number from 1 to 100"),
    ("per_page=0", "per_page must be a whole number from 1 to 100"),
    ("page=-1", "page must be a whole number from 1 to 1000000"),
    ("page=two", "page must be a whole number"),
    ("full=yes", "full must be true or false"),
    ("minimal=1", "minimal must be true or false"),
    ("modified_after=yesterday", "modified_after must be an ISO 8601 date-time"),
    ("taxonomy_term_id=naloxone", "taxonomy_term_id is not the id of a term"),
    (f"taxonomy_term_id={FOREIGN}", "taxonomy_term_id is not the id of a term"),
    (f"taxonomy_id={FOREIGN}", "taxonomy_id is not the id of one of this API's taxonomies"),
    (f"organization_id={hsds_ids.location(1)}", "organization_id is not an organization id"),
    ("format=ndjson", "format must be json"),
    ("search=%20", "search must be 1 to 200 characters"),
    ("search=a%00b", "search must not contain control characters"),
    ("sort=name", "unknown parameter(s) sort; this list takes"),
    ("limit=5&cursor=v1.1", "unknown parameter(s) cursor, limit"),
])
def test_bad_parameters_are_refused_with_their_name(client, query, words):
    response = client.get(f"/hsds/services?{query}")
    assert response.status_code == 400, query
    payload = response.get_json()
    validate_error(client, payload)
    assert payload["error"]["status"] == 400 and words in payload["error"]["message"], payload


def test_several_problems_are_named_at_once_and_singles_refuse_parameters(client, directory):
    message = client.get("/hsds/organizations?page=0&full=maybe").get_json()["error"]["message"]
    assert "page must be" in message and "full must be true or false" in message
    org = hsds_ids.organization(directory["rich"].id)
    assert client.get(f"/hsds/organizations/{org}?page=2").status_code == 400
    assert client.get(f"/hsds/organizations/{org}?full_service=perhaps").get_json()["error"]["message"] == \
        "full_service must be true or false"


@pytest.mark.parametrize("bad", ["not-a-uuid", FOREIGN, "0D5E7C01-0000-8000-8000-000080000000",
                                 hsds_ids.service(1, hsds_ids.term("level_of_care", "otp")), hsds_ids.organization(0),
                                 hsds_ids.organization(hsds_ids.MAX_ID)])
def test_malformed_foreign_or_unknown_ids_are_404_json(client, directory, bad):
    response = client.get(f"/hsds/organizations/{bad}")
    assert response.status_code == 404 and response.mimetype == "application/json"
    validate_error(client, response.get_json())
    assert "No listed, currently verified organization has this id." in response.get_json()["error"]["message"]


def test_ids_round_trip_and_never_change(client, directory):
    first = client.get("/hsds/service_at_locations?full=true").get_json()
    assert first == client.get("/hsds/service_at_locations?full=true").get_json()
    for provider_id in (1, 2**31 - 1):
        assert hsds_ids.decode(hsds_ids.organization(provider_id)).first == provider_id
    for taxonomy in hsds_ids.TAXONOMIES:
        for code in taxonomy.terms:
            term = hsds_ids.term(taxonomy.name, code)
            assert hsds_ids.decode(hsds_ids.taxonomy_term(term)).term == term
            assert hsds_ids.term_from_number(term.number) == term
    level = hsds_ids.term("level_of_care", "otp")
    decoded = hsds_ids.decode(hsds_ids.service_at_location(7, level, 9))
    assert (decoded.kind, decoded.first, decoded.second, decoded.term) == (hsds_ids.Kind.SERVICE_AT_LOCATION, 7, 9, level)
    assert uuid.UUID(hsds_ids.organization(5)).version == 8
    with pytest.raises(ValueError):
        hsds_ids.organization(2**31)


def test_metadata_is_each_fields_last_change_by_the_research_team(client, session, directory, make_account):
    from backoffice.models import Role

    rich = directory["rich"]
    researcher = make_account(Role.RESEARCHER)
    profile.apply(session, researcher, rich, {"public_name": "Blue Ridge Recovery", "website": "https://br.example.org"},
                  "approved update")
    session.commit()
    profile.apply(session, researcher, rich, {"public_name": "Blue Ridge Recovery Center"}, "approved update")
    session.commit()
    org = client.get(f"/hsds/organizations/{hsds_ids.organization(rich.id)}").get_json()
    validate(client, "/organizations/{id}", org, "organization")
    by_field = {m["field_name"]: m for m in org["metadata"]}
    assert by_field["name"]["previous_value"] == "Blue Ridge Recovery"
    assert by_field["name"]["replacement_value"] == "Blue Ridge Recovery Center"
    assert by_field["website"]["replacement_value"] == "https://br.example.org"
    assert by_field["name"]["last_action_type"] == "update"
    assert {m["updated_by"] for m in org["metadata"]} == {RESEARCH_TEAM}
    assert researcher.name not in str(org["metadata"]) and f"user:{researcher.id}" not in str(org["metadata"])
    assert audit.verify_chain(session).ok


def test_a_page_is_read_in_a_fixed_number_of_queries(client, session, make_provider, directory):
    def statements(url: str) -> int:
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            assert client.get(url).status_code == 200
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    urls = ["/hsds/organizations?full=true", "/hsds/services?full=true", "/hsds/service_at_locations?full=true"]
    before = [statements(url) for url in urls]
    for _ in range(6):
        listed(make_provider, levels_of_care=["otp", "iop"])
    client.application.extensions.pop("hsds_totals")  # these providers were written without an audit event
    assert [statements(url) for url in urls] == before
    assert max(before) <= 9
    # Asked again, each list's total is the one kept: one statement fewer (the count), the same pages.
    assert [statements(url) for url in urls] == [n - 1 for n in before]


def test_totals_are_kept_until_the_trail_moves_or_a_counted_verification_lapses(client, session, make_provider,
                                                                              directory, monkeypatch):
    def totals(url: str = "/hsds/services") -> int:
        return client.get(url).get_json()["total_items"]

    services, organizations = totals(), totals("/hsds/organizations")
    # Written without an audit event (as nothing in the product is): the kept totals do not see it ...
    soon = listed(make_provider, levels_of_care=["otp"], verified_until=utcnow() + timedelta(days=1))
    assert (totals(), totals("/hsds/organizations")) == (services, organizations)
    # ... and the lists say so as soon as anything is audited.
    audit.record(session, "system:test", "provider.created", "provider", soon.id, provider_id=soon.id)
    session.commit()
    assert (totals(), totals("/hsds/organizations")) == (services + 1, organizations + 1)
    assert len(client.get("/hsds/organizations?per_page=100").get_json()["contents"]) == organizations + 1
    # A counted verification that lapses takes its provider out of the totals without any write.
    later = utcnow() + timedelta(days=2)
    monkeypatch.setattr("backoffice.api.hsds_views.utcnow", lambda: later)
    assert (totals(), totals("/hsds/organizations")) == (services, organizations)
    # A list since a time is counted every time: updated_at moves with writes that are not audited.
    since = f"/hsds/organizations?modified_after={(utcnow() - timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    counted = totals(since)
    monkeypatch.undo()
    listed(make_provider)
    assert totals(since) == counted + 2  # the lapsed one is back in force at today's time, and the new one
