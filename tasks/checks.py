"""Re-check tasks: sweeps that record one piece of work per provider and check, and the task that does it."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app
from sqlalchemy.exc import IntegrityError

from backoffice import txn
from backoffice.checks.http import OutboundError, OutboundRefused, client_for
from backoffice.checks.result import CheckResult
from backoffice.extensions import db
from backoffice.models import CheckKind, WorkKind, utcnow
from backoffice.services import expiry, overdue, rechecks, work
from backoffice.services.review import ReviewPolicy

log = logging.getLogger(__name__)

# The time limits come from CHECK_TIME_LIMIT_SECONDS (tasks/celery_app.py annotates this task with them).
CHECK_TASK_OPTIONS = dict(acks_late=True, reject_on_worker_lost=True)


def _policy() -> work.Policy:
    return work.Policy.from_config(current_app.config)


@shared_task(name="tasks.checks.recheck_sweep", time_limit=600, soft_time_limit=540)
def recheck_sweep() -> int:
    """Claim due providers in bounded batches; each batch records its checks as work and commits, then they
    are sent. A batch that loses a deadlock or a serialisation failure is rolled back (its work with it) and
    claimed again."""
    config = current_app.config
    policy = _policy()
    batch_size = config["RECHECK_BATCH_SIZE"]

    def claim_batch() -> int:
        claimed = rechecks.claim_due(db.session, utcnow(), batch_size, config["RECHECK_LEASE_SECONDS"])
        work.request_many(db.session, "system:recheck-sweep", [
            work.check_spec(WorkKind.SCHEDULED_CHECK, provider_id, check, window)
            for provider_id, window in claimed for check in rechecks.NETWORK_CHECKS], policy)
        return len(claimed)

    claimed_total = 0
    while True:
        claimed = txn.retrying(db.session, claim_batch, attempts=5, what="the re-check claim")
        claimed_total += claimed
        # Until nothing is left to claim: a short batch may only mean another sweep took part of it.
        if not claimed:
            return claimed_total


# A sweep over every listed provider: its lease outlasts its time limit.
SWEEP_LEASE_SECONDS = 900


@shared_task(name="tasks.checks.exclusion_sweep", time_limit=600, soft_time_limit=540)
def exclusion_sweep(work_id: int | None = None) -> int:
    """Screen every listed provider: after a list import (requested work, window import-<id>) and monthly."""
    policy = _policy()
    window = "monthly-" + utcnow().strftime("%Y%m")
    if work_id is not None:
        row = work.claim(db.session, work_id, policy, lease_seconds=SWEEP_LEASE_SECONDS)
        db.session.commit()
        if row is None:
            return 0
        window = row.params["window"]
    batch_size = current_app.config["RECHECK_BATCH_SIZE"]
    after_id, total = 0, 0
    while True:
        ids = rechecks.listed_provider_ids(db.session, after_id, batch_size)
        work.request_many(db.session, "system:exclusion-sweep", [
            work.check_spec(WorkKind.SCREENING, provider_id, CheckKind.EXCLUSION, window) for provider_id in ids],
            policy)
        total += len(ids)
        if len(ids) < batch_size:
            if work_id is not None:
                work.complete(db.session, work_id)
            db.session.commit()
            return total
        db.session.commit()
        after_id = ids[-1]


@shared_task(bind=True, name="tasks.checks.run_check", **CHECK_TASK_OPTIONS)
def run_check(self, work_id: int) -> str:
    """Run one check (a work row: provider, check, window); a second delivery finds it taken or done."""
    config = current_app.config
    policy = _policy()
    row = work.claim(db.session, work_id, policy, retry=self.request.retries > 0)
    if row is None:
        db.session.rollback()
        return "taken or done"
    provider_id, kind, key = int(row.target_id), CheckKind(row.params["check"]), row.idempotency_key
    if rechecks.already_done(db.session, key):
        work.complete(db.session, work_id)
        db.session.commit()
        return "already done"
    subject = rechecks.facts(db.session, provider_id)
    # Commit the claim and its lease before any network call, ending the transaction: nothing stays open (or
    # locked, on SQLite) while we wait on the network.
    db.session.commit()
    if subject is None:
        work.complete(db.session, work_id)
        db.session.commit()
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
            db.session.rollback()
            work.release_for_retry(db.session, work_id, countdown, f"retrying after: {exc}", policy)
            db.session.commit()
            raise self.retry(exc=exc, countdown=countdown, max_retries=retries) from exc
        result = rechecks.unreachable(kind, exc, retries if exc.transient else 0)
    except OutboundRefused as exc:
        result = rechecks.unreachable(kind, exc)
    except Exception as exc:  # noqa: BLE001 - whatever a check does, its run is recorded
        log.exception("%s: the check failed unexpectedly; recording an error run", key)
        db.session.rollback()
        result = rechecks.failed_unexpectedly(kind, exc)
    try:
        return _record(config, work_id, provider_id, kind, key, result, started)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be stored still leaves a run
        log.exception("%s: the %s result could not be recorded; recording an error run", key, result.outcome.value)
        db.session.rollback()
        return _record(config, work_id, provider_id, kind, key, rechecks.failed_unexpectedly(kind, exc), started)


def _record(config, work_id: int, provider_id: int, kind: CheckKind, key: str, result: CheckResult, started) -> str:
    """Record the run and finish its work row in one commit; a second delivery that got there first leaves it."""
    try:
        rechecks.record(db.session, f"system:recheck-{kind.value}", provider_id, kind, key, result, started,
                        auto_suspend=config["AUTO_SUSPEND_ON_CRITICAL"], cadence_days=config["RECHECK_INTERVAL_DAYS"])
        work.complete(db.session, work_id)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if rechecks.already_done(db.session, key):
            work.complete(db.session, work_id)
            db.session.commit()
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
