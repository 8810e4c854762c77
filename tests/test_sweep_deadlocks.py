"""The re-check sweep and the verification-expiry sweep started together (as every worker start does) never
deadlock each other out of their work: no exception escapes, every due provider is claimed exactly once and
every lapsed verification is expired exactly once. Meaningful on PostgreSQL, whose row locks can deadlock;
on SQLite the write lock serialises the sweeps and the test checks the same outcome."""
from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text, update

from backoffice import unit_of_work
from backoffice.models import AuditEvent, ListingStatus, Provider, VerificationStatus, utcnow
from backoffice.services import audit, rechecks
from tasks.checks import recheck_sweep
from tasks.sweeps import verification_expiry_sweep
from tests.concurrency import own_session
from tests.conftest import BACKEND

# 20 rounds where deadlocks can happen; SQLite's single writer makes a few rounds enough to check the outcome.
ROUNDS = int(os.environ.get("SWEEP_ROUNDS", "20" if BACKEND == "postgresql" else "5"))
PROVIDERS = 150


def _asked_checks(session, after_id: int) -> tuple[Counter, int]:
    """(provider id, window) -> how many scheduled checks the sweeps asked for since work row `after_id` (each
    is a work row, sent to whichever broker runs), and the last row's id."""
    from backoffice.models import Work, WorkKind

    session.expire_all()
    rows = session.scalars(select(Work).where(Work.kind == WorkKind.SCHEDULED_CHECK, Work.id > after_id)
                           .order_by(Work.id)).all()
    return (Counter((int(row.target_id), row.params["window"]) for row in rows),
            rows[-1].id if rows else after_id)


def _mix_the_heap(session, ids: list[int]) -> None:
    """Rewrite every other row, so on PostgreSQL the table's physical order is no longer the id order: a
    statement that locks rows as it scans them then takes them in a different order from one that goes by id."""
    session.execute(update(Provider).where(Provider.id.in_(ids[::2])).values(phone="434-555-0100"),
                    execution_options={"synchronize_session": False})
    session.commit()


def test_two_sweeps_started_together_claim_and_expire_everything_once(app, session, make_provider, caplog):
    caplog.set_level(logging.INFO, logger="backoffice.unit_of_work")
    ids = [make_provider(listing_status=ListingStatus.LISTED).id for _ in range(PROVIDERS)]
    lapsed_ids = ids[::3]
    expired_events: Counter = Counter()
    last_work = 0
    for n in range(ROUNDS):
        now = utcnow()
        # Due at distinct moments each round (minutes apart, however long a round takes), so each round's windows
        # are its own: the same window's checks, still open as work, are not asked for twice.
        session.execute(update(Provider).where(Provider.id.in_(ids)).values(
            recheck_due_at=now - timedelta(days=1, minutes=n)), execution_options={"synchronize_session": False})
        session.execute(update(Provider).where(Provider.id.in_(lapsed_ids)).values(
            verification_status=VerificationStatus.VERIFIED, verified_until=now - timedelta(minutes=5)),
            execution_options={"synchronize_session": False})
        session.commit()
        _mix_the_heap(session, ids)
        windows = dict(session.execute(select(Provider.id, Provider.recheck_due_at).where(Provider.id.in_(ids))).all())

        barrier, results, crashes = threading.Barrier(2), {}, []

        def run(name, sweep):
            try:
                barrier.wait(timeout=20)  # noqa: B023 - the threads are joined in this round
                results[name] = sweep()  # noqa: B023 - the threads are joined in this round
            except BaseException as exc:  # noqa: BLE001 - nothing may escape a sweep
                crashes.append((name, exc))  # noqa: B023 - the threads are joined in this round

        threads = [threading.Thread(target=run, args=("recheck", recheck_sweep)),
                   threading.Thread(target=run, args=("expiry", verification_expiry_sweep))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert crashes == [], f"round {n}: {crashes!r}"
        assert results == {"recheck": PROVIDERS, "expiry": len(lapsed_ids)}, f"round {n}"

        sent, last_work = _asked_checks(session, last_work)
        expected = {(pid, rechecks.window_for(windows[pid], now)) for pid in ids}
        assert set(sent) == expected, f"round {n}: claimed {len(sent)} of {len(expected)}"
        assert set(sent.values()) == {len(rechecks.NETWORK_CHECKS)}, f"round {n}: a provider was claimed twice"
        session.expire_all()
        assert session.scalar(select(func.count()).select_from(Provider).where(
            Provider.id.in_(ids), Provider.recheck_due_at <= utcnow())) == 0
        assert session.scalar(select(func.count()).select_from(Provider).where(
            Provider.verification_status == VerificationStatus.VERIFIED, Provider.id.in_(lapsed_ids))) == 0
        for provider_id in lapsed_ids:
            expired_events[provider_id] += 1
    counted = Counter(dict(session.execute(
        select(AuditEvent.provider_id, func.count()).where(AuditEvent.action == "verification.expired")
        .group_by(AuditEvent.provider_id)).all()))
    assert counted == expired_events  # once per round each, never twice
    retries = [r.getMessage() for r in caplog.records if "lost a race" in r.getMessage()]
    print(f"\n{ROUNDS} rounds, {PROVIDERS} due providers, {len(lapsed_ids)} lapsed: {len(retries)} retried "
          "transactions")
    assert audit.verify_chain(session).ok
    if BACKEND == "postgresql":
        # The heap really was out of id order, as the test means it to be.
        order = [row[0] for row in session.execute(text("SELECT id FROM provider ORDER BY ctid"))]
        assert order != sorted(order)


@pytest.mark.skipif(BACKEND != "postgresql", reason="SQLite has one writer at a time: it cannot deadlock")
def test_a_transaction_that_loses_a_deadlock_is_rolled_back_and_run_again(app, make_provider, caplog):
    """Two units of work lock two providers in opposite orders: PostgreSQL refuses one with a deadlock; it
    arrives as LostRace, is rolled back whole and runs again once the other has committed."""
    caplog.set_level(logging.INFO, logger="backoffice.unit_of_work")
    first, second = make_provider().id, make_provider().id
    barrier = threading.Barrier(2)
    attempts: Counter = Counter()
    crashes = []

    def touch(own, provider_id: int, phone: str) -> None:
        own.execute(update(Provider).where(Provider.id == provider_id).values(phone=phone),
                    execution_options={"synchronize_session": False})

    def run(name: str, order: tuple[int, int]):
        def work():
            attempts[name] += 1
            touch(own, order[0], f"434-555-000{len(name)}")
            if attempts[name] == 1:
                barrier.wait(timeout=20)  # both hold their first row: each now wants the other's
            touch(own, order[1], f"434-555-000{len(name)}")
            return name

        try:
            with app.app_context(), own_session() as own:
                assert unit_of_work.retrying(own, work, what=name) == name
        except BaseException as exc:  # noqa: BLE001
            crashes.append(exc)

    threads = [threading.Thread(target=run, args=("one", (first, second))),
               threading.Thread(target=run, args=("other", (second, first)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert crashes == []
    assert sorted(attempts.values()) == [1, 2]  # the loser ran twice, the winner once
    assert any("lost a race (attempt 1 of 3)" in r.getMessage() for r in caplog.records)
