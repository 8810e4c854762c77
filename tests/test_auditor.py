"""The auditor's workspace: read everything, change nothing, export, and prove nothing was rewritten."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from backoffice import auditverify
from backoffice.models import (
    AuditCheckpoint,
    AuditEvent,
    AuditVerification,
    DecisionOutcome,
    Role,
    SubmissionKind,
    VerificationStatus,
)
from backoffice.services import audit, review
from tests.audit_helpers import append, tamper
from tests.conftest import login
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted

ROOT = Path(__file__).resolve().parent.parent


def export(client, **form) -> str:
    response = client.post("/admin/audit/export", data={"format": "jsonl", **form})
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def offline(tmp_path, content: str, name="export.jsonl") -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(content)
    return subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def auditor(client, make_account):
    account = make_account(Role.AUDITOR)
    login(client, account)
    return account


def test_auditor_reads_every_kind_of_page(client, session, auditor, make_provider, make_account):
    publish_catalogue(session)
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    submission = submitted(session, member, provider)
    for url in ("/admin/", "/admin/providers/", f"/admin/providers/details/?id={provider.id}", "/admin/submissions/",
                "/admin/review/", f"/admin/review/case/{submission.id}", f"/admin/review/provider/{provider.id}",
                "/admin/findings/", "/admin/check_runs/", "/admin/criteria/", "/admin/catalogue/",
                "/admin/audit/", "/admin/audit/event/1", f"/admin/audit/provider/{provider.id}", "/admin/audit/verify"):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize("how", ["change", "delete", "reorder"])
def test_any_single_tampered_event_is_pinpointed(client, session, auditor, tmp_path, where, how):
    append(session, 8)
    head = session.scalar(select(func.max(AuditEvent.seq)))
    seq = {"first": 1, "middle": head // 2, "last": head}[where]
    if how == "change":
        tamper(session, f"UPDATE audit_event SET reason = 'rewritten' WHERE seq = {seq}")
        expected = seq
    elif how == "delete":
        tamper(session, f"DELETE FROM audit_event WHERE seq = {seq}")
        expected = seq
    else:
        other = seq + 1 if seq < head else seq - 1
        low = min(seq, other)
        tamper(session, f"UPDATE audit_event SET seq = -1 WHERE seq = {low}",
               f"UPDATE audit_event SET seq = {low} WHERE seq = {low + 1}",
               f"UPDATE audit_event SET seq = {low + 1} WHERE seq = -1")
        expected = low
    report = audit.verify_chain(session)
    assert not report.ok and report.first_bad_seq == expected, report
    offline_result = offline(tmp_path, export(client))
    assert offline_result.returncode == 1
    assert f"BROKEN at event {expected}:" in offline_result.stdout


def test_removing_events_after_the_last_checkpoint_is_detected(client, session, auditor, tmp_path):
    append(session, 6)
    audit.run_verification(session, "system:test")
    session.commit()
    head = session.scalar(select(func.max(AuditEvent.seq)))
    assert session.scalar(select(AuditCheckpoint.head_seq)) == head
    # Remove the tail and rewind the head row too, as someone covering their tracks would.
    keep = head - 2
    last_kept = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == keep))
    tamper(session, f"DELETE FROM audit_event WHERE seq > {keep}",
           f"UPDATE audit_chain_lock SET head_seq = {keep}, head_hash = '{last_kept}'")
    report = audit.verify_chain(session)
    assert not report.ok and report.first_bad_seq == keep + 1
    assert f"checkpoint was taken at event {head}" in report.problem
    # The export request itself appends its own record after the rewound head; the checkpoint still tells.
    result = offline(tmp_path, export(client))
    assert result.returncode == 1 and f"a checkpoint was taken at event {head}" in result.stdout


def test_exports_verify_offline_and_are_themselves_recorded(client, session, auditor, tmp_path):
    append(session, 25)
    jsonl = export(client)
    lines = [json.loads(line) for line in jsonl.splitlines()]
    assert lines[0]["record"] == "export" and lines[0]["through_head"] is True
    exported = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.exported")).all()
    assert len(exported) == 1 and exported[0].actor == f"user:{auditor.id}"
    assert [r["seq"] for r in lines if r["record"] == "event"][-1] == exported[0].seq
    ok = offline(tmp_path, jsonl)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"OK: {exported[0].seq} events verified" in ok.stdout

    csv_text = client.post("/admin/audit/export", data={"format": "csv"}).get_data(as_text=True)
    assert offline(tmp_path, csv_text, "export.csv").returncode == 0

    forged = jsonl.replace('"reason":"because"', '"reason":"nothing to see"', 1)
    broken = offline(tmp_path, forged)
    first_forged = next(r["seq"] for r in lines if r["record"] == "event" and r["reason"] == "because")
    assert broken.returncode == 1 and f"BROKEN at event {first_forged}:" in broken.stdout
    assert "altered" in broken.stdout

    cut = "\n".join(jsonl.splitlines()[:-3]) + "\n"
    truncated = offline(tmp_path, cut)
    assert truncated.returncode == 1 and "events at the end are missing" in truncated.stdout


def test_cli_verify_export_is_the_same_check(app, client, session, auditor, tmp_path):
    append(session, 5)
    path = tmp_path / "e.jsonl"
    path.write_text(export(client))
    runner = app.test_cli_runner()
    assert runner.invoke(args=["audit", "verify-export", str(path)]).exit_code == 0
    path.write_text(path.read_text().replace('"actor":"system:test"', '"actor":"user:1"', 1))
    result = runner.invoke(args=["audit", "verify-export", str(path)])
    assert result.exit_code == 1 and "BROKEN at event 1" in result.output


def test_both_verifiers_read_a_large_export_in_parts_and_refuse_a_bad_jobs_count(app, client, session, auditor,
                                                                                   tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(auditverify, "PARTS_FROM_BYTES", 0)  # every export counts as large here
    append(session, 9)
    path = tmp_path / "e.jsonl"
    path.write_text(export(client))
    # Read in two parts, not by the one-piece reading the parts fall back to.
    read = auditverify._read_in_parts(str(path), [], 2)
    assert read is not None and sum(isinstance(record, auditverify.CheckedRun) for record in read) == 2
    runner = app.test_cli_runner()
    assert auditverify.main(["auditverify.py", str(path), "--jobs", "2"]) == 0
    assert re.match(r"OK: \d+ events verified", capsys.readouterr().out)
    result = runner.invoke(args=["audit", "verify-export", str(path), "--jobs", "3"])
    assert result.exit_code == 0 and re.search(r"OK: \d+ events verified", result.output)
    for bad in (["--jobs", "0"], ["--jobs", "two"], ["--jobs"]):
        assert auditverify.main(["auditverify.py", str(path), *bad]) == 2
        error = capsys.readouterr().err
        assert ("--jobs takes the number of processes" in error) if len(bad) == 2 else \
            ("an option is missing its value" in error)
    assert runner.invoke(args=["audit", "verify-export", str(path), "--jobs", "0"]).exit_code == 2
    path.write_text(path.read_text().replace('"actor":"system:test"', '"actor":"user:1"', 1))
    assert auditverify.main(["auditverify.py", str(path), "--jobs", "2"]) == 1
    assert "BROKEN at event 1" in capsys.readouterr().out


def test_a_provider_history_export_verifies_each_event(client, session, auditor, tmp_path, make_provider):
    provider = make_provider()
    for i in range(4):
        audit.record(session, "system:test", "mine", "provider", provider.id, after={"i": i}, provider_id=provider.id)
        audit.record(session, "system:test", "other", "provider", 999, after={"i": i}, provider_id=999)
    session.commit()
    content = export(client, provider_id=str(provider.id))
    events = [json.loads(line) for line in content.splitlines() if '"record":"event"' in line]
    assert {e["action"] for e in events} == {"mine"}
    result = offline(tmp_path, content)
    assert result.returncode == 0 and "cannot prove that no event is missing" in result.stdout
    # A subset cannot prove completeness, and the script says so instead of claiming it.
    lines = content.splitlines()
    dropped = "\n".join(line for line in lines if f'"entity_id":"{provider.id}"' not in line or
                        '"after":{"i":1}' not in line) + "\n"
    assert "cannot prove that no event is missing" in offline(tmp_path, dropped).stdout
    flipped = content.replace('"contiguous":false', '"contiguous":true', 1)
    assert "contradicts its own filters" in offline(tmp_path, flipped).stdout


def test_the_provider_history_answers_who_verified_on_what_under_which_criteria(client, session, auditor,
                                                                                make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Harbor <b>Recovery</b>")
    member = provider_member(session, make_account, provider)
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)
    provider.verification_status = VerificationStatus.REVOKED
    session.commit()
    submission = in_review(session, researcher, submitted(session, member, provider, SubmissionKind.REINSTATEMENT, {}))
    assess_all(session, researcher, submission)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "looked fine", POLICY, None)
    review.sign_off(session, lead, submission, POLICY, None)
    session.commit()
    page = client.get(f"/admin/audit/provider/{provider.id}").get_data(as_text=True)
    basis = re.search(r'id="verification-basis">(.*?)</div></div>', page, re.S).group(1)
    assert researcher.name in basis and lead.name in basis and "catalogue <strong>v1</strong>" in basis
    assert "NO_PATIENT_BROKERING" in basis and "checked NO_PATIENT_BROKERING" in basis
    assert "Harbor <b>Recovery</b>" not in page
    history = page[page.index('id="provider-history"'):]
    for action in ("decision.recorded", "decision.signed_off", "verification.granted", "assessment.recorded"):
        assert action in history


def test_log_search_filters_and_pages(client, session, auditor, make_account):
    someone = make_account(Role.RESEARCHER, email="someone@example.org")
    for i in range(7):
        audit.record(session, someone, f"decision.test{i % 2}", "decision", i, provider_id=42)
    append(session, 3)

    def seqs(query):
        page = client.get(f"/admin/audit/?{query}").get_data(as_text=True)
        return [int(s) for s in re.findall(r'/admin/audit/event/(\d+)">', page)]

    assert len(seqs("actor=someone@example.org")) == 7
    assert len(seqs("action=decision.*")) == 7
    assert len(seqs("action=decision.test1")) == 3
    assert len(seqs("provider_id=42&entity_type=decision&entity_id=3")) == 1
    assert len(seqs("date_from=2000-01-01&date_to=2999-12-31")) >= 10
    assert seqs("date_from=2999-01-01") == []
    bad = client.get("/admin/audit/?date_from=2026-12-01&date_to=2026-11-01&actor=nobody@example.org")
    assert bad.status_code == 400 and "The end date is before the start date." in bad.get_data(as_text=True)
    first = seqs("")
    assert first == sorted(first, reverse=True)


def test_daily_verification_records_its_result_and_a_checkpoint(client, session, auditor):
    from tasks.sweeps import audit_verification

    append(session, 4)
    head = session.scalar(select(func.max(AuditEvent.seq)))
    assert audit_verification() is True
    run = session.scalar(select(AuditVerification))
    assert run.ok and run.checked == head
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="chain-status"' in page and f"{head} events" in page
    tamper(session, "UPDATE audit_event SET actor = 'user:7' WHERE seq = 2")
    assert audit_verification() is False
    page = client.get("/admin/").get_data(as_text=True)
    assert "BROKEN at event 2" in page
    assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 1


def test_checkpoints_cannot_be_changed(session):
    append(session, 2)
    audit.run_verification(session, "system:test")
    session.commit()
    from sqlalchemy.exc import DBAPIError
    for statement in ("UPDATE audit_checkpoint SET head_seq = 1", "DELETE FROM audit_checkpoint"):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
        session.rollback()


def test_expect_head_catches_a_cut_export_whose_header_was_rewritten(client, session, auditor, tmp_path):
    append(session, 6)
    content = export(client)
    records = [json.loads(line) for line in content.splitlines()]
    head = records[0]["head_seq"], records[0]["head_hash"]
    events = [r for r in records if r["record"] == "event"]
    kept = events[:-3]
    forged_header = {**records[0], "through_head": False,
                     "filters": {**records[0]["filters"], "to_seq": kept[-1]["seq"]}}
    forged = "\n".join(json.dumps(r) for r in [forged_header] + kept) + "\n"
    assert offline(tmp_path, forged).returncode == 0  # the file alone cannot tell
    path = tmp_path / "forged.jsonl"
    path.write_text(forged)
    result = subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(path),
                             "--expect-head", f"{head[0]}:{head[1]}"], capture_output=True, text=True)
    assert result.returncode == 1 and "before the head you expected" in result.stdout
    page = client.get("/admin/audit/").get_data(as_text=True)
    assert re.search(r'id="chain-head">\d+:[0-9a-f]{64}<', page)


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_an_export_file_is_judged_by_the_stretch_reading_exactly_as_line_by_line(client, session, auditor, tmp_path,
                                                                               monkeypatch, jobs):
    """The offline verifier checks a whole export's event lines in stretches (auditverify.read_jsonl_checked),
    in `jobs` parts side by side (every file split here, however small); whatever is done to the file, its
    verdict is the one the line-by-line reading gives."""
    monkeypatch.setattr(auditverify, "PARTS_FROM_BYTES", 0)
    append(session, 12)
    audit.run_verification(session, "system:test")  # a checkpoint in the export, held one by one
    session.commit()
    append(session, 6)
    lines = export(client).splitlines(keepends=True)
    events = [n for n, line in enumerate(lines) if '"record":"event"' in line]
    middle = events[len(events) // 2]

    def respelled(line: str) -> str:  # the same event, spelled with spaces: not the layout, still its content
        return json.dumps(json.loads(line), indent=None, separators=(", ", ": ")) + "\n"

    def with_line(at: int, new: str) -> list[str]:
        return lines[:at] + [new] + lines[at + 1:]

    cases = {
        "as exported": lines,
        "a changed action": with_line(middle, lines[middle].replace('{"action":"', '{"action":"re', 1)),
        "a changed hash": with_line(middle, re.sub(r'"hash":"[0-9a-f]{64}"', '"hash":"' + "0" * 64 + '"',
                                                   lines[middle], count=1)),
        "a line removed": lines[:middle] + lines[middle + 1:],
        "two lines swapped": lines[:middle] + [lines[middle + 1], lines[middle]] + lines[middle + 2:],
        "the last event removed": lines[:events[-1]] + lines[events[-1] + 1:],
        "an event respelled": with_line(middle, respelled(lines[middle])),
        "a line that is not JSON": with_line(middle, "not json\n"),
        "a blank line": lines[:middle] + ["\n"] + lines[middle:],
        "the checkpoint moved among the events": [line for line in lines if '"record":"checkpoint"' not in line][
            :middle] + [line for line in lines if '"record":"checkpoint"' in line] + [
            line for line in lines if '"record":"checkpoint"' not in line][middle:],
    }
    held = json.loads(lines[events[-3]])
    heads = {"no head": None, "a head in the last part": (held["seq"], held["hash"]),
             "a head that differs": (held["seq"], "f" * 64)}
    for name, content in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(content), encoding="utf-8")
        for head_name, head in heads.items():
            try:
                line_by_line = str(auditverify.verify_records(auditverify.read_jsonl(content), head))
            except ValueError as exc:
                line_by_line = f"refused: {exc}"
            try:
                stretches = str(auditverify.verify_file(str(path), head, jobs=jobs))
            except ValueError as exc:
                stretches = f"refused: {exc}"
            assert stretches == line_by_line, (name, head_name)
    verdict = partial(auditverify.verify_file, jobs=jobs)
    assert str(verdict(str(tmp_path / "as exported.jsonl"))).startswith("OK: ")
    assert str(verdict(str(tmp_path / "as exported.jsonl"), heads["a head in the last part"])).startswith("OK: ")
    assert "differs from the head you expected" in str(
        verdict(str(tmp_path / "as exported.jsonl"), heads["a head that differs"]))
    assert "BROKEN at event" in str(verdict(str(tmp_path / "a changed action.jsonl")))
    assert "BROKEN at event" in str(verdict(str(tmp_path / "two lines swapped.jsonl")))
    # Bytes that are not UTF-8, inside an event's hashed text, are refused as the text reading refuses them.
    broken = "".join(lines[:middle]).encode("utf-8") + lines[middle].encode("utf-8").replace(
        b'{"action":"', b'{"action":"\xff', 1) + "".join(lines[middle + 1:]).encode("utf-8")
    (tmp_path / "bytes.jsonl").write_bytes(broken)
    with pytest.raises(ValueError):
        auditverify.verify_file(str(tmp_path / "bytes.jsonl"), jobs=jobs)
