"""Re-check tasks: sweeps that record one piece of work per provider and check, and the task that does it."""
from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app
from sqlalchemy.exc import IntegrityError

from backoffice import unit_of_work
from backoffice.checks.http import OutboundError, OutboundRefused, client_for
from backoffice.checks.result import CheckResult
from backoffice.extensions import db
from backoffice.models import CheckKind, WorkKind, utcnow
from backoffice.services import expiry, overdue, rechecks, screening, sources, work
from backoffice.services.review import ReviewPolicy
from tasks.recording import Claiming, GroupClaimer, GroupRecorder, Pending

log = logging.getLogger(__name__)

# The time limits come from CHECK_TIME_LIMIT_SECONDS (tasks/celery_app.py annotates this task with them).
CHECK_TASK_OPTIONS = dict(acks_late=True, reject_on_worker_lost=True)
# The results of this process's check tasks, recorded a batch per transaction; their work rows, claimed so.
RECORDER = GroupRecorder()
CLAIMER = GroupClaimer()


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
        claimed = unit_of_work.retrying(db.session, claim_batch, attempts=5, what="the re-check claim")
        claimed_total += claimed
        # Until nothing is left to claim: a short batch may only mean another sweep took part of it.
        if not claimed:
            return claimed_total


# A sweep over every listed provider: its lease outlasts its time limit.
SWEEP_LEASE_SECONDS = 900


@shared_task(name="tasks.checks.exclusion_sweep", time_limit=600, soft_time_limit=540)
def exclusion_sweep(work_id: int | None = None) -> int:
    """Screen every listed provider: after a list import (requested work, window import-<id>) and monthly. Each
    SCREENING_BATCH_SIZE listed providers are one piece of work (screen_batch screens them in one pass and
    records their runs together), recorded and sent a batch per transaction; returns how many providers."""
    policy = _policy()
    window = "monthly-" + utcnow().strftime("%Y%m")
    if work_id is not None:
        with unit_of_work.atomic():
            row = work.claim(db.session, work_id, policy, lease_seconds=SWEEP_LEASE_SECONDS)
        if row is None:
            return 0
        window = row.params["window"]
    batch_size = current_app.config["SCREENING_BATCH_SIZE"]
    after_id, total = 0, 0
    while True:
        with unit_of_work.atomic():  # each batch of screening work is recorded, and sent, on its own
            ids = rechecks.listed_provider_ids(db.session, after_id, batch_size)
            rechecks.request_screening(db.session, "system:exclusion-sweep", ids, window, policy)
            last = len(ids) < batch_size
            if last and work_id is not None:
                work.complete(db.session, work_id)
        total += len(ids)
        if last:
            return total
        after_id = ids[-1]


@shared_task(name="tasks.checks.screen_batch", time_limit=600, soft_time_limit=540, **CHECK_TASK_OPTIONS)
def screen_batch(work_id: int) -> int:
    """Screen a batch of providers (a work row: their ids and the window) in one pass and record their runs in
    one transaction with the row's completion; returns how many runs were recorded. The providers whose run is
    recorded already are left out, so a second delivery, or a worker killed half-way whose row the reconciler
    sends again, screens only what is left."""
    config = current_app.config
    policy = _policy()
    row = unit_of_work.retrying(db.session, lambda: work.claim(db.session, work_id, policy,
                                                               lease_seconds=SWEEP_LEASE_SECONDS),
                                attempts=5, what=f"the claim of work {work_id}")
    if row is None:
        return 0
    outcomes = rechecks.screen_batch(db.session, [int(i) for i in row.params["provider_ids"]], row.params["window"],
                                     screening.Thresholds.from_config(config), utcnow().date(), utcnow(),
                                     passes_through=(SoftTimeLimitExceeded,))
    unit_of_work.discard()  # the read ends here; the runs are recorded in a transaction of their own
    if not outcomes:
        with unit_of_work.atomic():
            work.complete(db.session, work_id)
        return 0
    if _record_together(config, outcomes, [work_id]):
        return len(outcomes)
    for one in outcomes:
        _record_alone(config, None, one)
    with unit_of_work.atomic():
        work.complete(db.session, work_id)
    return len(outcomes)


@dataclass(frozen=True)
class Delivery:
    """How a check's work row reached this worker: in a message of its own (`task`: a transient error retries
    that task) or as one of several rows of one message (no task of its own: a retry is sent alone)."""

    retries: int
    eager: bool
    task: Any = None


@shared_task(bind=True, name="tasks.checks.run_check", **CHECK_TASK_OPTIONS)
def run_check(self, work_id: int) -> str:
    """Run one check (a work row: provider, check, window); a second delivery finds it taken or done."""
    with CLAIMER.running():
        return _run_check(Delivery(self.request.retries, bool(self.request.is_eager), self), work_id)


@shared_task(bind=True, name="tasks.checks.run_checks", **CHECK_TASK_OPTIONS)
def run_checks(self, work_ids: list[int]) -> dict[str, int]:
    """Run the checks of several work rows sent in one message (the sweep's, RECHECK_MESSAGE_ROWS a message) side
    by side in this process's check threads, each claimed, checked and recorded as if sent alone; the message is
    acknowledged once every one is recorded (or left to the reconciler: a row whose check stopped on an error, as
    a task of its own would). Returns how many rows ended each way. A second delivery finds them taken or done."""
    eager = bool(self.request.is_eager)
    if eager:  # a task run eagerly (apply, the tests): one after the other, in this thread
        answers = [_one_of_several(None, work_id, eager) for work_id in work_ids]
    else:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        threads = _check_threads(app.config["RECHECK_CHECK_THREADS"])
        answers = [future.result() for future in [threads.submit(_one_of_several, app, work_id, eager)
                                                  for work_id in work_ids]]
    return dict(Counter(answers))


_THREADS: ThreadPoolExecutor | None = None
_THREADS_LOCK = threading.Lock()


def _check_threads(size: int) -> ThreadPoolExecutor:
    """The threads this worker process runs the rows of several-row messages in, made at the first such message
    (after the pool's fork, in the process that uses them)."""
    global _THREADS
    with _THREADS_LOCK:
        if _THREADS is None:
            _THREADS = ThreadPoolExecutor(max_workers=size, thread_name_prefix="check")
        return _THREADS


def _one_of_several(app, work_id: int, eager: bool) -> str:
    """One row of a several-row message, in a check thread with an app context (and so a session) of its own."""
    with (app.app_context() if app is not None else nullcontext()), CLAIMER.running():
        try:
            return _run_check(Delivery(0, eager), work_id)
        except Exception:  # noqa: BLE001 - the other rows go on; this one is left as its own task would leave it
            log.exception("work %s: its check stopped on an error; the reconciler sends it again once its lease "
                          "runs out", work_id)
            unit_of_work.discard()
            return "stopped on an error"


# What a claim found: the row taken (None: not), whether it was finished as recorded already, the provider.
Taken = tuple[work.Claimed | None, bool, rechecks.ProviderFacts | None]


def _run_check(delivery: Delivery, work_id: int) -> str:
    config = current_app.config
    policy = _policy()
    # One transaction before any network call, ending there: nothing stays open (or locked, on SQLite) while we
    # wait on the network. Its first statement takes the row unless it is held, finished, or its run is
    # recorded already; the claim and its lease are committed with the read of the provider. A first delivery
    # claims with the other tasks of this process starting at the same moment (one transaction for them all).
    taken: Taken | None = None
    if delivery.retries == 0 and not delivery.eager and config["RECHECK_CLAIM_BATCH"] > 1:
        taken = CLAIMER.claim(Claiming(work_id), lambda batch: _claim_batch(policy, batch),
                              batch_size=config["RECHECK_CLAIM_BATCH"],
                              wait_seconds=config["RECHECK_CLAIM_WAIT_MS"] / 1000).answer
    if taken is None:
        # A claim that loses a race (on SQLite: the write lock, past its busy timeout) is tried again, as the
        # sweep's claim is: the statement is conditional, so a second try takes the row only if it is still free.
        def take() -> Taken:
            row = work.claim(db.session, work_id, policy, retry=delivery.retries > 0, unless_recorded=True)
            if row is None:
                return None, work.complete_if_recorded(db.session, work_id), None
            return row, False, rechecks.facts(db.session, int(row.target_id), CheckKind(row.params["check"]))

        taken = unit_of_work.retrying(db.session, take, attempts=5, what=f"the claim of work {work_id}")
    row, recorded, subject = taken
    if row is None:
        return "already done" if recorded else "taken or done"
    provider_id, kind, key = int(row.target_id), CheckKind(row.params["check"]), row.idempotency_key
    if subject is None:
        with unit_of_work.atomic():
            work.complete(db.session, work_id)
        return "provider gone"
    with RECORDER.checking() as hand_in:
        started = utcnow()
        result = _check(delivery, config, policy, work_id, key, kind, subject)
        if result is None:
            return "retrying"
        pending = RECORDER.submit(Pending(work_id, rechecks.Outcome(provider_id, kind, key, result, started)), hand_in,
                                  lambda batch: _record_batch(config, batch),
                                  batch_size=config["RECHECK_RECORD_BATCH"],
                                  wait_seconds=config["RECHECK_RECORD_WAIT_MS"] / 1000)
    if pending.answer is not None:
        return pending.answer
    return _record_alone(config, work_id, pending.outcome)


def _claim_batch(policy: work.Policy, batch: list[Claiming]) -> None:
    """Claim a batch of rows and read their providers in one commit; each answer is set once it is in. A batch
    that fails is rolled back whole and left unanswered: each of its tasks then claims its own."""
    ids = [one.work_id for one in batch]

    def take() -> tuple[dict[int, work.Claimed], set[int], dict[int, rechecks.ProviderFacts]]:
        rows = work.claim_many(db.session, ids, policy)
        recorded = work.complete_many_if_recorded(db.session, [i for i in ids if i not in rows])
        subjects = rechecks.facts_many(db.session, [(int(row.target_id), CheckKind(row.params["check"]))
                                                    for row in rows.values()])
        return rows, recorded, subjects

    try:
        rows, recorded, subjects = unit_of_work.retrying(db.session, take, attempts=5,
                                                         what=f"the claim of {len(ids)} work rows")
    except Exception:  # noqa: BLE001 - rolled back; each row is claimed alone, with its own handling
        log.info("a batch of %s claims could not be made together; claiming each alone", len(batch), exc_info=True)
        return
    handed: set[int] = set()
    for one in batch:
        # Two deliveries of one row (the reconciler resent it while its first message waited) can start together:
        # the row is the first one's; the other finds it taken, as a claim of its own would.
        row = rows.get(one.work_id) if one.work_id not in handed else None
        handed.add(one.work_id)
        one.answer = (row, one.work_id in recorded, subjects.get(int(row.target_id)) if row is not None else None)


def _check(delivery: Delivery, config, policy: work.Policy, work_id: int, key: str, kind: CheckKind,
           subject: rechecks.ProviderFacts) -> CheckResult | None:
    """The check's result; a transient network error is retried while retries last: a row with a task of its
    own raises Retry, one of several is sent again alone after the back-off (None: nothing to record yet)."""
    sources = rechecks.Sources(http=client_for(config), nppes_url=config["NPPES_API_URL"],
                               screening=screening.Thresholds.from_config(config))
    try:
        result = rechecks.perform(db.session, kind, subject, sources, utcnow().date())
        unit_of_work.discard()  # what the check read ends here: no connection is held while its result waits
        return result
    except OutboundError as exc:
        retries = config["CHECK_MAX_RETRIES"]
        if exc.transient and delivery.retries < retries:
            countdown = config["CHECK_RETRY_BACKOFF_SECONDS"] * (2 ** delivery.retries)
            log.info("%s: transient error (%s), retry %s in %s s", key, exc, delivery.retries + 1, countdown)
            unit_of_work.discard()
            with unit_of_work.atomic():
                work.release_for_retry(db.session, work_id, countdown, f"retrying after: {exc}", policy)
            if delivery.task is not None:
                raise delivery.task.retry(exc=exc, countdown=countdown, max_retries=retries) from exc
            _send_retry(work_id, countdown, delivery.retries + 1)
            return None
        return rechecks.unreachable(kind, exc, retries if exc.transient else 0)
    except OutboundRefused as exc:
        return rechecks.unreachable(kind, exc)
    except Exception as exc:  # noqa: BLE001 - whatever a check does, its run is recorded
        log.exception("%s: the check failed unexpectedly; recording an error run", key)
        unit_of_work.discard()
        return rechecks.failed_unexpectedly(kind, exc)


def _send_retry(work_id: int, countdown: int, retries: int) -> None:
    """A row of a several-row message retries in a message of its own, counted as the task's own retries are. A
    broker that refuses leaves the row waiting as sent: the reconciler sends it once its lease runs out."""
    try:
        run_check.apply_async(args=[work_id], countdown=countdown, retries=retries)
    except Exception as exc:  # noqa: BLE001 - whatever the broker's client raises, the row is kept
        log.warning("work %s: its retry was not accepted by the worker queue (%s: %s); the reconciler sends it "
                    "again", work_id, exc.__class__.__name__, exc)


def _actor(kind: CheckKind) -> str:
    return f"system:recheck-{kind.value}"


def _record_batch(config, batch: list[Pending]) -> None:
    """Record a batch of results and finish their work rows in one commit; each answer is set once it is in.
    A batch that fails is rolled back whole and left unanswered: each of its tasks then records its own."""
    if not _record_together(config, [one.outcome for one in batch], [one.work_id for one in batch]):
        return
    for one in batch:
        one.answer = one.outcome.result.outcome.value


def _record_together(config, outcomes: list[rechecks.Outcome], work_ids: list[int]) -> bool:
    """Record runs and finish their work rows in one commit; False, rolled back, when they cannot be recorded
    together (the caller then records each alone, with its own handling)."""
    try:
        with unit_of_work.atomic():
            rechecks.record_many(db.session, _actor, outcomes, auto_suspend=config["AUTO_SUSPEND_ON_CRITICAL"],
                                 cadence_days=config["RECHECK_INTERVAL_DAYS"],
                                 freshness=sources.Freshness.from_config(config))
            work.complete_many(db.session, work_ids)
    except Exception:  # noqa: BLE001 - rolled back; each result is recorded alone, with its own handling
        log.info("%s results could not be recorded together; recording each alone", len(outcomes), exc_info=True)
        return False
    return True


def _record_alone(config, work_id: int | None, outcome: rechecks.Outcome) -> str:
    """Record one run (and finish its own work row, if it has one); a result that cannot be stored still leaves
    a run: an error run saying why."""
    try:
        return _record(config, work_id, outcome.provider_id, outcome.check, outcome.key, outcome.result,
                       outcome.started_at)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be stored still leaves a run
        # _record's unit of work has rolled back what it wrote.
        log.exception("%s: the %s result could not be recorded; recording an error run", outcome.key,
                      outcome.result.outcome.value)
        return _record(config, work_id, outcome.provider_id, outcome.check, outcome.key,
                       rechecks.failed_unexpectedly(outcome.check, exc), outcome.started_at)


def _record(config, work_id: int | None, provider_id: int, kind: CheckKind, key: str, result: CheckResult,
            started) -> str:
    """Record the run and finish its work row (if it has one of its own) in one commit; a second delivery that
    got there first leaves it."""
    try:
        with unit_of_work.atomic():
            rechecks.record(db.session, _actor(kind), provider_id, kind, key, result, started,
                            auto_suspend=config["AUTO_SUSPEND_ON_CRITICAL"],
                            cadence_days=config["RECHECK_INTERVAL_DAYS"],
                            freshness=sources.Freshness.from_config(config))
            if work_id is not None:
                work.complete(db.session, work_id)
    except IntegrityError:
        # Rolled back; a second delivery may have recorded this run first.
        with unit_of_work.atomic():
            if not rechecks.already_done(db.session, key):
                raise
            if work_id is not None:
                work.complete(db.session, work_id)
        return "already done"
    return result.outcome.value


@shared_task(name="tasks.checks.expiry_sweep", time_limit=600, soft_time_limit=540)
def expiry_sweep() -> dict:
    """Daily: reminders at the configured days before expiry, then the credentials that have lapsed."""
    today = utcnow().date()
    with unit_of_work.atomic():
        sent = expiry.send_reminders(db.session, "system:expiry-sweep", today,
                                     current_app.config["EXPIRY_REMINDER_DAYS"])
    # Each expired credential in its own transaction: a concurrent edit of one provider costs that one a
    # retry (or a wait until tomorrow), never the lapse of every other.
    items = expiry.lapsed_credentials(db.session, today)
    unit_of_work.discard()
    lapsed, left = unit_of_work.one_by_one(db.session, items, lambda item: expiry.lapse_credential(
        db.session, "system:expiry-sweep", item, today), what="expired credential")
    if left:
        log.warning("expiry sweep: %s kept losing races; the next pass acts on them", left)
    return {"reminders": sent, "lapsed": lapsed}


@shared_task(name="tasks.checks.sla_sweep", time_limit=300, soft_time_limit=270)
def sla_sweep() -> int:
    with unit_of_work.atomic():
        flagged = overdue.flag_overdue(db.session, "system:sla-sweep", utcnow(),
                                       ReviewPolicy.from_config(current_app.config))
    return flagged
