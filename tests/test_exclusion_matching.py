"""Fuzzy exclusion matching on real LEIE rows, its scores on the finding page, thresholds from the settings, and
a researcher's judgement kept across re-imports and list versions."""
from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import date

import pytest
from sqlalchemy import func, select

import config
from backoffice.checks import exclusion_lists
from backoffice.models import (
    AuditEvent,
    ExclusionJudgement,
    ExclusionRecord,
    ExclusionVerdict,
    Finding,
    FindingSeverity,
    FindingState,
    Location,
    Principal,
    PrincipalRole,
    Role,
)
from backoffice.services import findings, screening
from benchmarks import match_quality
from tests.conftest import login
from tests.test_exclusions import HEADER, LEIE, import_text, record_screen, write
from tests.test_startup import BIN, ROOT

TODAY = date(2026, 1, 1)


@pytest.fixture(scope="module")
def leie_rows():
    return [r for r in exclusion_lists.read(LEIE, expect={"oig_leie"}).rows if r.state and r.city and not r.npi
            and not r.reinstated_on]


def line(row) -> str:
    """A row of the real file written back as a CSV line (the importer reads it as the real file's)."""
    return ",".join(json.dumps(row.raw.get(column, "")) for column in [*exclusion_lists.LEIE_COLUMNS, "SOURCE_FILE"]) + "\n"


def unique_in_state(rows, wanted):
    keys = {}
    for row in rows:
        keys.setdefault((row.name_key, row.state), []).append(row)
    return next(row for row in rows if wanted(row) and len(keys[(row.name_key, row.state)]) == 1)


def provider_at(make_provider, session, row, public_name="Quiet Waters Recovery", principal=None):
    provider = make_provider(public_name=public_name, legal_name=public_name)
    provider.locations.clear()
    provider.locations.append(Location(street1="77 Nowhere Road", city=row.city.title(), state=row.state, zip="00000"))
    if principal:
        provider.principals.append(Principal(name=principal, role=PrincipalRole.MEDICAL_DIRECTOR))
    session.commit()
    return provider


def screened(session, provider, thresholds=None):
    subject = screening.Subject(
        screening.parties(provider.legal_name, provider.public_name, provider.npi,
                          [(p.name, p.npi) for p in provider.principals]),
        {loc.state for loc in provider.locations}, {loc.city for loc in provider.locations},
        {loc.street1 for loc in provider.locations})
    return screening.screen_many(session, [subject], TODAY, thresholds)[0]


def test_perturbed_real_names_are_found_with_their_scores(app, session, make_provider, tmp_path, leie_rows):
    business = unique_in_state(leie_rows, lambda r: r.business_name and len(r.business_name.split()) >= 2
                               and len(max(r.business_name.split(), key=len)) >= 6)
    people = [unique_in_state(leie_rows[n * 500:], lambda r: r.first_name and len(r.last_name or "") >= 6)
              for n in range(4)]
    import_text(session, tmp_path, "real.csv", HEADER + "".join(line(r) for r in [business, *people]))
    words = business.business_name.split()
    longest = max(range(len(words)), key=lambda n: len(words[n]))
    words[longest] = match_quality.typo(words[longest], __import__("random").Random(3))
    cases = {
        "typo and an LLC suffix": (" ".join(words).title() + " LLC", None, business),
        "word order": (None, f"{people[0].last_name} {people[0].first_name}", people[0]),
        "initials": (None, f"{people[1].first_name[0]}. {people[1].last_name.title()}", people[1]),
        "typo in the surname": (None, f"{people[2].first_name} {people[2].last_name[:2]}"
                                f"{people[2].last_name[3]}{people[2].last_name[2]}{people[2].last_name[4:]}", people[2]),
        "a credential after the name": (None, f"Dr. {people[3].first_name} {people[3].last_name}, MD", people[3]),
    }
    for how, (org, principal, row) in cases.items():
        provider = provider_at(make_provider, session, row, public_name=org or "Quiet Waters Recovery",
                               principal=principal)
        result = screened(session, provider)
        assert result.outcome.value == "warn", (how, org, principal, result.summary)
        [spec] = result.findings
        assert spec.detail["record_fingerprint"] == row.row_key and spec.detail["record_identity"] == row.identity
        scores = {s["signal"]: s for s in spec.detail["signals"]}
        assert scores["name (token set)"]["score"] >= 0.88 and scores["name (Jaro-Winkler)"]["score"] >= 0.85, how
        assert scores["name (token set)"]["threshold"] == 0.88
        assert scores["city"]["score"] == 1.0 and scores["state"]["score"] == 1.0, how
        assert scores["address"]["theirs"] == row.raw["ADDRESS"].strip() and scores["address"]["score"] < 0.8
        assert "state and city" in spec.detail["matched_by"], how
        # Exact names keep their old confidence; a near one is as sure as its name score.
        assert 0.75 <= spec.detail["confidence"] <= 0.9
        session.delete(provider)
        session.commit()
    # A different person of the same state is not raised.
    stranger = provider_at(make_provider, session, people[0], principal="Zebulon Quackenbush")
    assert screened(session, stranger).outcome.value == "pass"


def test_thresholds_from_the_settings_change_the_outcome(app, session, make_provider, tmp_path, leie_rows):
    row = unique_in_state(leie_rows, lambda r: r.first_name and len(r.last_name or "") >= 7)
    import_text(session, tmp_path, "one.csv", HEADER + line(row))
    last = row.last_name
    provider = provider_at(make_provider, session, row, principal=f"{row.first_name} {last[:3]}{last[4]}{last[3]}{last[5:]}")
    default = screening.Thresholds.from_config(config.load("testing"))
    strict = screening.Thresholds.from_config(config.load("testing", {"SCREENING_NAME_TOKEN_SET_THRESHOLD": 0.99}))
    exact = screening.Thresholds.from_config(config.load("testing", {"SCREENING_FUZZY": False}))
    assert screened(session, provider, default).outcome.value == "warn"
    assert screened(session, provider, strict).outcome.value == "pass"
    assert screened(session, provider, exact).outcome.value == "pass"
    # The city threshold decides whether a city that agrees makes the match surer.
    loose_city = screening.Thresholds.from_config(config.load("testing", {"SCREENING_CITY_THRESHOLD": 0.5}))
    provider.locations[0].city = provider.locations[0].city[:-2] + "xx"
    session.commit()
    assert "state and city" not in screened(session, provider, default).findings[0].detail["matched_by"]
    assert "state and city" in screened(session, provider, loose_city).findings[0].detail["matched_by"]


def test_bad_threshold_settings_are_refused_at_start_in_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("FLASK_APP", "BACKOFFICE_ENV")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/backoffice.db", BACKOFFICE_INSTANCE_PATH=str(tmp_path / "instance"),
               SCREENING_ADDRESS_THRESHOLD="1.2")
    result = subprocess.run([str(BIN / "flask"), "--app", "backoffice", "routes"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert [ln for ln in result.stderr.splitlines() if "Settings refused" in ln] == [
        "Settings refused: SCREENING_ADDRESS_THRESHOLD must be a score above 0 and at most 1 (e.g. 0.88), not 1.2."]
    with pytest.raises(config.UnreadableSetting, match="SCREENING_CITY_THRESHOLD 'high' cannot be read"):
        os.environ["SCREENING_CITY_THRESHOLD"] = "high"
        try:
            config.load("testing")
        finally:
            del os.environ["SCREENING_CITY_THRESHOLD"]


MEMBER = ('"DOE","JANE","Q","","NURSING","NURSE","","0000000000","19700101","1 MAIN ST","CHARLOTTESVILLE","VA","",'
          '"1128a1","20200101","00000000","00000000","","{file}"\n')
OTHER = ('"ROE","RICHARD","","","NURSING","NURSE","","0000000000","","","AUSTIN","TX","","1128a1","20190101",'
         '"00000000","00000000","","{file}"\n')


def test_a_dismissal_survives_a_reimport_and_a_later_list_version(app, session, make_provider, make_account,
                                                                   tmp_path):
    provider = provider_at(make_provider, session, exclusion_lists.ExclusionRow(
        0, None, None, None, None, None, "", None, "VA", "CHARLOTTESVILLE", None, None, None, {}),
        principal="Jane Doe")
    first = write(tmp_path, "2001EXCL.csv", HEADER + MEMBER.format(file="2001EXCL"))
    import_text(session, tmp_path, "2001EXCL.csv", HEADER + MEMBER.format(file="2001EXCL"))
    record_screen(session, provider, "w1")
    finding = session.scalar(select(Finding))
    findings.dismiss(session, make_account(), finding, "not the same person: other date of birth")
    session.commit()
    judgement = session.scalar(select(ExclusionJudgement))
    assert (judgement.verdict, judgement.party_key) == (ExclusionVerdict.DISMISSED, "principal:JANE DOE")
    assert session.scalar(select(AuditEvent.action).where(AuditEvent.entity_type == "exclusion_judgement")) \
        == "exclusion_judgement.recorded"

    # The same file again: already imported; a later monthly file carries the same record (another SOURCE_FILE).
    assert screening.import_file(session, "system:test", exclusion_lists.read(first), None).already_imported
    later = import_text(session, tmp_path, "2002EXCL.csv",
                        HEADER + MEMBER.format(file="2002EXCL") + OTHER.format(file="2002EXCL"))
    assert (later.added, later.already_known) == (1, 1)
    record_screen(session, provider, "w2")
    record_screen(session, provider, "w3")
    assert session.scalar(select(func.count()).select_from(Finding)) == 1
    assert finding.state == FindingState.DISMISSED


def test_a_changed_record_raises_a_confirmed_match_again(app, session, make_provider, make_account, client,
                                                         tmp_path):
    provider = provider_at(make_provider, session, exclusion_lists.ExclusionRow(
        0, None, None, None, None, None, "", None, "VA", "CHARLOTTESVILLE", None, None, None, {}),
        principal="Jane Doe")
    import_text(session, tmp_path, "2001EXCL.csv", HEADER + MEMBER.format(file="2001EXCL"))
    record_screen(session, provider, "w1")
    finding = session.scalar(select(Finding))
    researcher = make_account()
    findings.confirm(session, researcher, finding, "same person: licence number and date of birth agree")
    findings.resolve(session, researcher, finding, "principal removed from the organisation; listing reviewed")
    session.commit()
    assert session.scalar(select(ExclusionJudgement.verdict)) == ExclusionVerdict.CONFIRMED
    # Dealt with and unchanged: a re-import does not raise it again.
    import_text(session, tmp_path, "2002EXCL.csv", HEADER + MEMBER.format(file="2002EXCL"))
    record_screen(session, provider, "w2")
    assert session.scalar(select(func.count()).select_from(Finding)) == 1

    # The list's next version gives her another address: the same record (identity), changed content.
    import_text(session, tmp_path, "2003EXCL.csv",
                HEADER + MEMBER.format(file="2003EXCL").replace("1 MAIN ST", "40 ELM AVE"))
    assert session.scalar(select(func.count(func.distinct(ExclusionRecord.identity)))) == 1
    record_screen(session, provider, "w3")
    again = session.scalar(select(Finding).where(Finding.state == FindingState.OPEN))
    assert again is not None and again.id != finding.id
    assert again.severity == FindingSeverity.CRITICAL
    assert again.title.startswith("List record changed since confirmed: Probable exclusion match: principal Jane Doe")
    assert again.detail["record_changed"]["changed_columns"] == ["ADDRESS"]

    # The researcher reads the scores and what changed on the finding's page.
    login(client, make_account(Role.AUDITOR))
    html = client.get(f"/admin/finding-work/{again.id}").get_data(as_text=True)
    assert "Scores, signal by signal" in html
    assert "The list record changed since" in html and "confirmed this match" in html and "ADDRESS" in html
    start = html.index('id="match-signals"')
    table = re.sub(r">\s+<", "><", html[start:html.index("</table>", start)])
    for text in ("<th>Signal</th><th>Provider's value</th><th>List's value</th><th>Score</th>"
                 "<th>Threshold</th>",
                 "<th>name (token set)</th><td>Jane Doe</td><td>JANE Q DOE</td>", "<td>1.00</td><td>0.88</td>",
                 "<th>address</th><td>77 Nowhere Road</td><td>40 ELM AVE</td>", "<th>city</th>",
                 "<th>date of birth</th><td>not on file</td><td>1970-01-01</td><td>not compared</td><td>none</td>",
                 "<th>NPI</th><td>not on file</td><td>not on the list</td><td>not compared</td><td>1.00</td>"):
        assert text in table, (text, re.findall(r"<tr><th>address.*?</tr>", table))


def test_the_labelled_sample_command_reproduces_its_figures():
    recorded = json.loads(match_quality.RESULT.read_text())
    again = match_quality.main(["--seed", str(recorded["seed"]), "--sample", str(recorded["sample"])])
    assert again == recorded
    other_seed = match_quality.evaluate(recorded["seed"] + 1, 200)
    assert other_seed["positives"] == 200 and other_seed != recorded
