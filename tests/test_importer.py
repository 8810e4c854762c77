"""The locator importer on the real SAMHSA files and on broken ones."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backoffice.importers.locator import classify, normalise_website, normalise_zip, read_file
from backoffice.models import AuditEvent, Location, Provider
from backoffice.services import audit, imports

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "public"
FINDTREATMENT = DATA / "findtreatment_gov_api_listing_sample_2019.json"
FINDTREATMENT_B = DATA / "findtreatment_gov_api_listing_sample_2019_b.json"
OEPS = {
    "oeps_mental_health": (DATA / "oeps_MentalHealthProviders_Geocoded.csv", 11375),
    "oeps_substance_use": (DATA / "oeps_SubstanceUseTreatment_Geocoded.csv", 14034),
    "oeps_otp": (DATA / "oeps_OpioidTreatmentProgram_Geocoded.csv", 1831),
}


def run_import(app, path, *extra):
    return app.test_cli_runner().invoke(args=["import", "findtreatment", str(path), *extra])


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def test_findtreatment_export_imports_with_levels_of_care_and_services(app, session):
    result = run_import(app, FINDTREATMENT)
    assert result.exit_code == 0, result.output
    assert "30 created, 0 updated, 0 unchanged" in result.output
    mohr = session.scalar(select(Provider).where(Provider.public_name == "Region Ten Community Services Board (Mohr Center)"))
    assert mohr.import_source == "findtreatment"
    assert mohr.import_key == "811a908f82269778a2fe2a8bc603afa08df868f3e2fa56aa62e214d03997dea1"
    assert "residential" in mohr.levels_of_care
    assert "substance_use_treatment" in mohr.services
    assert "medicaid" in mohr.payment_accepted  # the code of the vocabulary, not the locator's label
    assert (mohr.locations[0].city, mohr.locations[0].state, mohr.locations[0].zip) == ("Charlottesville", "VA", "22902")
    assert mohr.website == "http://www.regionten.org"
    assert count(session, AuditEvent) == 30
    assert audit.verify_chain(session).ok


def test_reimporting_the_same_file_adds_nothing(app, session):
    run_import(app, FINDTREATMENT)
    events = count(session, AuditEvent)
    again = run_import(app, FINDTREATMENT)
    assert again.exit_code == 0
    assert "0 created, 0 updated, 30 unchanged" in again.output
    assert count(session, Provider) == 30
    assert count(session, AuditEvent) == events


def test_reimport_of_a_changed_row_updates_it_and_audits_only_the_change(app, session, tmp_path):
    run_import(app, FINDTREATMENT)
    data = json.loads(FINDTREATMENT.read_text())
    data["rows"][0]["phone"] = "434-555-0100"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    result = run_import(app, changed)
    assert "0 created, 1 updated, 29 unchanged" in result.output
    event = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()
    assert event.action == "provider.import_updated"
    assert event.before == {"phone": "434-979-8871"} and event.after == {"phone": "434-555-0100"}


def test_second_findtreatment_page_overlaps_without_duplicates(app, session):
    run_import(app, FINDTREATMENT)
    result = run_import(app, FINDTREATMENT_B)
    assert result.exit_code == 0, result.output
    keys = session.scalars(select(Provider.import_key)).all()
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("source", list(OEPS))
def test_real_oeps_files_parse_completely(source):
    path, rows = OEPS[source]
    detected, parsed = read_file(path)
    records, summary = imports.validate(parsed, detected)
    assert detected == source
    assert summary.rejected == []
    assert len(records) + len(summary.duplicates) == rows


def test_real_otp_file_imports_and_restores_leading_zeros(app, session):
    path, rows = OEPS["oeps_otp"]
    result = run_import(app, path)
    assert result.exit_code == 0, result.output
    created = count(session, Provider)
    assert created > 1800
    hartford = session.scalar(select(Location).where(Location.street1.like("8 fl.-W. Wing%")))
    assert hartford.zip == "06112" and hartford.state == "CT"
    provider = hartford.provider
    assert provider.levels_of_care == ["otp"] and "moud" in provider.services
    again = run_import(app, path)
    assert f"0 created, 0 updated, {created} unchanged" in again.output


def test_broken_json_is_refused_with_its_position(app, session, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"rows": [{"name1": "x",}]}')
    result = run_import(app, broken)
    assert result.exit_code == 1
    assert "not valid JSON" in result.output and "line 1" in result.output
    assert count(session, Provider) == 0


def test_unknown_csv_layout_is_refused(app, session, tmp_path):
    odd = tmp_path / "odd.csv"
    odd.write_text("facility,where\nA,B\n")
    result = run_import(app, odd)
    assert result.exit_code == 1 and "unknown CSV layout" in result.output
    assert count(session, Provider) == 0


def _bad_export(tmp_path):
    data = json.loads(FINDTREATMENT.read_text())
    rows = data["rows"][:5]
    rows[1]["name1"] = ""
    rows[2]["state"] = "XX"
    rows[3]["zip"] = "2290"  + "2A"
    rows[4]["website"] = "javascript:alert(document.cookie)"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_bad_rows_are_reported_and_nothing_is_imported_by_default(app, session, tmp_path):
    result = run_import(app, _bad_export(tmp_path))
    assert result.exit_code == 1
    out = result.output
    assert "row 1" in out and "facility name is missing" in out
    assert "row 2" in out and "state 'XX' is not a US state or territory code" in out
    assert "row 3" in out and "ZIP code '22902A' is not 5 digits" in out
    assert "row 4" in out and "is not an http or https address" in out
    assert "4 rows rejected, so nothing was imported" in out
    assert count(session, Provider) == 0
    assert count(session, AuditEvent) == 0


def test_partial_import_writes_the_good_rows_and_lists_the_rest(app, session, tmp_path):
    result = run_import(app, _bad_export(tmp_path), "--partial")
    # The good rows were written: that is a success, and the rejected rows are still listed on stderr.
    assert result.exit_code == 0, result.output
    assert "1 created" in result.stdout and "4 rejected" in result.stdout
    assert re.search(r"^rejected row 1 \(frid [0-9a-f]{12}…\): facility name is missing$", result.stderr, re.M)
    assert "rejected row 4 (frid " in result.stderr and "rejected row" not in result.stdout
    assert count(session, Provider) == 1


def test_partial_import_with_no_good_row_fails_and_writes_nothing(app, session, tmp_path):
    data = json.loads(FINDTREATMENT.read_text())
    rows = data["rows"][:2]
    rows[0]["name1"] = ""
    rows[1]["state"] = "XX"
    path = tmp_path / "all-bad.json"
    path.write_text(json.dumps({"rows": rows}))
    result = run_import(app, path, "--partial")
    assert result.exit_code == 1
    assert re.search(r"^rejected row 0 \(frid [0-9a-f]{12}…\): facility name is missing$", result.stderr, re.M)
    assert result.stderr.splitlines()[-1] == "all-bad.json: all 2 rows rejected, so nothing was imported."
    assert count(session, Provider) == 0 and count(session, AuditEvent) == 0


def test_the_partial_import_command_exits_0_when_it_wrote_the_good_rows(tmp_path):
    """The real `flask import findtreatment --partial` process, as a shell script or make would see it."""
    env = {key: value for key, value in os.environ.items() if key != "FLASK_APP"}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/import.db", BACKOFFICE_INSTANCE_PATH=str(tmp_path / "instance"))
    flask = [str(Path(sys.executable).parent / "flask"), "--app", "backoffice"]
    assert subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, capture_output=True).returncode == 0
    done = subprocess.run([*flask, "import", "findtreatment", str(_bad_export(tmp_path)), "--partial"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 created" in done.stdout and "): state 'XX' is not a US state" in done.stderr


@pytest.mark.parametrize("text, message", [
    ('{"rows": [{"name1": "x",}]}', "not valid JSON: Expecting property name enclosed in double quotes at line 1, column 25"),
    ('{"rows": [\n\n{"name1": "unterminated}]}', "not valid JSON: Unterminated string starting at line 3, column 11"),
    ('{"rows": [{"name1": "a\tb"}]}', "not valid JSON: Invalid control character at line 1, column 23"),
    ('{"rows": []} {}', "not valid JSON: Extra data at line 1, column 14"),
])
def test_broken_json_says_where_in_plain_words(app, session, tmp_path, text, message):
    broken = tmp_path / "broken.json"
    broken.write_text(text)
    result = run_import(app, broken)
    assert result.exit_code == 1
    assert result.output == f"Error: broken.json: {message}. Nothing was imported.\n"
    assert not re.search(r"\b(\w+) \1\b", result.output), "a word is doubled"


def test_csv_row_errors_name_the_line(tmp_path):
    path = tmp_path / "su.csv"
    path.write_text(
        "name1,name2,street1,street2,city,state,zip,zip4,county,latitude,longitude\n"
        "Good Place,,1 Main St,,Town,AL,35630,,Lauderdale,34.8,-87.6\n"
        "Bad Lat,,2 Main St,,Town,AL,35630,,Lauderdale,134.8,-87.6\n"
        ",,3 Main St,,Town,ZZ,1,,Lauderdale,34.8,-87.6\n"
    )
    source, rows = read_file(path)
    records, summary = imports.validate(rows, source)
    assert len(records) == 1
    assert [str(e) for e in summary.rejected] == [
        "line 3: latitude 134.8 is out of range",
        "line 4: facility name is missing; state 'ZZ' is not a US state or territory code; ZIP code '1' is not 5 digits",
    ]


def test_empty_file_is_refused(app, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("   \n")
    result = run_import(app, empty)
    assert result.exit_code == 1 and "the file is empty" in result.output


@pytest.mark.parametrize("raw, expected", [
    ("22902", "22902"), (6708, "06708"), ("802", "00802"), ("22902-1234", "22902-1234"),
])
def test_zip_normalisation(raw, expected):
    assert normalise_zip(raw) == expected


@pytest.mark.parametrize("raw", ["2290A", "12", "123456", "22902-12"])
def test_bad_zips_are_refused(raw):
    with pytest.raises(ValueError):
        normalise_zip(raw)


@pytest.mark.parametrize("raw", ["javascript:alert(1)", "ftp://files.example.org", "data:text/html,x", "http:///path",
                                 "http://exa mple.org"])
def test_non_web_addresses_are_refused(raw):
    with pytest.raises(ValueError):
        normalise_website(raw)


def test_bare_domains_get_a_scheme():
    assert normalise_website("www.pcc4me.com") == "http://www.pcc4me.com"


def test_a_bare_scheme_means_no_website():
    assert normalise_website("http://") is None


def test_harm_reduction_services_are_recognised():
    levels, services = classify([
        "Naloxone and overdose education", "Fentanyl test strips", "Syringe services program",
        "Buprenorphine maintenance", "Consumer-run (peer-support) services", "Intensive outpatient treatment",
        "Hospital inpatient detoxification", "Transitional housing, halfway house, or sober home",
    ])
    assert services == ["fentanyl_test_strips", "moud", "naloxone", "peer_support", "syringe_services"]
    assert levels == ["detox", "iop", "recovery_residence"]


def test_overlong_fields_are_rejected_not_truncated_or_crashing(app, session, tmp_path):
    data = json.loads(FINDTREATMENT.read_text())
    data["rows"][0]["street1"] = "1 " + "Very Long Street Name " * 12
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"rows": data["rows"][:2]}))
    result = run_import(app, path)
    assert result.exit_code == 1
    assert "row 0" in result.output and "street address is 265 characters long; at most 200 fit" in result.output
    assert count(session, Provider) == 0


def test_deeply_nested_json_gets_a_message_not_a_traceback(app, session, tmp_path):
    path = tmp_path / "nested.json"
    path.write_text("[" * 100_000)
    result = run_import(app, path)
    assert result.exit_code == 1 and "nested too deeply" in result.output
    assert "Traceback" not in result.output


def test_a_csv_that_breaks_midway_imports_nothing_even_when_partial(app, session, tmp_path):
    header = "name1,name2,street1,street2,city,state,zip,zip4,county,latitude,longitude\n"
    good = "Good Place {n},,{n} Main St,,Town,AL,35630,,Lauderdale,34.8,-87.6\n"
    broken = 'Broken,,"' + "x" * 200_000 + '",,Town,AL,35630,,Lauderdale,34.8,-87.6\n'
    path = tmp_path / "broken.csv"
    path.write_text(header + good.format(n=1) + broken + good.format(n=3))
    result = run_import(app, path, "--partial")
    assert result.exit_code == 1
    assert "malformed CSV after line 2" in result.output and "Nothing was imported" in result.output
    assert count(session, Provider) == 0
