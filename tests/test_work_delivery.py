"""Nothing asked for is lost when a part fails: a real worker on each real broker, killed or cut off.

Each test names its broker: the embedded one (kombu's filesystem transport, which drops a message once a
worker has taken it) and Redis (REDIS_URL, which gives an unacknowledged message back after the visibility
timeout), and a Redis that cannot be reached until the test opens its port.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from backoffice.dispatch import after_commit
from backoffice.extensions import db
from backoffice.models import AuditEvent, CheckKind, CheckRun, Finding, Role, Work, WorkKind, WorkState, utcnow
from backoffice.services import audit, work
from tasks.work import reconcile
from tests.celery_helpers import Forwarder, start_celery  # noqa: F401 (fixture)
from tests.conftest import login
from tests.page_text import visible_text
from tests.servers import html_page
from tests.test_recheck_worker import certificates, listed, registry, sites, wait_for_runs, worker_settings  # noqa: F401

REDIS_URL = os.environ.get("REDIS_URL")
NEEDS_REDIS = pytest.mark.skipif(not REDIS_URL, reason="needs a Redis server: set REDIS_URL")
BROKERS = ["embedded", pytest.param("redis", marks=NEEDS_REDIS)]


# A check held only a few seconds, so a killed worker's check comes back soon: the visibility timeout and the work
# lease must outlast a check's time limit (the start-up refuses them otherwise), so the limit and the fetch
# timeouts are shortened with them.
SHORT_HOLD = {"BROKER_VISIBILITY_TIMEOUT_SECONDS": 6, "WORK_LEASE_SECONDS": 6, "CHECK_TIME_LIMIT_SECONDS": 6,
              "CHECK_MAX_RETRIES": 0, "OUTBOUND_TOTAL_TIMEOUT_SECONDS": 4, "OUTBOUND_CONNECT_TIMEOUT_SECONDS": 2}


@pytest.fixture
def app(request, make_app):
    """The app on the broker the test names; `unreachable` is a Redis address whose port is closed until
    app.forwarder.open() forwards it to REDIS_URL's server."""
    broker = getattr(request, "param", "embedded")
    # Rate limits count in memory here: how sign-in copes with Redis down is the rate limiter's own test.
    settings = {"RATELIMIT_STORAGE_URI": "memory://", "WORK_SEND_GRACE_SECONDS": 1}
    forwarder = None
    if broker == "embedded":
        built = make_app(REDIS_URL="", **settings)
    elif broker == "redis":
        built = make_app(REDIS_URL=REDIS_URL, **settings, **SHORT_HOLD)
    else:
        upstream = urlsplit(REDIS_URL)
        forwarder = Forwarder((upstream.hostname, upstream.port or 6379))
        built = make_app(REDIS_URL=f"redis://127.0.0.1:{forwarder.port}{upstream.path}", **settings)
    built.forwarder = forwarder
    with built.app_context():
        yield built
        db.session.rollback()
    if forwarder is not None:
        forwarder.close()


def work_rows(session, provider) -> dict[str, Work]:
    session.rollback()
    rows = session.scalars(select(Work).where(Work.target_type == "provider", Work.target_id == str(provider.id)))
    return {row.params["check"]: row for row in rows}


def wait_until(condition, timeout: float = 60, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def held_first(release: threading.Event, answered: list, heading: str):
    """A site whose first answer waits for `release` (the first worker dies meanwhile); every answer is `heading`."""
    def answer(path):
        answered.append(path)
        if len(answered) == 1:
            release.wait(20)
        return html_page(heading)

    return answer


def lease_ran_out_or_redone(row: Work) -> bool:
    if row.state == WorkState.DONE:
        return True
    return row.lease_expires_at is not None and row.lease_expires_at < utcnow()


def run_reconciler_once(session) -> None:
    """One reconciler pass, sent to the worker through the broker as beat sends it."""
    after_commit(session, reconcile)
    session.commit()


def recheck_now(client, provider) -> str:
    page = client.post(f"/admin/finding-work/provider/{provider.id}/recheck", follow_redirects=True)
    assert page.status_code == 200
    return " ".join(visible_text(page.get_data(as_text=True)).split())


@pytest.mark.parametrize("app", BROKERS, indirect=True)
def test_a_worker_killed_during_a_requested_check_does_it_exactly_once_after_one_reconciler_pass(
        app, client, session, make_account, make_provider, start_celery, sites, registry):
    release, answered = threading.Event(), []
    # The provider's name is gone: one finding.
    sites.routes["slow.clinic.test"] = held_first(release, answered, "Under new management")
    provider = listed(make_provider, "Slow But Fine Clinic", f"https://slow.clinic.test:{sites.port}/")
    settings = worker_settings(sites, registry, **{key: str(value) for key, value in SHORT_HOLD.items()})
    first = start_celery("worker", **settings)
    login(client, make_account(Role.RESEARCHER))
    assert "Re-check queued" in recheck_now(client, provider)
    wait_until(lambda: answered, 30, "the worker starting the website check")
    first.kill()
    release.set()
    website = work_rows(session, provider)["website"]
    assert (website.state, website.attempts) == (WorkState.RUNNING, 1)
    assert session.scalar(select(func.count()).select_from(CheckRun)) == 0

    start_celery("worker", **settings)
    # The lease and the visibility timeout run out together: Redis may give the message back to the new worker,
    # which redoes the check at once (its lease gone, the row then done), or the reconciler pass below does.
    wait_until(lambda: lease_ran_out_or_redone(work_rows(session, provider)["website"]), 30, "the lease running out")
    run_reconciler_once(session)
    wait_for_runs(session, 3, timeout=60)
    time.sleep(5)  # past the lease and the visibility timeout: nothing else comes back
    session.rollback()

    runs = session.scalars(select(CheckRun).where(CheckRun.provider_id == provider.id)).all()
    assert sorted(r.check.value for r in runs) == ["exclusion", "npi", "website"]  # one run each
    assert len(answered) == 2  # the killed attempt and exactly one redo
    rows = work_rows(session, provider)
    assert {check: row.state for check, row in rows.items()} == dict.fromkeys(rows, WorkState.DONE)
    assert rows["website"].attempts == 2 and rows["npi"].attempts == 1
    findings = session.scalars(select(Finding).where(Finding.provider_id == provider.id)).all()
    subjects = Counter(f.subject_key for f in findings)
    assert subjects["website:not_named"] == 1 and max(subjects.values()) == 1  # at most one finding each
    actions = Counter(session.scalars(select(AuditEvent.action).where(AuditEvent.provider_id == provider.id)))
    assert actions["recheck.requested"] == 1 and actions["finding.opened"] == len(findings)
    website_events = session.scalars(select(AuditEvent).where(
        AuditEvent.entity_type == "finding",
        AuditEvent.entity_id.in_([str(f.id) for f in findings if f.subject_key == "website:not_named"]))).all()
    assert [e.action for e in website_events] == ["finding.opened"]  # one audit event for the redone check
    db.session.rollback()


@pytest.mark.parametrize("app", BROKERS, indirect=True)
def test_a_worker_killed_during_a_message_of_several_sweep_checks_does_each_exactly_once(
        app, session, make_provider, start_celery, sites, registry):
    release, answered = threading.Event(), []
    sites.routes["slow.clinic.test"] = held_first(release, answered, "Slow But Fine Clinic")
    sites.routes["fine.clinic.test"] = lambda path: html_page(f"Clinic {path.strip('/')}")
    held = listed(make_provider, "Slow But Fine Clinic", f"https://slow.clinic.test:{sites.port}/")
    others = [listed(make_provider, f"Clinic {n}", f"https://fine.clinic.test:{sites.port}/{n}") for n in (1, 2)]
    settings = worker_settings(sites, registry, **{key: str(value) for key, value in SHORT_HOLD.items()})
    first = start_celery("worker", **settings)
    policy = work.Policy.from_config(app.config)
    rows = work.request_many(session, "system:recheck-sweep", [
        work.check_spec(WorkKind.SCHEDULED_CHECK, p.id, CheckKind.WEBSITE, "sweep-1") for p in [held, *others]], policy)
    ids = [row.id for row in rows]
    session.commit()  # one message carries the three rows
    wait_for_runs(session, 2, timeout=30)  # the two quick ones are recorded while the slow one waits
    first.kill()
    release.set()
    states = {row.id: (row.state, row.attempts) for row in session.scalars(select(Work).where(Work.id.in_(ids)))}
    assert states == {ids[0]: (WorkState.RUNNING, 1), ids[1]: (WorkState.DONE, 1), ids[2]: (WorkState.DONE, 1)}

    start_celery("worker", **settings)
    # The message may come back through Redis's visibility timeout as the lease runs out, or the reconciler sends
    # the unfinished row again alone.
    wait_until(lambda: lease_ran_out_or_redone(session.get(Work, ids[0])), 30, "the lease running out")
    run_reconciler_once(session)
    wait_for_runs(session, 3, timeout=60)
    time.sleep(5)  # past the lease and the visibility timeout: nothing else comes back
    session.rollback()
    runs = session.scalars(select(CheckRun)).all()
    assert sorted(run.provider_id for run in runs) == sorted(p.id for p in [held, *others])  # one run each
    assert {run.outcome.value for run in runs} == {"pass"}
    assert len(answered) == 2  # the killed attempt and exactly one redo
    rows_now = {row.id: (row.state, row.attempts) for row in session.scalars(select(Work).where(Work.id.in_(ids)))}
    assert rows_now == {ids[0]: (WorkState.DONE, 2), ids[1]: (WorkState.DONE, 1), ids[2]: (WorkState.DONE, 1)}
    assert audit.verify_chain(session).ok
    db.session.rollback()


@NEEDS_REDIS
@pytest.mark.parametrize("app", ["unreachable"], indirect=True)
def test_with_the_broker_unreachable_recheck_now_keeps_the_work_and_it_runs_once_when_the_broker_is_back(
        app, client, session, make_account, make_provider, start_celery, sites, registry, caplog):
    sites.routes["fine.clinic.test"] = lambda path: html_page("<h1>Peach State Medical Practice</h1>")
    provider = listed(make_provider, "Peach State Medical Practice", f"https://fine.clinic.test:{sites.port}/")
    login(client, make_account(Role.RESEARCHER))

    with caplog.at_level(logging.WARNING, logger="backoffice.dispatch"):
        text = recheck_now(client, provider)
    assert ("The re-check is recorded, but the worker queue cannot be reached just now. It will start by itself "
            "when the queue is reachable again") in text
    refusals = [r for r in caplog.records if r.name == "backoffice.dispatch"]
    assert len(refusals) == 1 and "it and 2 more are kept as requested" in refusals[0].getMessage()
    rows = work_rows(session, provider)
    assert sorted(rows) == ["exclusion", "npi", "website"]
    assert {row.state for row in rows.values()} == {WorkState.REQUESTED}
    assert session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "recheck.requested")) == 1

    app.forwarder.open()  # the broker is back
    start_celery("worker", **worker_settings(sites, registry))
    run_reconciler_once(session)
    wait_for_runs(session, 3, timeout=60)
    time.sleep(2)
    session.rollback()
    runs = session.scalars(select(CheckRun).where(CheckRun.provider_id == provider.id)).all()
    assert sorted(r.check.value for r in runs) == ["exclusion", "npi", "website"]  # each once
    assert {r.check.value: r.outcome.value for r in runs}["website"] == "pass"
    rows = work_rows(session, provider)
    assert {(row.state, row.attempts) for row in rows.values()} == {(WorkState.DONE, 1)}
    db.session.rollback()
