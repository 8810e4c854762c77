"""The sweep's checks several work rows a message (RECHECK_MESSAGE_ROWS): who gets which rows, a broker refusing
half-way, a transient error in one row, a second delivery. The real threaded worker running such messages:
tests/test_recheck_batches.py and the sweep end to end in tests/test_recheck_worker.py."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from backoffice import dispatch
from backoffice.extensions import db
from backoffice.models import CheckKind, CheckOutcome, CheckRun, ListingStatus, Work, WorkKind, WorkState
from backoffice.services import work
from tests.celery_helpers import start_celery  # noqa: F401 (fixture)
from tests.servers import LocalServer, html_page

CHECK = WorkKind.SCHEDULED_CHECK
NOW = WorkKind.RECHECK_NOW


def test_the_sweeps_checks_go_several_rows_a_message_and_everything_else_alone():
    items = [(n, CHECK) for n in range(1, 24)] + [(100, NOW), (101, WorkKind.SCREENING_BATCH)]
    messages = dispatch._messages(items, 10)
    # Each message as soon as it is full, what is left of the checks at the end.
    assert [(task, rows) for task, _, rows in messages] == [
        ("tasks.checks.run_checks", list(range(1, 11))), ("tasks.checks.run_checks", list(range(11, 21))),
        ("tasks.checks.run_check", [100]), ("tasks.checks.screen_batch", [101]),
        ("tasks.checks.run_checks", [21, 22, 23])]
    assert messages[0][1] == [list(range(1, 11))]  # one argument: the rows' ids
    # A lone check left over goes to the one-row task; a message of one row is the same as none.
    assert [(task, args) for task, args, _ in dispatch._messages([(1, CHECK), (2, NOW)], 10)] == [
        ("tasks.checks.run_check", [2]), ("tasks.checks.run_check", [1])]
    assert {task for task, _, _ in dispatch._messages(items, 1)} == {
        "tasks.checks.run_check", "tasks.checks.screen_batch"}
    assert len(dispatch._messages(items, 1)) == len(items)


class Refusing:
    """A broker client that takes `accept` messages, then refuses."""

    def __init__(self, accept: int):
        self.accept, self.sent = accept, []

    def apply_async(self, args=(), kwargs=None, **options):
        if len(self.sent) == self.accept:
            raise ConnectionError("the broker is down")
        self.sent.append(args)


def test_a_broker_refusing_half_way_leaves_the_rest_requested_for_the_reconciler(app, session, make_provider,
                                                                                monkeypatch, caplog):
    app.config["RECHECK_MESSAGE_ROWS"] = 4
    providers = [make_provider(public_name=f"Clinic {n}", listing_status=ListingStatus.LISTED) for n in range(10)]
    broker = Refusing(accept=1)
    monkeypatch.setattr(dispatch, "_task", lambda name: broker)
    rows = work.request_many(session, "system:test", [
        work.check_spec(CHECK, p.id, CheckKind.WEBSITE, "w1") for p in providers], work.Policy.from_config(app.config))
    ids = [row.id for row in rows]
    session.commit()  # sent once it commits: the first message of four rows, then the broker refuses
    assert broker.sent == [[ids[:4]]]
    session.rollback()
    states = dict(session.execute(select(Work.id, Work.state)).all())
    assert [states[i] for i in ids] == [WorkState.SENT] * 4 + [WorkState.REQUESTED] * 6
    assert f"did not accept work {ids[4]} (ConnectionError: the broker is down); it and 5 more are kept as " \
           "requested and will be sent by the reconciler" in caplog.text


@pytest.fixture
def sites():
    """A fine site, a site that names someone else, and one too slow to answer within the outbound timeout."""
    def answer(path, headers):
        if path.startswith("/slow"):
            time.sleep(1.5)
            return html_page("late")
        return html_page("Fine Clinic" if path.startswith("/fine") else "Someone else")

    server = LocalServer(answer)
    yield server
    server.close()


def test_a_transient_error_in_one_row_retries_that_row_alone_and_the_others_are_recorded(make_app, make_provider,
                                                                                          sites, monkeypatch):
    app = make_app(CELERY_TASK_ALWAYS_EAGER=True, OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS=True, CHECK_MAX_RETRIES=2,
                   CHECK_RETRY_BACKOFF_SECONDS=0, OUTBOUND_TOTAL_TIMEOUT_SECONDS=1, OUTBOUND_CONNECT_TIMEOUT_SECONDS=1,
                   OUTBOUND_PER_HOST_INTERVAL_MS=1)
    with app.app_context():
        from tasks.checks import run_checks

        providers = {name: make_provider(public_name=f"{name.title()} Clinic", website=sites.url(path=f"/{name}"),
                                         listing_status=ListingStatus.LISTED)
                     for name in ("fine", "slow", "renamed")}
        policy = work.Policy.from_config(app.config)
        broker = Refusing(accept=10)
        monkeypatch.setattr(dispatch, "_task", lambda name: broker)
        rows = {name: work.request(db.session, "system:test",
                                   work.check_spec(CHECK, p.id, CheckKind.WEBSITE, "w1"), policy)
                for name, p in providers.items()}
        db.session.commit()
        ids = [row.id for row in rows.values()]
        assert broker.sent == [[ids]]  # one message for the three
        monkeypatch.undo()

        answer = run_checks.apply(args=broker.sent[0]).get()
        # The slow one's two retries ran as messages of its own (eagerly here) before it was recorded.
        assert answer == {"warn": 1, "retrying": 1, "fail": 1}  # plain HTTP is a warning
        assert sum(1 for path in sites.hits if path.startswith("/slow")) == 3  # the first try and two retries
        runs = {run.provider_id: run for run in db.session.scalars(select(CheckRun))}
        assert runs[providers["fine"].id].outcome == CheckOutcome.WARN
        assert runs[providers["renamed"].id].outcome == CheckOutcome.FAIL
        slow = runs[providers["slow"].id]
        assert slow.outcome == CheckOutcome.ERROR and "after 2 retries" in slow.summary
        for row in rows.values():
            db.session.refresh(row)
            assert row.state == WorkState.DONE and row.attempts == 1  # retries are not lost attempts

        # The message delivered again: every row is done, nothing is fetched or recorded twice.
        hits = len(sites.hits)
        assert run_checks.apply(args=[ids]).get() == {"taken or done": 3}
        assert len(sites.hits) == hits
        assert db.session.scalar(select(func.count()).select_from(CheckRun)) == 3


def test_a_row_that_stops_on_an_error_leaves_the_others_to_finish(app, monkeypatch, caplog):
    from tasks import checks

    app.config["CELERY_TASK_ALWAYS_EAGER"] = True
    done = []

    def run(delivery, work_id):
        if work_id == 2:
            raise RuntimeError("the database went away")
        done.append(work_id)
        return "pass"

    monkeypatch.setattr(checks, "_run_check", run)
    assert checks.run_checks.apply(args=[[1, 2, 3]]).get() == {"pass": 2, "stopped on an error": 1}
    assert done == [1, 3]
    assert "work 2: its check stopped on an error; the reconciler sends it again once its lease runs out" in caplog.text


def test_rows_sent_again_by_the_reconciler_go_one_a_message(app, session, make_provider, monkeypatch):
    from datetime import timedelta

    from backoffice.models import utcnow

    app.config["RECHECK_MESSAGE_ROWS"] = 4
    providers = [make_provider(public_name=f"Clinic {n}", listing_status=ListingStatus.LISTED) for n in range(5)]
    down = Refusing(accept=0)
    monkeypatch.setattr(dispatch, "_task", lambda name: down)
    policy = work.Policy.from_config(app.config)
    rows = work.request_many(session, "system:test", [
        work.check_spec(CHECK, p.id, CheckKind.WEBSITE, "w1") for p in providers], policy)
    ids = [row.id for row in rows]
    session.commit()  # the broker refuses: every row stays requested
    back = Refusing(accept=100)
    monkeypatch.setattr(dispatch, "_task", lambda name: back)
    done = work.reconcile(session, policy, now=utcnow() + timedelta(seconds=policy.send_grace_seconds + 1))
    session.commit()
    assert sorted(i for i, _ in done.resent) == ids
    # Each alone: a row that keeps killing its worker takes no other row down with it.
    assert sorted(back.sent) == [[i] for i in ids]


def test_in_a_real_worker_a_transient_error_retries_its_row_in_a_message_of_its_own(app, session, make_provider,
                                                                                     start_celery, sites):
    from tests.test_recheck_worker import wait_for_runs

    start_celery("worker", pool="threads", OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS="1", CHECK_MAX_RETRIES="1",
                 CHECK_RETRY_BACKOFF_SECONDS="1", OUTBOUND_TOTAL_TIMEOUT_SECONDS="1",
                 OUTBOUND_CONNECT_TIMEOUT_SECONDS="1", OUTBOUND_PER_HOST_INTERVAL_MS="1")
    fine = make_provider(public_name="Fine Clinic", website=sites.url(path="/fine"), listing_status=ListingStatus.LISTED)
    slow = make_provider(public_name="Slow Clinic", website=sites.url(path="/slow"), listing_status=ListingStatus.LISTED)
    rows = work.request_many(session, "system:recheck-sweep", [
        work.check_spec(CHECK, p.id, CheckKind.WEBSITE, "w1") for p in (fine, slow)], work.Policy.from_config(app.config))
    ids = [row.id for row in rows]
    session.commit()  # one message for both
    wait_for_runs(session, 2, timeout=60)
    session.rollback()
    runs = {run.provider_id: run for run in session.scalars(select(CheckRun))}
    assert runs[fine.id].outcome == CheckOutcome.WARN  # plain HTTP
    assert runs[slow.id].outcome == CheckOutcome.ERROR and "after 1 retries" in runs[slow.id].summary
    assert sum(1 for path in sites.hits if path.startswith("/slow")) == 2  # the first try and its one retry
    # The retry counted as the task's own, not as a lost attempt; the quick row was not held back by it.
    assert {row.id: (row.state, row.attempts) for row in session.scalars(select(Work).where(Work.id.in_(ids)))} == {
        ids[0]: (WorkState.DONE, 1), ids[1]: (WorkState.DONE, 1)}
    assert runs[fine.id].started_at < runs[slow.id].started_at
    db.session.rollback()
