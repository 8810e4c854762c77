"""A real Celery worker (and beat) in their own processes, on the configured broker and database."""
from __future__ import annotations

import time
from datetime import timedelta

from backoffice.dispatch import after_commit
from backoffice.extensions import db
from backoffice.models import AdvertisingStatus, Provider, Role, VerificationStatus, utcnow
from tasks.sweeps import verification_expiry_sweep
from tests.celery_helpers import queued_messages, start_celery  # noqa: F401 (fixture)
from tests.conftest import login


def lapsed_provider(make_provider) -> Provider:
    now = utcnow()
    return make_provider(
        verification_status=VerificationStatus.VERIFIED, verified_at=now - timedelta(days=400),
        verified_until=now - timedelta(days=35), advertising_status=AdvertisingStatus.ACTIVE,
    )


def wait_until_expired(session, provider_id: int, timeout: float = 60) -> Provider:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.rollback()
        provider = session.get(Provider, provider_id)
        session.refresh(provider)
        if provider.verification_status == VerificationStatus.EXPIRED:
            return provider
        time.sleep(0.25)
    raise AssertionError(f"provider {provider_id} was not expired within {timeout} s")


def test_a_web_request_enqueues_after_commit_and_a_real_worker_runs_it(app, client, session, make_account,
                                                                        make_provider, start_celery):
    provider = lapsed_provider(make_provider)
    start_celery("worker")
    login(client, make_account(Role.RESEARCH_LEAD))
    response = client.post("/admin/sweeps/verification-expiry")
    assert response.status_code == 302
    expired = wait_until_expired(session, provider.id)
    assert expired.advertising_status == AdvertisingStatus.SUSPENDED


def test_a_researcher_may_not_run_the_sweep(client, make_account):
    login(client, make_account(Role.RESEARCHER))
    assert client.post("/admin/sweeps/verification-expiry").status_code == 403


def test_a_task_asked_for_in_a_rolled_back_transaction_is_never_sent(app, session):
    assert queued_messages(app) == 0
    after_commit(session, verification_expiry_sweep)
    session.rollback()
    session.commit()
    assert queued_messages(app) == 0
    after_commit(session, verification_expiry_sweep)
    session.commit()
    assert queued_messages(app) == 1
    with app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])


def test_beat_schedules_the_expiry_sweep_and_the_worker_runs_it(app, session, make_provider, start_celery):
    provider = lapsed_provider(make_provider)
    start_celery("worker")
    start_celery("beat", SWEEP_VERIFICATION_EXPIRY_SECONDS=1)
    expired = wait_until_expired(session, provider.id)
    assert expired.advertising_status == AdvertisingStatus.SUSPENDED
    db.session.rollback()
