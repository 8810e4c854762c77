"""The NPPES parser on every recorded real response, and the client against a local server answering with them."""
from __future__ import annotations

import json

import pytest

from backoffice.checks import nppes
from backoffice.checks.http import GuardedClient
from backoffice.models import CheckOutcome
from tests.servers import NPPES_RECORDINGS, fake_nppes

RECORDINGS = sorted(NPPES_RECORDINGS.glob("*.json"))


def test_there_are_recordings_to_test():
    assert len(RECORDINGS) >= 15


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
def test_every_recorded_response_parses(path):
    raw = json.loads(path.read_text())
    answer = nppes.parse(path.read_bytes())
    if "Errors" in raw:
        assert answer.errors and not answer.records
        assert raw["Errors"][0]["description"] in answer.errors[0]
        return
    assert len(answer.records) == len(raw["results"])
    for record, result in zip(answer.records, raw["results"], strict=True):
        assert record.number == str(result["number"]) and len(record.number) == 10
        assert record.enumeration_type in {"NPI-1", "NPI-2"}
        assert record.status == "A"
        basic = result["basic"]
        assert record.sex == (basic.get("sex") or basic.get("gender"))
        if record.enumeration_type == "NPI-2":
            assert record.organization_name == basic["organization_name"]
        else:
            assert record.last_name == basic["last_name"]
        assert record.location is not None and record.location.state


def test_integer_and_string_variants_give_the_same_record():
    old = nppes.parse((NPPES_RECORDINGS / "ropensci_npi_api-8bdc8b.json").read_bytes()).records[0]
    assert old.number == "1568946812" and old.organization_name == "CSP ANESTHESIA LLC"
    new = nppes.parse((NPPES_RECORDINGS / "provider_pkg_nppes_type2.json").read_bytes()).records[0]
    assert new.number == "1174270805"
    assert new.location.address_1 == "1414 WALNUT ST" and new.location.postal_code == "191023824"


@pytest.mark.parametrize("payload", [b"<html>", b"[]", b'{"results": 3}', b'{"foo": 1}',
                                     b'{"results": [{"number": "12"}]}'])
def test_malformed_answers_raise_a_format_error(payload):
    with pytest.raises(nppes.NppesFormatError):
        nppes.parse(payload)


@pytest.fixture
def registry():
    server = fake_nppes()
    yield server
    server.close()


def lookup(registry, npi):
    client = GuardedClient(allow_loopback_for_tests=True)
    return nppes.NppesClient(client, registry.url(path="/api/")).lookup(npi)


def test_client_and_comparison_against_the_local_registry(registry):
    answer = lookup(registry, "1174270805")
    facts = nppes.ProviderFacts("1174270805", ["Peach State Medical Practice, P.C."],
                                [{"street1": "1414 Walnut Street", "city": "Philadelphia", "state": "PA", "zip": "19102"}])
    result = nppes.compare(facts, answer)
    assert result.outcome == CheckOutcome.PASS, result.summary
    assert registry.hits == ["/api/?version=2.1&number=1174270805"]

    moved = nppes.ProviderFacts("1174270805", ["Kindbody"], [{"street1": "1 Main St", "zip": "10001"}])
    result = nppes.compare(moved, answer)
    assert result.outcome == CheckOutcome.WARN
    assert {f.subject_key for f in result.findings} == {"npi:name_mismatch", "npi:address_mismatch"}


def test_unknown_npi_is_critical_and_an_error_answer_is_inconclusive(registry):
    result = nppes.compare(nppes.ProviderFacts("1999999984", ["X"]), lookup(registry, "1999999984"))
    assert result.outcome == CheckOutcome.FAIL
    assert result.findings[0].subject_key == "npi:not_found"
    errors = nppes.compare(nppes.ProviderFacts("", ["X"]), lookup(registry, ""))
    assert errors.outcome == CheckOutcome.ERROR and errors.inconclusive
    assert "No valid search criteria" in errors.summary


def test_an_individual_npi_does_not_pass_as_an_organisation(registry):
    result = nppes.compare(nppes.ProviderFacts("1760485387", ["Some Clinic"]), lookup(registry, "1760485387"))
    assert "npi:not_organisation" in {f.subject_key for f in result.findings}
