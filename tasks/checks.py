"""Re-check tasks: sweeps that enqueue one small task per provider and check, and that task itself."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import IntegrityError

from backoffice import txn
from backoffice.checks.http import OutboundError, OutboundRefused, client_for
from backoffice.checks.result import CheckResult
from backoffice.dispatch import after_commit
from backoffice.extensions import db
from backoffice.models import CheckKind, utcnow
from backoffice.services import expiry, overdue, rechecks
from backoffice.services.review import ReviewPolicy

log = logging.getLogger(__name__)

# The time limits come from CHECK_TIME_LIMIT_SECONDS (tasks/celery_app.py annotates this task with them).
CHECK_TASK_OPTIONS = dict(acks_late=True, reject_on_worker_lost=True)


@shared_task(name="tasks.checks.recheck_sweep", time_limit=600, soft_time_limit=540)
def recheck_sweep() -> int:
    """Claim due providers in bounded batches; each batch commits, then its tasks are sent. A batch that
    loses a deadlock or a serialisation failure is rolled back (its tasks with it) and claimed again."""
    config = current_app.config
    batch_size = config["RECHECK_BATCH_SIZE"]

    def claim_batch() -> int:
        claimed = rechecks.claim_due(db.session, utcnow(), batch_size, config["RECHECK_LEASE_SECONDS"])
        for provider_id, window in claimed:
            for check in rechecks.NETWORK_CHECKS:
                after_commit(db.session, run_check, provider_id, check.value, window)
        return len(claimed)

    claimed_total = 0
    while True:
        claimed = txn.retrying(db.session, claim_batch, attempts=5, what="the re-check claim")
        claimed_total += claimed
        # Until nothing is left to claim: a short batch may only mean another sweep took part of it.
        if not claimed:
            return claimed_total


@shared_task(name="tasks.checks.exclusion_sweep", time_limit=600, soft_time_limit=540)
def exclusion_sweep(window: str | None = None) -> int:
    """Screen every listed provider: after a list import (window import-<id>) and monthly."""
    window = window or "monthly-" + utcnow().strftime("%Y%m")
    batch_size = current_app.config["RECHECK_BATCH_SIZE"]
    after_id, total = 0, 0
    while True:
        ids = rechecks.listed_provider_ids(db.session, after_id, batch_size)
        for provider_id in ids:
            after_commit(db.session, run_check, provider_id, CheckKind.EXCLUSION.value, window)
        db.session.commit()
        total += len(ids)
        if len(ids) < batch_size:
            return total
        after_id = ids[-1]


@shared_task(bind=True, name="tasks.checks.run_check", **CHECK_TASK_OPTIONS)
def run_check(self, provider_id: int, check: str, window: str) -> str:
    """Run one check for one provider in one window; a second delivery finds the run and does nothing."""
    config = current_app.config
    kind = CheckKind(check)
    key = rechecks.run_key(provider_id, kind, window)
    if rechecks.already_done(db.session, key):
        db.session.rollback()
        return "already done"
    subject = rechecks.facts(db.session, provider_id)
    # End the read transaction: nothing stays open (or locked, on SQLite) while we wait on the network.
    db.session.rollback()
    if subject is None:
        return "provider gone"
    started = utcnow()
    sources = rechecks.Sources(http=client_for(config), nppes_url=config["NPPES_API_URL"])
    try:
        result = rechecks.perform(db.session, kind, subject, sources, started.date())
    except OutboundError as exc:
        retries = config["CHECK_MAX_RETRIES"]
        if exc.transient and self.request.retries < retries:
            countdown = config["CHECK_RETRY_BACKOFF_SECONDS"] * (2 ** self.request.retries)
            log.info("%s: transient error (%s), retry %s in %s s", key, exc, self.request.retries + 1, countdown)
            raise self.retry(exc=exc, countdown=countdown, max_retries=retries)
        result = rechecks.unreachable(kind, exc, retries if exc.transient else 0)
    except OutboundRefused as exc:
        result = rechecks.unreachable(kind, exc)
    except Exception as exc:  # noqa: BLE001 - whatever a check does, its run is recorded
        log.exception("%s: the check failed unexpectedly; recording an error run", key)
        db.session.rollback()
        result = rechecks.failed_unexpectedly(kind, exc)
    try:
        return _record(config, provider_id, kind, key, result, started)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be stored still leaves a run
        log.exception("%s: the %s result could not be recorded; recording an error run", key, result.outcome.value)
        db.session.rollback()
        return _record(config, provider_id, kind, key, rechecks.failed_unexpectedly(kind, exc), started)


def _record(config, provider_id: int, kind: CheckKind, key: str, result: CheckResult, started) -> str:
    """Record the run and commit; a second delivery that got there first leaves it as it is."""
    try:
        rechecks.record(db.session, f"system:recheck-{kind.value}", provider_id, kind, key, result, started,
                        auto_suspend=config["AUTO_SUSPEND_ON_CRITICAL"], cadence_days=config["RECHECK_INTERVAL_DAYS"])
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if rechecks.already_done(db.session, key):
            return "already done"
        raise
    return result.outcome.value


@shared_task(name="tasks.checks.expiry_sweep", time_limit=600, soft_time_limit=540)
def expiry_sweep() -> dict:
    """Daily: reminders at the configured days before expiry, then the credentials that have lapsed."""
    today = utcnow().date()
    sent = expiry.send_reminders(db.session, "system:expiry-sweep", today, current_app.config["EXPIRY_REMINDER_DAYS"])
    db.session.commit()
    # Each expired credential in its own transaction: a concurrent edit of one provider costs that one a
    # retry (or a wait until tomorrow), never the lapse of every other.
    items = expiry.lapsed_credentials(db.session, today)
    db.session.rollback()
    lapsed, left = txn.one_by_one(db.session, items, lambda item: expiry.lapse_credential(
        db.session, "system:expiry-sweep", item, today), what="expired credential")
    if left:
        log.warning("expiry sweep: %s kept losing races; the next pass acts on them", left)
    return {"reminders": sent, "lapsed": lapsed}


@shared_task(name="tasks.checks.sla_sweep", time_limit=300, soft_time_limit=270)
def sla_sweep() -> int:
    flagged = overdue.flag_overdue(db.session, "system:sla-sweep", utcnow(),
                                   ReviewPolicy.from_config(current_app.config))
    db.session.commit()
    return flagged
