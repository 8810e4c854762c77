"""`flask import hsds`: an HSDS 3.0 dataset becomes unlisted providers for review, all or nothing, with the
SAMHSA importer's messages; a re-import changes nothing."""
from __future__ import annotations

import json
import shutil
from datetime import timedelta

from sqlalchemy import func, select

from backoffice.models import AuditEvent, ListingStatus, Provider, VerificationStatus, utcnow
from tests.hsds_schemas import SHIPPED


def run(app, path, *extra):
    return app.test_cli_runner().invoke(args=["import", "hsds", str(path), *extra])


def dataset(client, make_provider, tmp_path):
    """Our own HSDS output (organizations in full, services in full): a dataset of the shape directories send."""
    now = utcnow()
    for levels, services in ((["otp", "outpatient"], ["naloxone", "moud"]), (["residential"], ["peer_support"])):
        make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                      verified_at=now - timedelta(days=3), verified_until=now + timedelta(days=300),
                      levels_of_care=levels, services=services, populations=["adults"], phone="434-555-0101")
    page = client.get("/hsds/organizations?full=true&full_service=true").get_json()
    path = tmp_path / "organizations.json"
    path.write_text(json.dumps(page), encoding="utf-8")
    return path, page


def imported(session) -> list[Provider]:
    return list(session.scalars(select(Provider).where(Provider.import_source == "hsds").order_by(Provider.id)))


def test_a_dataset_imports_unlisted_and_a_reimport_changes_nothing(app, session, client, make_provider, tmp_path):
    path, page = dataset(client, make_provider, tmp_path)
    result = run(app, path)
    assert result.exit_code == 0, result.output
    assert "organizations.json (hsds): 2 created, 0 updated, 0 unchanged, 0 duplicates skipped, 0 rejected." in result.output
    session.expire_all()
    providers = imported(session)
    assert [p.public_name for p in providers] == [org["name"] for org in page["contents"]]
    first = providers[0]
    assert first.listing_status == ListingStatus.UNLISTED and first.verification_status == VerificationStatus.UNVERIFIED
    assert first.levels_of_care == ["otp", "outpatient"] and first.services == ["moud", "naloxone"]
    assert first.populations == ["adults"] and first.phone == "434-555-0101"
    assert first.locations[0].city == "Charlottesville" and first.import_key == page["contents"][0]["id"]
    events = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "provider.imported"))
    assert events == 2
    again = run(app, path)
    assert again.exit_code == 0 and "0 created, 0 updated, 2 unchanged" in again.output
    assert len(imported(session)) == 2


def test_broken_records_are_named_and_nothing_is_written(app, session, client, make_provider, tmp_path):
    path, page = dataset(client, make_provider, tmp_path)
    good = page["contents"][0]
    broken = [{k: v for k, v in good.items() if k != "name"},
              {**good, "id": "not-a-uuid"},
              {**good, "id": "2f0c3f0e-8a51-4f0c-9d3a-2e6b1c7d9f10", "locations": []}]
    path.write_text(json.dumps([good, *broken]), encoding="utf-8")
    result = run(app, path)
    assert result.exit_code == 1
    assert "rejected record 2: not an HSDS 3.0 organization: 'name' is a required property" in result.output
    assert "rejected record 3: not an HSDS 3.0 organization: id: 'not-a-uuid' is not a 'uuid'" in result.output
    assert "rejected record 4: no US physical address" in result.output
    assert "3 rows rejected, so nothing was imported. Fix them, or run again with --partial" in result.output
    assert imported(session) == []
    partial = run(app, path, "--partial")
    assert partial.exit_code == 0 and "1 created" in partial.output and "3 rejected" in partial.output
    assert len(imported(session)) == 1


def test_a_folder_imports_and_what_is_not_a_dataset_is_refused(app, session, client, make_provider, tmp_path):
    path, _ = dataset(client, make_provider, tmp_path)
    folder = tmp_path / "dataset"
    folder.mkdir()
    path.rename(folder / "a.json")
    assert "2 created" in run(app, folder).output
    broken = tmp_path / "broken.json"
    broken.write_text('{"contents": [', encoding="utf-8")
    refused = run(app, broken)
    assert refused.exit_code == 1 and "broken.json: broken.json is not JSON (Expecting value at line 1" in refused.output
    assert "Nothing was imported." in refused.output
    # The HSDS example shipped with the schemas is an API's `/` answer: valid, and it lists no organization.
    example = run(app, SHIPPED.parent / "examples" / "base.json")
    assert example.exit_code == 0
    assert ("base.json: base.json is an HSDS API's root answer (version 3.0), which lists no organization: save the "
            "pages of its /organizations?full=true&full_service=true and import those. Nothing was imported.") \
        in example.output
    # Beside the pages saved from that API, in one folder, it is left aside and the pages import.
    shutil.copy(SHIPPED.parent / "examples" / "base.json", folder / "index.json")
    assert "dataset (hsds): 0 created, 0 updated, 2 unchanged" in run(app, folder).output
    assert len(imported(session)) == 2


def test_an_npi_among_the_identifiers_is_imported_and_a_wrong_one_refused(app, session, client, make_provider,
                                                                        tmp_path):
    make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                  verified_at=utcnow() - timedelta(days=3), verified_until=utcnow() + timedelta(days=300),
                  levels_of_care=["outpatient"], npi="1234567893")
    page = client.get("/hsds/organizations?full=true&full_service=true").get_json()
    good = page["contents"][0]
    assert good["organization_identifiers"][0]["identifier"] == "1234567893"
    wrong = {**good, "id": "2f0c3f0e-8a51-4f0c-9d3a-2e6b1c7d9f10", "organization_identifiers": [
        {**good["organization_identifiers"][0], "identifier_type": "npi", "identifier": "1234567890"}]}
    two = {**good, "id": "3a1d4e5f-6b7c-4d8e-9f01-23456789abcd", "organization_identifiers": [
        {**good["organization_identifiers"][0], "identifier": "1234567893"},
        {**good["organization_identifiers"][0], "identifier": "1245319599"}]}
    path = tmp_path / "npi.json"
    path.write_text(json.dumps([good, wrong, two]), encoding="utf-8")
    refused = run(app, path)
    assert refused.exit_code == 1
    assert ("rejected record 2: organization_identifiers/0: This is not a valid NPI: its check digit does not "
            "match.") in refused.output
    assert ("rejected record 3: organization_identifiers: more than one NPI (1234567893, 1245319599); a provider "
            "has one") in refused.output
    assert imported(session) == []
    path.write_text(json.dumps([good]), encoding="utf-8")
    assert run(app, path).exit_code == 0
    session.expire_all()
    [provider] = imported(session)
    assert provider.npi == "1234567893"
    # A record that carries no NPI leaves the one on file alone, and so changes nothing.
    path.write_text(json.dumps([{**good, "organization_identifiers": []}]), encoding="utf-8")
    again = run(app, path)
    assert "0 created, 0 updated, 1 unchanged" in again.output
    session.expire_all()
    assert imported(session)[0].npi == "1234567893"
    # A record that carries another NPI leaves the one on file too, and says so.
    path.write_text(json.dumps([{**good, "organization_identifiers": [
        {**good["organization_identifiers"][0], "identifier": "1245319599"}]}]), encoding="utf-8")
    other = run(app, path)
    assert other.exit_code == 0 and "0 created, 0 updated, 1 unchanged" in other.output
    assert ("kept record 1: its NPI 1245319599 differs from the one on file (1234567893), which is kept: the research "
            "team changes an NPI, from evidence") in other.output
    session.expire_all()
    assert imported(session)[0].npi == "1234567893"
