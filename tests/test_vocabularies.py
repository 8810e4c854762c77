"""One vocabulary per list: imports map the locator's labels onto it, earlier rows were migrated, the feed and its
OpenAPI document say the same."""
from __future__ import annotations

import enum
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade
from sqlalchemy import select

from backoffice.api.openapi import document
from backoffice.extensions import db
from backoffice.importers.locator import read_file
from backoffice.models import (
    AdvertisingStatus,
    AuditEvent,
    ListingStatus,
    Provider,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, listing_rules
from backoffice.vocab import LEVELS_OF_CARE, LIST_FIELDS, MAPPINGS, SERVICES, VOCABULARIES, samhsa_mapping

DATA = Path(__file__).resolve().parent.parent / "data" / "public"
FINDTREATMENT = sorted(DATA.glob("findtreatment_*.json"))
OEPS = sorted(DATA.glob("oeps_*.csv"))
BEFORE_MAPPING = "3d853b84431e"


def locator_labels(path: Path) -> set[tuple[str, str]]:
    """Every (group, label) a FindTreatment.gov export holds."""
    labels = set()
    for row in json.loads(path.read_text())["rows"]:
        for item in row.get("services") or []:
            labels |= {(item["f2"], label.strip()) for label in item["f3"].split(";") if label.strip()}
    return labels


def only_codes(provider_or_record) -> dict[str, list[str]]:
    """The values of the four lists that are not codes of their vocabulary (empty when all are)."""
    stray = {name: [v for v in getattr(provider_or_record, name) if v not in VOCABULARIES[name]]
             for name in LIST_FIELDS}
    return {name: values for name, values in stray.items() if values}


def test_importing_the_shipped_locator_files_yields_only_vocabulary_codes(app, session):
    runner = app.test_cli_runner()
    outputs = []
    for path in FINDTREATMENT:
        result = runner.invoke(args=["import", "findtreatment", str(path)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    providers = session.scalars(select(Provider)).all()
    assert len(providers) == len({row["frid"] for path in FINDTREATMENT for row in json.loads(path.read_text())["rows"]})
    assert {p.public_name: only_codes(p) for p in providers if only_codes(p)} == {}
    populations = {code for p in providers for code in p.populations}
    assert {"men", "women", "adults", "veterans", "children"} <= populations
    assert "Male" not in populations and "Adult men" not in populations
    assert {"self_pay", "medicaid", "sliding_scale"} <= {code for p in providers for code in p.payment_accepted}
    # What the vocabularies cannot hold is named, with its group and how many rows carried it.
    text = "\n".join(outputs)
    assert "not mapped TAP: Cognitive behavioral therapy (" in text
    assert "not mapped OL: Spanish (" in text and "left out of the listing" in text
    mapping = samhsa_mapping()
    for group, label in set().union(*map(locator_labels, FINDTREATMENT)):
        if mapping.codes_for(label) is None:
            assert f"not mapped {group}: {label} (" in text


def test_the_oeps_files_yield_only_vocabulary_codes():
    for path in OEPS:
        _, rows = read_file(path)
        stray = [(record.where, only_codes(record)) for record in rows if hasattr(record, "levels_of_care")
                 and only_codes(record)]
        assert stray == [], path.name


def test_suboxone_is_medication_not_naloxone_distribution_and_each_label_maps_as_written():
    mapping = samhsa_mapping()
    assert mapping.map_labels(["Buprenorphine with naloxone  (Suboxone®)"]).codes["services"] == ["moud"]
    assert mapping.map_labels(["Buprenorphine without naloxone"]).codes["services"] == ["moud"]
    both = mapping.map_labels(["Male", "Adult men", "Female", "Adult women", "Children/adolescents"]).codes
    assert both["populations"] == ["adolescents", "children", "men", "women"]
    co_occurring = mapping.map_labels(["Persons with co-occurring mental and substance use disorders"]).codes
    assert co_occurring["services"] == ["co_occurring"] and co_occurring["populations"] == []
    assert mapping.map_labels(["Does not treat opioid addiction"]).unmapped == ["Does not treat opioid addiction"]


def test_every_code_of_the_mapping_is_in_its_vocabulary_and_has_a_label():
    mapping = samhsa_mapping()
    targets = {(name, code) for entry in mapping.entries.values() for name, codes in entry.items() for code in codes}
    assert {(name, code) for name, code in targets if code not in VOCABULARIES[name]} == set()
    assert all(label.strip() for vocabulary in VOCABULARIES.values() for label in vocabulary.values())
    # The portal's rules read the same vocabularies.
    assert listing_rules.POPULATIONS is VOCABULARIES["populations"]
    assert listing_rules.PAYMENT_ACCEPTED is VOCABULARIES["payment_accepted"]


def test_the_mapping_the_migration_applied_is_never_edited():
    # Version 1 was applied to existing rows by migration 7b3e91c5d2a4; a change is a new version.
    digest = hashlib.sha256((MAPPINGS / "samhsa-locator-v1.json").read_bytes()).hexdigest()
    assert digest == FROZEN_V1


FROZEN_V1 = "93da25418e63bdd6f3329e8ddccfdada98c1488ff4057f468c29ac840de193e4"


def test_the_openapi_enums_equal_the_vocabularies():
    doc = document()
    listing = doc["components"]["schemas"]["Listing"]["properties"]
    for name, vocabulary in VOCABULARIES.items():
        assert listing[name]["items"]["enum"] == sorted(vocabulary), name
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/listings"]["get"]["parameters"]}
    assert params["level_of_care"]["enum"] == sorted(LEVELS_OF_CARE)
    assert params["service"]["enum"] == sorted(SERVICES)


def test_the_feed_publishes_codes_only(client, make_provider):
    now = utcnow()
    make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                  verified_at=now - timedelta(days=1), verified_until=now + timedelta(days=300),
                  populations=["adults", "Persons with an unmapped need"], payment_accepted=["medicaid"])
    item = client.get("/api/v1/listings").get_json()["listings"][0]
    assert item["populations"] == ["adults"] and item["payment_accepted"] == ["medicaid"]


@pytest.fixture
def before_the_mapping(app, session):
    """The database as it was before the mapping: at the revision before it, then back to head after."""
    session.remove()
    downgrade(revision=BEFORE_MAPPING)
    yield session


def _insert_as_then(session, row) -> int:
    """Write an ORM row with Core, keeping only the columns the table had at that revision: the models describe
    the head, and a column added since did not exist yet. Every value the row needs is given explicitly."""
    table = sa.Table(row.__tablename__, sa.MetaData(), autoload_with=session.connection())
    values = {}
    for column in sa.inspect(type(row)).columns:
        value = getattr(row, column.key)
        if column.key in table.c and value is not None:
            values[column.key] = value.value if isinstance(value, enum.Enum) else value
    return session.execute(table.insert().values(**values)).inserted_primary_key[0]


def test_the_migration_maps_labelled_rows_and_open_requests_and_audits_each(before_the_mapping):
    session = before_the_mapping
    now = utcnow()
    base = dict(listing_status=ListingStatus.UNLISTED, verification_status=VerificationStatus.UNVERIFIED,
                advertising_status=AdvertisingStatus.NONE, created_at=now, updated_at=now, row_version=1,
                website="https://harbor.example.org", levels_of_care=["outpatient"])
    labelled_id = _insert_as_then(session, Provider(
        legal_name="Harbor Recovery Center 1 LLC", public_name="Harbor Recovery Center 1",
        services=["substance_use_treatment"],
        populations=["Adult men", "Male", "Persons with co-occurring mental and substance use disorders",
                     "Persons with an unmapped need"],
        payment_accepted=["Cash or self-payment", "Medicaid"], **base))
    coded_id = _insert_as_then(session, Provider(
        legal_name="Harbor Recovery Center 2 LLC", public_name="Harbor Recovery Center 2",
        services=["substance_use_treatment"], populations=["adults"], payment_accepted=["medicaid"], **base))
    proposed = {"public_name": "Harbor", "populations": ["Female", "Veterans"], "payment_accepted": ["Medicare"]}
    open_id, closed_id = (_insert_as_then(session, Submission(
        provider_id=labelled_id, kind=SubmissionKind.UPDATE, state=state, proposed=dict(proposed),
        created_at=now, updated_at=now, row_version=1))
        for state in (SubmissionState.SUBMITTED, SubmissionState.REJECTED))
    session.commit()
    ids = labelled_id, coded_id, open_id, closed_id
    session.remove()

    upgrade()

    labelled, coded, open_request, closed_request = (
        session.get(Provider, ids[0]), session.get(Provider, ids[1]), session.get(Submission, ids[2]),
        session.get(Submission, ids[3]))
    assert labelled.populations == ["Persons with an unmapped need", "men"]
    assert labelled.services == ["co_occurring", "substance_use_treatment"]
    assert labelled.payment_accepted == ["medicaid", "self_pay"]
    assert labelled.levels_of_care == ["outpatient"]
    assert (coded.populations, coded.payment_accepted) == (["adults"], ["medicaid"])
    assert open_request.proposed == {"public_name": "Harbor", "populations": ["veterans", "women"],
                                     "payment_accepted": ["medicare"]}
    assert closed_request.proposed == proposed  # a decided request keeps what it proposed
    events = session.scalars(select(AuditEvent).where(AuditEvent.actor == "system:migration")
                             .order_by(AuditEvent.seq)).all()
    assert [(e.action, e.entity_id) for e in events] == [("provider.vocabulary_mapped", str(ids[0])),
                                                         ("submission.vocabulary_mapped", str(ids[2]))]
    assert events[0].before["payment_accepted"] == ["Cash or self-payment", "Medicaid"]
    assert events[0].after["payment_accepted"] == ["medicaid", "self_pay"]
    assert "samhsa-locator-v1.json" in events[0].reason
    assert audit.verify_chain(session).ok
    db.session.remove()
