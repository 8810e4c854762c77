"""Recording check results in batches: one transaction for the results that finish together, each run with its
findings and audit events as if recorded alone; a batch that cannot be written is recorded one by one."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from backoffice.checks.result import CheckResult, FindingSpec
from backoffice.dispatch import send_work
from backoffice.extensions import db
from backoffice.models import (
    AuditEvent,
    CheckKind,
    CheckOutcome,
    CheckRun,
    Finding,
    FindingSeverity,
    FindingState,
    Work,
    WorkKind,
    WorkState,
    utcnow,
)
from backoffice.services import audit, findings, rechecks, work
from tasks import checks
from tasks.recording import Claiming, GroupClaimer, GroupRecorder, Pending
from tests.celery_helpers import start_celery  # noqa: F401 (fixture)
from tests.servers import html_page
from tests.test_recheck_worker import (  # noqa: F401 (fixtures)
    certificates,
    listed,
    registry,
    sites,
    wait_for_runs,
    worker_settings,
)


def _outcome(provider_id: int, result: CheckResult, window: str = "batch-1") -> rechecks.Outcome:
    return rechecks.Outcome(provider_id, CheckKind.WEBSITE, rechecks.run_key(provider_id, CheckKind.WEBSITE, window),
                            result, utcnow())


def _gone(severity=FindingSeverity.WARNING) -> CheckResult:
    return CheckResult(CheckOutcome.FAIL, "The website answered 404",
                       findings=[FindingSpec("website:http_404", severity, "Website answers 404", {"status": 404})])


def _events(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_a_batch_records_each_run_with_its_findings_and_events_in_one_commit(session, make_provider):
    new, again, cleared = make_provider(), make_provider(), make_provider()
    seen, _ = findings.open_or_update(session, "system:test", again, CheckKind.WEBSITE, "website:http_404",
                                      FindingSeverity.WARNING, "Website answers 404", {"status": 404})
    named, _ = findings.open_or_update(session, "system:test", cleared, CheckKind.WEBSITE, "website:not_named",
                                       FindingSeverity.WARNING, "Website does not name the provider", {})
    session.commit()

    runs = rechecks.record_many(session, lambda check: f"system:recheck-{check.value}", [
        _outcome(new.id, _gone()), _outcome(again.id, _gone()),
        _outcome(cleared.id, CheckResult(CheckOutcome.PASS, "The website names the provider"))],
        auto_suspend=False, cadence_days=30)
    session.commit()

    assert [(run.provider_id, run.outcome) for run in runs] == [
        (new.id, CheckOutcome.FAIL), (again.id, CheckOutcome.FAIL), (cleared.id, CheckOutcome.PASS)]
    opened = session.scalar(select(Finding).where(Finding.provider_id == new.id))
    assert (opened.subject_key, opened.state, opened.last_check_run_id) == ("website:http_404", FindingState.OPEN,
                                                                            runs[0].id)
    session.refresh(seen)
    session.refresh(named)
    assert seen.state == FindingState.OPEN and seen.last_check_run_id == runs[1].id
    assert named.state == FindingState.RESOLVED
    assert named.close_reason == f"check run {runs[2].id}: website no longer finds this"
    # Each run's events, by the check's actor, in the one commit of the batch (the chain stamps them together).
    batch = [_events(session, "finding.opened")[-1], _events(session, "finding.seen_again")[-1],
             _events(session, "finding.cleared")[-1]]
    assert [(e.entity_id, e.provider_id, e.actor) for e in batch] == [
        (str(opened.id), new.id, "system:recheck-website"), (str(seen.id), again.id, "system:recheck-website"),
        (str(named.id), cleared.id, "system:recheck-website")]
    assert len({e.occurred_at for e in batch}) == 1
    assert audit.verify_chain(session).ok


def test_a_batch_with_a_run_recorded_already_is_refused_whole(session, make_provider):
    first, second = make_provider(), make_provider()
    rechecks.record(session, "system:test", first.id, CheckKind.WEBSITE,
                    rechecks.run_key(first.id, CheckKind.WEBSITE, "batch-1"), _gone(), utcnow(),
                    auto_suspend=False, cadence_days=30)
    session.commit()
    runs, events = (session.scalar(select(func.count()).select_from(t)) for t in (CheckRun, AuditEvent))

    with pytest.raises(IntegrityError):
        rechecks.record_many(session, "system:test", [_outcome(second.id, _gone()), _outcome(first.id, _gone())],
                             auto_suspend=False, cadence_days=30)
    session.rollback()

    assert session.scalar(select(func.count()).select_from(CheckRun)) == runs
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert session.scalar(select(Finding).where(Finding.provider_id == second.id)) is None


def test_results_that_finish_together_are_written_in_batches_and_a_failed_batch_is_handed_back():
    recorder = GroupRecorder()
    batches: list[list[int]] = []
    start = threading.Barrier(12)

    def write(batch: list[Pending]) -> None:
        batches.append([one.work_id for one in batch])
        for one in batch:
            # A batch holding work 7 cannot be written: each of its tasks gets its result back to record alone.
            one.answer = None if any(o.work_id == 7 for o in batch) else f"written {one.work_id}"

    answers: dict[int, str | None] = {}

    def task(work_id: int) -> None:
        with recorder.checking() as hand_in:
            start.wait()
            time.sleep(0.01 * (work_id % 3))
            pending = Pending(work_id, _outcome(work_id, _gone()))
            answers[work_id] = recorder.submit(pending, hand_in, write, batch_size=5, wait_seconds=1).answer

    threads = [threading.Thread(target=task, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(n for batch in batches for n in batch) == list(range(12))
    assert max(len(batch) for batch in batches) == 5 and len(batches) < 12
    failed = next(batch for batch in batches if 7 in batch)
    assert answers == {n: None if n in failed else f"written {n}" for n in range(12)}


def test_alone_a_result_is_written_at_once():
    recorder = GroupRecorder()
    written: list[list[int]] = []
    started = time.monotonic()
    with recorder.checking() as hand_in:
        pending = recorder.submit(Pending(1, _outcome(1, _gone())), hand_in,
                                  lambda batch: written.append([one.work_id for one in batch]),
                                  batch_size=50, wait_seconds=5)
    # Nobody else was checking: no wait for a batch to fill.
    assert written == [[1]] and pending.answer is None and time.monotonic() - started < 1


def test_claims_that_start_together_are_made_in_batches_and_a_failed_batch_is_handed_back():
    claimer = GroupClaimer()
    batches: list[list[int]] = []
    start = threading.Barrier(12)

    def write(batch: list[Claiming]) -> None:
        batches.append([one.work_id for one in batch])
        for one in batch:
            # A batch holding work 7 cannot be claimed: each of its tasks claims its own row alone.
            one.answer = None if any(o.work_id == 7 for o in batch) else f"claimed {one.work_id}"

    answers: dict[int, str | None] = {}

    def task(work_id: int) -> None:
        with claimer.running():
            start.wait()
            time.sleep(0.01 * (work_id % 3))
            answers[work_id] = claimer.claim(Claiming(work_id), write, batch_size=5, wait_seconds=1).answer

    threads = [threading.Thread(target=task, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert sorted(n for batch in batches for n in batch) == list(range(12))
    assert max(len(batch) for batch in batches) == 5 and len(batches) < 12
    failed = next(batch for batch in batches if 7 in batch)
    assert answers == {n: None if n in failed else f"claimed {n}" for n in range(12)}


def test_alone_a_claim_is_made_at_once():
    claimer = GroupClaimer()
    claimed: list[list[int]] = []
    started = time.monotonic()
    with claimer.running():
        claimer.claim(Claiming(1), lambda batch: claimed.append([one.work_id for one in batch]), batch_size=50,
                      wait_seconds=5)
    # No other task running: no wait for a batch to fill.
    assert claimed == [[1]] and time.monotonic() - started < 1


@pytest.mark.parametrize("rows_a_message", [1, 10])  # each check its own task in Celery's threads; ten a message
def test_a_threaded_worker_records_checks_in_batches_and_a_second_delivery_changes_nothing(
        app, session, make_provider, start_celery, sites, registry, rows_a_message):  # noqa: F811
    def slow_page(path):
        time.sleep(0.3)  # the checks in flight finish together
        return html_page("<h1>Someone else</h1>")

    sites.routes["fine.clinic.test"] = slow_page
    providers = [listed(make_provider, f"Clinic {n}", f"https://fine.clinic.test:{sites.port}/{n}")
                 for n in range(10)]
    app.config["RECHECK_MESSAGE_ROWS"] = rows_a_message
    start_celery("worker", pool="threads", **worker_settings(sites, registry, RECHECK_RECORD_BATCH="4",
                                                             RECHECK_RECORD_WAIT_MS="500",
                                                             RECHECK_MESSAGE_ROWS=str(rows_a_message)))
    work.request_many(session, "system:test", [
        work.check_spec(WorkKind.SCHEDULED_CHECK, p.id, CheckKind.WEBSITE, "batch-1") for p in providers],
        work.Policy.from_config(app.config))
    session.commit()
    wait_for_runs(session, 10)
    time.sleep(0.5)
    session.rollback()

    assert set(session.scalars(select(CheckRun.outcome))) == {CheckOutcome.FAIL}
    assert session.scalar(select(func.count()).select_from(Work).where(Work.state == WorkState.DONE)) == 10
    # Claimed in batches too: the rows taken by one statement started at one time.
    assert len(set(session.scalars(select(Work.started_at)))) < 10
    opened = _events(session, "finding.opened")
    assert sorted(e.provider_id for e in opened) == sorted(p.id for p in providers)
    assert {session.get(Finding, int(e.entity_id)).subject_key for e in opened} == {"website:not_named"}
    # Fewer commits than checks: the chain stamps the events of one commit with one time.
    assert len({e.occurred_at for e in opened}) < 10
    assert audit.verify_chain(session).ok

    runs, events = (session.scalar(select(func.count()).select_from(t)) for t in (CheckRun, AuditEvent))
    done = session.scalar(select(Work).where(Work.target_id == str(providers[0].id)))
    assert send_work([(done.id, done.kind)]) == [done.id]
    time.sleep(2)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(CheckRun)) == runs
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    db.session.rollback()


def test_two_deliveries_of_one_row_starting_together_hand_the_row_to_one_of_them(app, session, make_provider):
    provider = listed(make_provider, "Clinic twice", "https://twice.clinic.test/")
    policy = work.Policy.from_config(app.config)
    row = work.request(session, "system:test", work.check_spec(WorkKind.SCHEDULED_CHECK, provider.id,
                                                               CheckKind.WEBSITE, "batch-1"), policy)
    session.commit()
    first, again = Claiming(row.id), Claiming(row.id)
    checks._claim_batch(policy, [first, again])
    claimed, recorded, subject = first.answer
    assert claimed is not None and claimed.id == row.id and not recorded and subject is not None
    assert again.answer == (None, False, None)  # "taken or done", as a claim of its own would find it
    session.rollback()
    assert session.get(Work, row.id).attempts == 1
