"""Requested work as rows: recorded with the change, sent after commit, claimed once, finished once, reconciled."""
from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from backoffice.extensions import db
from backoffice.models import AuditEvent, CheckKind, CheckOutcome, CheckRun, Work, WorkKind, WorkState, utcnow
from backoffice.services import work
from backoffice.services.errors import Conflict, InvalidTransition
from tasks.celery_app import TASK_MODULES, beat_schedule
from tests.celery_helpers import queued_messages
from tests.test_exclusions import HEADER

POLICY = work.Policy(send_grace_seconds=10, sent_lease_seconds=3600, run_lease_seconds=300, max_attempts=3)


@pytest.fixture(autouse=True)
def empty_queue(app):
    yield
    with app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])


def ask(session, provider_id: int = 1, window: str = "w1", check: CheckKind = CheckKind.WEBSITE) -> Work:
    return work.request(session, "system:test", work.check_spec(WorkKind.RECHECK_NOW, provider_id, check, window),
                        POLICY)


def reread(session, row: Work) -> Work:
    session.rollback()
    return session.get(Work, row.id, populate_existing=True)


def age(session, row: Work, seconds: int) -> None:
    """Move the row's lease into the past, as if `seconds` had gone by."""
    session.execute(update(Work).where(Work.id == row.id)
                    .values(lease_expires_at=utcnow() - timedelta(seconds=seconds)))
    session.commit()


def test_work_is_sent_only_when_the_asking_transaction_commits_then_marked_sent(app, session, make_provider):
    provider = make_provider()
    row = ask(session, provider.id)
    session.rollback()
    assert session.scalar(select(Work)) is None and queued_messages(app) == 0

    row = ask(session, provider.id)
    assert row.state == WorkState.REQUESTED
    session.commit()
    assert queued_messages(app) == 1
    row = reread(session, row)
    assert row.state == WorkState.SENT and row.sent_at is not None
    assert row.params == {"check": "website", "window": "w1"} and row.idempotency_key == f"website:{provider.id}:w1"


def test_asking_again_while_the_work_is_open_gives_the_open_row(app, session, make_provider):
    provider = make_provider()
    first = ask(session, provider.id)
    session.commit()
    again = ask(session, provider.id)
    session.commit()
    assert again.id == first.id and session.scalar(select(text("count(*)")).select_from(Work)) == 1
    assert queued_messages(app) == 1


def test_a_second_delivery_finds_the_work_taken_and_a_row_done_twice_changes_nothing(app, session, make_provider):
    row = ask(session, make_provider().id)
    session.commit()
    taken = work.claim(session, row.id, POLICY)
    session.commit()
    assert taken.state == WorkState.RUNNING and taken.attempts == 1 and taken.lease_expires_at > utcnow()
    assert work.claim(session, row.id, POLICY) is None  # another delivery while the lease holds
    assert work.complete(session, row.id) is True
    session.commit()
    finished = reread(session, row).finished_at
    assert work.complete(session, row.id) is False
    assert work.claim(session, row.id, POLICY) is None
    session.commit()
    row = reread(session, row)
    assert (row.state, row.attempts, row.finished_at) == (WorkState.DONE, 1, finished)


def test_a_check_whose_run_an_earlier_delivery_recorded_is_finished_without_being_taken(app, session, make_provider):
    provider = make_provider()
    recorded, fresh = ask(session, provider.id, "w1"), ask(session, provider.id, "w2")
    session.commit()
    session.add(CheckRun(provider_id=provider.id, check=CheckKind.WEBSITE, outcome=CheckOutcome.PASS, summary="ok",
                         evidence={}, idempotency_key=recorded.idempotency_key, started_at=utcnow(),
                         finished_at=utcnow(), duration_ms=1))
    session.commit()

    assert work.claim(session, recorded.id, POLICY, unless_recorded=True) is None
    assert work.complete_if_recorded(session, recorded.id) is True
    assert work.complete_if_recorded(session, fresh.id) is False  # nothing recorded for it: left as it was
    session.commit()
    done = reread(session, recorded)
    assert (done.state, done.attempts) == (WorkState.DONE, 0) and done.finished_at is not None
    assert work.complete_if_recorded(session, recorded.id) is False  # done once, changes nothing the second time
    taken = work.claim(session, fresh.id, POLICY, unless_recorded=True)
    assert taken is not None and (taken.state, taken.attempts) == (WorkState.RUNNING, 1)
    assert taken.params == {"check": "website", "window": "w2"}


def test_claiming_many_takes_only_the_free_rows_and_finishes_only_the_recorded(app, session, make_provider):
    provider = make_provider()
    free, held, recorded, done, expired = (ask(session, provider.id, w) for w in ("w1", "w2", "w3", "w4", "w5"))
    session.commit()
    assert work.claim(session, held.id, POLICY) is not None and work.claim(session, expired.id, POLICY) is not None
    work.complete(session, done.id)
    session.add(CheckRun(provider_id=provider.id, check=CheckKind.WEBSITE, outcome=CheckOutcome.PASS, summary="ok",
                         evidence={}, idempotency_key=recorded.idempotency_key, started_at=utcnow(),
                         finished_at=utcnow(), duration_ms=1))
    session.commit()
    age(session, expired, 1)  # its worker stopped: the lease ran out

    ids = [free.id, held.id, recorded.id, done.id, expired.id]
    taken = work.claim_many(session, ids, POLICY)
    assert sorted(taken) == [free.id, expired.id]
    assert (taken[free.id].state, taken[free.id].attempts) == (WorkState.RUNNING, 1)
    assert taken[expired.id].attempts == 2 and taken[free.id].lease_expires_at > utcnow()
    assert taken[free.id].params == {"check": "website", "window": "w1"}
    assert work.complete_many_if_recorded(session, [i for i in ids if i not in taken]) == {recorded.id}
    session.commit()
    assert [reread(session, row).state for row in (held, recorded, done)] == [WorkState.RUNNING, WorkState.DONE,
                                                                              WorkState.DONE]
    assert work.claim_many(session, ids, POLICY) == {}  # a second delivery of them all takes nothing


def test_marking_sent_late_leaves_a_row_a_worker_has_taken(app, session, make_provider):
    row = ask(session, make_provider().id)
    session.commit()
    work.claim(session, row.id, POLICY)
    session.commit()
    # The worker was quicker than the web process's bookkeeping after the send.
    assert work.mark_sent(session, [row.id], POLICY) == 0
    session.commit()
    assert reread(session, row).state == WorkState.RUNNING


def test_the_reconciler_sends_again_what_was_never_sent_and_what_a_worker_dropped(app, session, make_provider):
    provider = make_provider()
    unsent, dropped, fresh, running = (ask(session, provider.id, f"w{n}") for n in range(4))
    session.commit()
    # The broker never had `unsent` (it was down): back to requested, as the after-commit send left it.
    session.execute(update(Work).where(Work.id == unsent.id).values(state=WorkState.REQUESTED, sent_at=None))
    session.commit()
    for row in (dropped, running):
        work.claim(session, row.id, POLICY)
    session.commit()
    age(session, unsent, 11)
    age(session, dropped, 1)
    with app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])

    done = work.reconcile(session, POLICY)
    assert sorted(i for i, _ in done.resent) == sorted([unsent.id, dropped.id]) and done.failed == []
    assert queued_messages(app) == 0  # nothing leaves before the commit
    session.commit()
    assert queued_messages(app) == 2
    assert reread(session, unsent).state == WorkState.SENT
    dropped = reread(session, dropped)
    assert dropped.state == WorkState.SENT and "The worker stopped before finishing it" in dropped.last_error
    assert reread(session, fresh).state == WorkState.SENT  # its lease holds: untouched
    assert reread(session, running).state == WorkState.RUNNING
    assert work.reconcile(session, POLICY).resent == []  # a second pass right after finds nothing due


def test_work_a_worker_keeps_dropping_is_failed_after_its_last_attempt_with_the_reason(app, session, make_provider):
    provider = make_provider()
    row = ask(session, provider.id)
    session.commit()
    for attempt in range(POLICY.max_attempts):
        assert work.claim(session, row.id, POLICY) is not None
        session.commit()
        age(session, row, 1)
        passed = work.reconcile(session, POLICY)
        session.commit()
        assert (row.id in passed.failed) == (attempt == POLICY.max_attempts - 1)
    row = reread(session, row)
    assert row.state == WorkState.FAILED and row.attempts == 3
    assert row.last_error.startswith("A worker took it 3 times and never finished it within its lease (300 s)")
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "work.failed"))
    assert (event.entity_id, event.provider_id, event.actor) == (str(row.id), provider.id, "system:work-reconciler")
    assert work.reconcile(session, POLICY).failed == []  # failed is not open: the reconciler leaves it


def test_failed_work_is_retried_by_a_researcher_once_and_audited(app, session, make_provider, make_account):
    researcher = make_account()
    row = ask(session, make_provider().id)
    session.commit()
    with pytest.raises(InvalidTransition, match="Only failed work can be retried; this is queued for a worker"):
        work.retry(session, researcher, reread(session, row), POLICY)
    session.execute(update(Work).where(Work.id == row.id).values(state=WorkState.FAILED, attempts=3,
                                                                 last_error="gone"))
    session.commit()
    work.retry(session, researcher, reread(session, row), POLICY)
    session.commit()
    row = reread(session, row)
    assert (row.state, row.attempts) == (WorkState.SENT, 0)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "work.retried"))
    assert event.actor == f"user:{researcher.id}" and event.before == {"state": "failed", "attempts": 3}


def test_a_retry_refuses_while_the_same_work_is_already_open_again(app, session, make_provider, make_account):
    provider = make_provider()
    row = ask(session, provider.id)
    session.execute(update(Work).where(Work.id == row.id).values(state=WorkState.FAILED))
    session.commit()
    ask(session, provider.id)  # asked for again meanwhile
    session.commit()
    with pytest.raises(Conflict, match="already waiting or running"):
        work.retry(session, make_account(), reread(session, row), POLICY)
    assert reread(session, row).state == WorkState.FAILED


def test_counts_and_the_oldest_open_age_for_a_metrics_collector(app, session, make_provider):
    provider = make_provider()
    assert work.oldest_open_age(session) is None
    first, second = ask(session, provider.id, "a"), ask(session, provider.id, "b")
    session.commit()
    work.claim(session, first.id, POLICY)
    session.execute(update(Work).where(Work.id == second.id).values(created_at=utcnow() - timedelta(minutes=5)))
    session.commit()
    assert work.counts_by_kind_and_state(session) == {("recheck_now", "running"): 1, ("recheck_now", "sent"): 1}
    assert 299 < work.oldest_open_age(session) < 320


def test_the_reconciler_reads_the_partial_index_of_open_work(app, session):
    statement = select(Work.id).where(work.OPEN, Work.lease_expires_at < utcnow()).order_by(Work.lease_expires_at)
    sql = str(statement.compile(db.engine, compile_kwargs={"literal_binds": True}))
    if db.engine.dialect.name == "sqlite":
        plan = " ".join(str(r) for r in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
    else:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(str(r) for r in session.execute(text(f"EXPLAIN {sql}")))
    assert "ix_work_open_lease" in plan, plan


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_import_with_the_broker_unreachable_keeps_its_screening_and_says_so(make_app, tmp_path):
    """No Redis server needed: nothing listens on the port, as when Redis is down."""
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    leie = tmp_path / "2601EXCL.csv"
    leie.write_text(HEADER + '"","","","GONE CLINIC INC","","","","0000000000","","","RICHMOND","VA","","1128b7",'
                    '"20250115","00000000","00000000","",""\n')
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["import", "leie", str(leie)])
        assert result.exit_code == 0, result.output
        assert ("1 records added, 0 already known, 0 duplicate lines skipped. Screening of listed providers is "
                "recorded, but the worker queue cannot be reached just now; it will start by itself when the queue "
                "is reachable again.") in result.output
        row = db.session.scalar(select(Work))
        assert (row.kind, row.state, row.params) == (WorkKind.IMPORT_SCREENING, WorkState.REQUESTED,
                                                     {"window": "import-1"})
        db.session.rollback()


def test_beat_runs_the_reconciler_every_minute(app):
    entry = beat_schedule(app.config)["work-reconciler"]
    assert entry == {"task": "tasks.work.reconcile", "schedule": timedelta(seconds=60)}
    assert "tasks.work" in TASK_MODULES  # the worker loads it


def test_a_late_worker_finishing_work_the_reconciler_failed_leaves_it_failed(app, session, make_provider):
    row = ask(session, make_provider().id)
    session.commit()
    session.execute(update(Work).where(Work.id == row.id).values(state=WorkState.FAILED, last_error="given up"))
    session.commit()
    assert work.complete(session, row.id) is False
    assert work.complete_if_recorded(session, row.id) is False
    session.commit()
    failed = reread(session, row)
    assert (failed.state, failed.last_error, failed.finished_at) == (WorkState.FAILED, "given up", None)
