"""The check task itself: transient errors are retried with backoff, then recorded as an error; runs are idempotent."""
from __future__ import annotations

import time

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import CheckKind, CheckOutcome, CheckRun, Finding, ListingStatus, WorkKind, WorkState
from backoffice.services import work
from tasks.celery_app import broker_settings
from tests.servers import LocalServer, html_page


def test_a_transient_error_is_retried_then_recorded_as_an_error(make_app, make_provider):
    def slow(path, headers):
        time.sleep(1.5)
        return html_page("late")

    server = LocalServer(slow)
    app = make_app(CELERY_TASK_ALWAYS_EAGER=True, OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS=True, CHECK_MAX_RETRIES=2,
                   CHECK_RETRY_BACKOFF_SECONDS=0, OUTBOUND_TOTAL_TIMEOUT_SECONDS=1, OUTBOUND_CONNECT_TIMEOUT_SECONDS=1,
                   OUTBOUND_PER_HOST_INTERVAL_MS=1)
    try:
        with app.app_context():
            from tasks.checks import run_check

            provider = make_provider(website=server.url(), listing_status=ListingStatus.LISTED)
            policy = work.Policy.from_config(app.config)
            row = work.request(db.session, "system:test",
                               work.check_spec(WorkKind.RECHECK_NOW, provider.id, CheckKind.WEBSITE, "w1"), policy)
            db.session.commit()
            run_check.apply(args=[row.id])
            assert len(server.hits) == 3  # the first try and two retries
            run = db.session.scalar(select(CheckRun))
            assert run.outcome == CheckOutcome.ERROR and "after 2 retries" in run.summary
            assert db.session.scalar(select(func.count()).select_from(Finding)) == 0  # inconclusive: no finding
            db.session.refresh(row)
            assert row.state == WorkState.DONE and row.attempts == 1  # the task's own retries are not lost attempts
            run_check.apply(args=[row.id])
            assert len(server.hits) == 3 and db.session.scalar(select(func.count()).select_from(CheckRun)) == 1
    finally:
        server.close()


def test_redis_deployments_use_the_locked_scheduler_and_the_embedded_one_the_file_scheduler(tmp_path):
    redis = broker_settings({"REDIS_URL": "redis://127.0.0.1:6379/0", "BROKER_VISIBILITY_TIMEOUT_SECONDS": 3600,
                             "CELERY_QUEUE": "q"})
    assert redis["beat_scheduler"] == "redbeat.RedBeatScheduler"
    assert redis["broker_transport_options"]["visibility_timeout"] == 3600
    embedded = broker_settings({"BROKER_FOLDER": str(tmp_path)})
    assert "beat_scheduler" not in embedded
