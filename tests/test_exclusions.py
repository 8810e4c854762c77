"""Exclusion lists: the importer on the real files (with their quirks) and broken ones; screening and reinstatement."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import func, select

from backoffice.checks import exclusion_lists
from backoffice.models import (
    AuditEvent,
    CheckKind,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    Finding,
    FindingSeverity,
    FindingState,
    Principal,
    PrincipalRole,
)
from backoffice.services import findings, rechecks, screening

DATA = Path(__file__).resolve().parent.parent / "data" / "public"
LEIE = DATA / "oig_leie_monthly_exclusions_2016-01_to_2023-06.csv"
REIN = DATA / "oig_leie_monthly_reinstatements_2016-01_to_2023-06.csv"
NY = DATA / "state_sanction_lists" / "ny_omig_exclusions.tsv"
PA = DATA / "state_sanction_lists" / "pa_medicheck_precluded_providers.csv"
HEADER = ('"LASTNAME","FIRSTNAME","MIDNAME","BUSNAME","GENERAL","SPECIALTY","UPIN","NPI","DOB","ADDRESS","CITY",'
          '"STATE","ZIP","EXCLTYPE","EXCLDATE","REINDATE","WAIVERDATE","WVRSTATE","SOURCE_FILE"\n')


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_real_leie_files_import_with_their_quirks_and_a_reimport_adds_nothing(app, session):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["import", "leie", str(LEIE)])
    assert result.exit_code == 0, result.output
    assert "19752 records added" in result.output and "7 duplicate lines skipped" in result.output
    assert count(session, ExclusionRecord) == 19752
    source = session.scalar(select(ExclusionSource))
    assert (source.list_name, source.file_name, source.file_date) == ("oig_leie", LEIE.name, date(2023, 7, 20))
    # 00000000 is no date, 0000000000 is no NPI, trailing spaces in EXCLTYPE are gone.
    first = session.scalar(select(ExclusionRecord).where(ExclusionRecord.business_name == "AMERICAN SLEEP INSTITUTE"))
    assert (first.npi, first.excluded_on, first.reinstated_on, first.exclusion_type) == (
        "1629125307", date(2016, 1, 15), None, "1128b7")
    assert count(session, ExclusionRecord) - session.scalar(
        select(func.count()).select_from(ExclusionRecord).where(ExclusionRecord.npi.is_not(None))) > 15000
    assert session.scalar(select(func.count()).select_from(ExclusionRecord)
                          .where(ExclusionRecord.exclusion_type.like("% "))) == 0
    # A surname that is also a credential ("DO") keeps its name key.
    assert session.scalar(select(ExclusionRecord.name_key).where(
        ExclusionRecord.last_name == "DO", ExclusionRecord.first_name == "TRI")) == "TRI DO"

    again = runner.invoke(args=["import", "leie", str(LEIE)])
    assert again.exit_code == 0 and "already imported" in again.output
    assert count(session, ExclusionRecord) == 19752 and count(session, ExclusionSource) == 1

    rein = runner.invoke(args=["import", "leie", str(REIN)])
    assert rein.exit_code == 0, rein.output
    assert session.scalar(select(func.count()).select_from(ExclusionRecord)
                          .where(ExclusionRecord.kind == ExclusionRecordKind.REINSTATEMENT)) == 4320
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "exclusion_list.imported")).all()
    assert [e.after["added"] for e in events] == [19752, 4320]


def test_state_lists_import_with_their_quirks(app, session):
    runner = app.test_cli_runner()
    ny = runner.invoke(args=["import", "state-list", str(NY)])
    assert ny.exit_code == 0, ny.output
    assert "note line 2077: NPI_Number 'none'" in ny.output  # kept, screened by name only
    pa = runner.invoke(args=["import", "state-list", str(PA)])  # latin-1
    assert pa.exit_code == 0, pa.output
    assert session.scalar(select(func.count()).select_from(ExclusionRecord).where(ExclusionRecord.state == "NY")) == 6020
    assert session.scalar(select(func.count()).select_from(ExclusionRecord).where(ExclusionRecord.state == "PA")) == 3919
    piganelli = session.scalar(select(ExclusionRecord).where(ExclusionRecord.name_key == "CHERYL PIGANELLI"))
    assert piganelli.list_name == "pa_medicheck"
    assert runner.invoke(args=["import", "leie", str(NY)]).exit_code != 0


def write(tmp_path, name, text, encoding="utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_bad_files_get_clear_messages_and_change_nothing(app, session, tmp_path):
    runner = app.test_cli_runner()
    good = '"DOE","JANE","","","NURSING","NURSE","","0000000000","","1 MAIN ST","RICHMOND","VA","23220","1128a1","20200101","00000000","00000000","",""\n'
    cases = {
        "empty.csv": ("", "the file is empty"),
        "other.csv": ("a,b,c\n1,2,3\n", "matches none of the known lists"),
        "dates.csv": (HEADER + good + good.replace("20200101", "20201341").replace("JANE", "JOHN"),
                      "line 3: EXCLDATE '20201341' is not a date"),
        "noname.csv": (HEADER + good + good.replace('"DOE","JANE"', '"",""'), "line 3: neither BUSNAME nor LASTNAME"),
        "short.csv": (HEADER + good + '"ONLY","THREE","COLUMNS"\n', "line 3: expected 19 columns"),
        "state.csv": (HEADER + good.replace('"VA"', '"Virginia"'), "line 2: STATE 'Virginia' is not a two-letter state"),
    }
    for name, (text, message) in cases.items():
        result = runner.invoke(args=["import", "leie", str(write(tmp_path, name, text))])
        assert result.exit_code != 0, name
        assert message in result.output, (name, result.output)
        assert "nothing was imported" in result.output.lower()
    assert count(session, ExclusionRecord) == 0 and count(session, ExclusionSource) == 0


def import_text(session, tmp_path, name, text):
    parsed = exclusion_lists.read(write(tmp_path, name, text))
    assert not parsed.errors, parsed.errors
    result = screening.import_file(session, "system:test", parsed, None)
    session.commit()
    return result


def screen(session, provider):
    facts = rechecks.facts(session, provider.id)
    parties = screening.parties(facts.legal_name, facts.public_name, facts.npi, facts.principals)
    return screening.screen(session, parties, {loc["state"] for loc in facts.locations},
                            {loc["city"] for loc in facts.locations}, date(2026, 1, 1),
                            addresses={loc["street1"] for loc in facts.locations})


def record_screen(session, provider, window):
    result = screen(session, provider)
    rechecks.record(session, "system:test", provider.id, CheckKind.EXCLUSION,
                    rechecks.run_key(provider.id, CheckKind.EXCLUSION, window), result, rechecks.utcnow(),
                    auto_suspend=False, cadence_days=30)
    session.commit()
    return result


def test_screening_by_npi_and_by_name_and_state_and_reinstatement_closes(app, session, make_provider, tmp_path):
    provider = make_provider(legal_name="Harbor Recovery Center LLC", public_name="Harbor Recovery Center",
                             npi="1629125307")
    provider.principals.append(Principal(name="Dr. Jane Q. Doe, MD", role=PrincipalRole.MEDICAL_DIRECTOR))
    other = make_provider(public_name="Quiet Waters")
    session.commit()
    rows = (
        # excluded by NPI (another name on the list): confirmed, critical
        '"","","","SLEEP INSTITUTE","","","","1629125307","","","MIAMI","FL","","1128b7","20160115","00000000","00000000","",""\n'
        # the medical director by name and state: probable, warning
        '"DOE","JANE","Q","","NURSING","NURSE","","0000000000","","1 MAIN ST","CHARLOTTESVILLE","VA","","1128a1   ","20200101","0","00000000","",""\n'
        # same name in another state: no match
        '"DOE","JANE","","","NURSING","NURSE","","0000000000","","","AUSTIN","TX","","1128a1","20190101","00000000","00000000","",""\n'
    )
    import_text(session, tmp_path, "2001EXCL.csv", HEADER + rows)
    result = record_screen(session, provider, "w1")
    assert result.outcome.value == "fail"
    opened = session.scalars(select(Finding).where(Finding.provider_id == provider.id).order_by(Finding.id)).all()
    assert [(f.severity, f.detail["matched_by"], f.detail["confidence"]) for f in opened] == [
        (FindingSeverity.CRITICAL, "NPI", 1.0), (FindingSeverity.WARNING, "name, state and city", 0.9)]
    assert screen(session, other).outcome.value == "pass"
    # Running again changes nothing: same findings, still open.
    record_screen(session, provider, "w2")
    assert session.scalar(select(func.count()).select_from(Finding)) == 2

    # A researcher confirms the probable match: it becomes critical and stays so on the next run.
    probable = opened[1]
    findings.confirm(session, provider_actor(), probable, "same person: DOB and licence checked")
    session.commit()
    record_screen(session, provider, "w3")
    assert probable.severity == FindingSeverity.CRITICAL

    # The reinstatement file names the director's exclusion: her finding closes, the NPI one stays.
    import_text(session, tmp_path, "2301REIN.csv", HEADER + rows.splitlines(keepends=True)[1].replace(
        '"0","00000000"', '"20230105","00000000"'))
    record_screen(session, provider, "w4")
    session.refresh(probable)
    assert probable.state == FindingState.RESOLVED and probable.closed_by == "system:test"
    assert opened[0].state == FindingState.OPEN


def test_a_dismissed_name_match_is_not_raised_again(app, session, make_provider, make_account, tmp_path):
    provider = make_provider(public_name="Harbor Recovery Center")
    import_text(session, tmp_path, "x.csv", HEADER + '"","","","HARBOR RECOVERY CENTER INC","","","","0000000000","","","","VA","","1128b7","20160115","00000000","00000000","",""\n')
    record_screen(session, provider, "w1")
    finding = session.scalar(select(Finding))
    researcher = make_account()
    findings.dismiss(session, researcher, finding, "different organisation: other address and owners")
    session.commit()
    record_screen(session, provider, "w2")
    assert session.scalar(select(func.count()).select_from(Finding)) == 1


def provider_actor():
    return "system:test-researcher"
