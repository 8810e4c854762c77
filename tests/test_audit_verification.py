"""Verifying the chain while others write to it, and the history of every verification run as auditors read it."""
from __future__ import annotations

import json
import re
import threading
from datetime import timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from backoffice import auditverify
from backoffice.models import AuditCheckpoint, AuditEvent, AuditVerification, Role
from backoffice.services import audit, audit_export
from tests.audit_helpers import append, tamper
from tests.concurrency import race
from tests.conftest import login

WRITERS = 3
VERIFIERS = 2
RUNS_PER_VERIFIER = 25


def test_verification_never_reports_a_broken_chain_while_writers_append(app, session):
    """Writers append in their own sessions while two verifiers run again and again, each taking checkpoints the
    other reads, and export the trail as an auditor would: no run, and no export, may be broken."""
    append(session, 30)
    finished = threading.Semaphore(0)
    runs, exports, written = [], [], []

    def work(own, job):
        kind, number = job
        if kind == "write":
            count = 0
            while not finished.acquire(blocking=False):
                audit.record(own, "system:test", "concurrent.write", "writer", number, after={"i": count})
                own.commit()
                count += 1
            finished.release()  # leave the signal for the other writers
            written.append(count)
            return
        try:
            for _ in range(RUNS_PER_VERIFIER):
                # Small batches: many statements per run, so commits land between them.
                run = audit.run_verification(own, "system:audit-verification", batch_size=16)
                own.commit()
                runs.append((run.ok, run.broken_seq, run.problem, run.checked))
                records = list(audit_export.records(own, audit_export.ExportRange(), "system:test"))
                own.rollback()
                exports.append(str(auditverify.verify_records(json.loads(json.dumps(r)) for r in records)))
        finally:
            if number == 1:
                finished.release()

    outcomes, errors = race(app, work, [("verify", 1), ("verify", 2)] + [("write", n) for n in range(WRITERS)])
    assert errors == [] and outcomes == ["done"] * (WRITERS + VERIFIERS)
    assert len(runs) == VERIFIERS * RUNS_PER_VERIFIER and sum(written) > 0
    assert [r for r in runs if not r[0]] == []
    assert [e for e in exports if not e.startswith("OK")] == []
    # The runs saw the chain grow under them, and each took its checkpoint at the head it verified.
    assert len({checked for _, _, _, checked in runs}) > 1
    session.rollback()
    for run in session.scalars(select(AuditVerification)):
        event = session.get(AuditEvent, run.checkpoint.head_seq)
        assert run.checkpoint.head_seq == run.checked and run.checkpoint.head_hash == event.hash

    # A real tamper is still caught, by the next run and by the command an operator runs.
    tamper(session, "UPDATE audit_event SET reason = 'rewritten' WHERE seq = 7")
    broken = audit.run_verification(session, "system:audit-verification")
    session.commit()
    assert (broken.ok, broken.broken_seq, broken.checkpoint) == (False, 7, None)
    assert broken.problem == "content does not match its hash: the event was altered"
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1 and "BROKEN at event 7" in result.output


def test_a_head_rewound_over_deleted_events_is_caught_after_concurrent_checkpoints(session):
    """Bounding the checkpoints by the newest one read first keeps every checkpoint taken before: one taken at a
    head that is then rewound still tells."""
    append(session, 6)
    for _ in range(3):
        audit.run_verification(session, "system:audit-verification")
        session.commit()
    head = session.scalar(select(func.max(AuditEvent.seq)))
    kept = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == head - 2))
    tamper(session, f"DELETE FROM audit_event WHERE seq > {head - 2}",
           f"UPDATE audit_chain_lock SET head_seq = {head - 2}, head_hash = '{kept}'")
    report = audit.verify_chain(session)
    assert not report.ok and f"a checkpoint was taken at event {head}" in report.problem


@pytest.fixture
def auditor(client, session, make_account):
    account = make_account(Role.AUDITOR, email="ann.auditor@example.org")
    account.name = "Ann Auditor"
    session.commit()  # as a served request would find it: nothing of the test's own left unwritten
    login(client, account)
    return account


def page_text(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.get_data(as_text=True)


def rows(page: str) -> list[list[str]]:
    """The verification table as an auditor reads it: each row's cells as text."""
    table = page[page.index('id="verification-runs"'):page.index("</table>", page.index('id="verification-runs"'))]
    found = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]:
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        found.append([" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in cells])
    return found


def test_verify_now_keeps_the_run_with_who_ran_it(client, session, auditor):
    append(session, 4)
    head = session.scalar(select(func.max(AuditEvent.seq)))
    page = page_text(client, "/admin/audit/verify")
    assert "Verify the whole chain now" in page and 'action="/admin/audit/verify"' in page
    assert session.scalar(select(func.count()).select_from(AuditVerification)) == 0  # reading it runs nothing

    response = client.post("/admin/audit/verify")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/audit/verifications/"
    run = session.scalar(select(AuditVerification))
    assert run.run_by == f"user:{auditor.id}" and run.ok and run.checked == head
    assert run.checkpoint.head_seq == head

    page = page_text(client, "/admin/audit/verifications/")
    assert f"Verification #{run.id}: OK, {head} events verified, through event {head}; a checkpoint was taken there." \
        in page
    [row] = rows(page)
    assert row[2:6] == ["Ann Auditor &lt;ann.auditor@example.org&gt;", str(head), "OK", ""]
    assert row[7] == f"event {head} {run.checkpoint.head_hash[:16]}…"
    finished = (run.finished_at if run.finished_at.tzinfo else run.finished_at.replace(tzinfo=timezone.utc))
    local = finished.astimezone(ZoneInfo("America/New_York"))  # the auditor chose no zone: DISPLAY_TIME_ZONE
    assert row[1] == f"{local.day} {local:%b %Y}, {local:%H:%M:%S} {local.tzname()}", row[1]  # no microseconds
    # The chain card names the person too, not user:N.
    assert "(Ann Auditor &lt;ann.auditor@example.org&gt;):" in page


def test_the_history_shows_every_run_newest_first_with_the_problem_in_words(app, client, session, auditor):
    from tasks.sweeps import audit_verification

    append(session, 4)
    head = session.scalar(select(func.max(AuditEvent.seq)))
    assert audit_verification() is True
    tamper(session, "UPDATE audit_event SET actor = 'user:7' WHERE seq = 2")
    assert app.test_cli_runner().invoke(args=["audit", "verify"]).exit_code == 1
    tamper(session, "DELETE FROM audit_event WHERE seq = 3")
    client.post("/admin/audit/verify")

    page = page_text(client, "/admin/audit/verifications/")
    assert "Verification #3: BROKEN at event 2: content does not match its hash: the event was altered " \
           "(1 events before it verified)." in page
    third, second, first = rows(page)
    assert third[2:] == ["Ann Auditor &lt;ann.auditor@example.org&gt;", "1", "BROKEN", "event 2",
                         "content does not match its hash: the event was altered", "none: the chain did not verify"]
    assert second[2:7] == ["the command line (flask audit verify)", "1", "BROKEN", "event 2",
                           "content does not match its hash: the event was altered"]
    assert first[2:6] == ["the daily verification job", str(head), "OK", ""]
    assert first[7].startswith(f"event {head} ")
    assert '<a href="/admin/audit/event/2">event 2</a>' in page
    assert "BROKEN at event 2" in page_text(client, "/admin/")  # the dashboard's card shows the newest run


def test_the_history_is_paged_by_run_and_the_menu_leads_to_it(client, session, auditor, make_account):
    append(session, 2)
    for _ in range(audit.VERIFICATIONS_PAGE_SIZE + 5):
        audit.run_verification(session, "system:audit-verification")
    session.commit()
    newest = session.scalar(select(func.max(AuditVerification.id)))
    first = page_text(client, "/admin/audit/verifications/")
    ids = [int(r[0]) for r in rows(first)]
    assert ids == list(range(newest, newest - audit.VERIFICATIONS_PAGE_SIZE, -1))
    older = re.search(r'href="(/admin/audit/verifications/\?before=(\d+))">Older runs<', first)
    assert older and int(older.group(2)) == ids[-1]
    second = page_text(client, older.group(1).replace("&amp;", "&"))
    assert [int(r[0]) for r in rows(second)] == list(range(ids[-1] - 1, 0, -1))
    assert "Older runs" not in second
    assert re.search(r'<a[^>]+href="/admin/audit/verifications/"[^>]*>\s*Verification runs', first)
    assert len(re.findall(r"<h\d[^>]*>\s*Verification runs", first)) == 1  # the heading once, not twice
    assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == audit.VERIFICATIONS_PAGE_SIZE + 5

    researcher = make_account(Role.RESEARCHER)
    other = client.application.test_client()
    login(other, researcher)
    assert other.get("/admin/audit/verifications/").status_code == 403


def test_verification_runs_cannot_be_changed(session):
    audit.run_verification(session, "system:audit-verification")
    session.commit()
    for statement in ("UPDATE audit_verification SET ok = false", "DELETE FROM audit_verification"):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
        session.rollback()
