"""Build the Celery app for a Flask app: tasks run inside its app context."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from celery import Celery, Task
from celery.signals import worker_ready
from flask import Flask

import config

# dispatch is imported for its after-commit hooks: tasks and requested work are sent when the asking
# transaction commits.
from backoffice import dispatch, startup  # noqa: F401
from tasks import filesystem_broker

TASK_MODULES = ["tasks.sweeps", "tasks.checks", "tasks.work"]


def broker_settings(config: dict) -> dict:
    """Redis when REDIS_URL is set; otherwise kombu's filesystem transport (writing each message atomically,
    tasks/filesystem_broker.py), which needs no server."""
    if config.get("REDIS_URL"):
        # Unacknowledged messages (a worker died mid-task) come back after the visibility timeout.
        visibility = config["BROKER_VISIBILITY_TIMEOUT_SECONDS"]
        return {
            "broker_url": config["REDIS_URL"],
            "broker_transport_options": {
                "visibility_timeout": visibility,
                # Look for abandoned messages often enough that they come back about one timeout later.
                "unacked_restore_interval": max(1, min(10, visibility // 3)),
                "unacked_restore_throttle": 1 if visibility < 600 else 10,
            },
            # One scheduler for the whole deployment: redbeat holds a lock in Redis, so a second
            # `celery beat` on another host waits instead of sending every periodic task twice.
            "beat_scheduler": "redbeat.RedBeatScheduler",
            "redbeat_redis_url": config["REDIS_URL"],
            "redbeat_key_prefix": f"redbeat:{config['CELERY_QUEUE']}:",
        }
    folder = Path(config["BROKER_FOLDER"])
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "broker_url": f"{filesystem_broker.ALIAS}://",
        "broker_transport_options": {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        },
    }


# Every periodic job: (beat entry, task, the setting that holds its cadence in seconds).
PERIODIC = [
    ("verification-expiry-sweep", "tasks.sweeps.verification_expiry_sweep", "SWEEP_VERIFICATION_EXPIRY_SECONDS"),
    ("recheck-sweep", "tasks.checks.recheck_sweep", "SWEEP_RECHECK_SECONDS"),
    ("exclusion-sweep", "tasks.checks.exclusion_sweep", "SWEEP_EXCLUSION_SECONDS"),
    ("expiry-sweep", "tasks.checks.expiry_sweep", "SWEEP_EXPIRY_REMINDER_SECONDS"),
    ("reverification-sweep", "tasks.sweeps.reverification_sweep", "SWEEP_REVERIFICATION_SECONDS"),
    ("sla-sweep", "tasks.checks.sla_sweep", "SWEEP_SLA_SECONDS"),
    ("audit-verification", "tasks.sweeps.audit_verification", "SWEEP_AUDIT_VERIFICATION_SECONDS"),
    ("deliver-notifications", "tasks.sweeps.deliver_notifications", "SWEEP_OUTBOX_SECONDS"),
    ("staff-digest", "tasks.sweeps.staff_digest", "SWEEP_STAFF_DIGEST_SECONDS"),
    ("work-reconciler", "tasks.work.reconcile", "WORK_RECONCILE_SECONDS"),
]


def beat_schedule(config: dict) -> dict:
    return {name: {"task": task, "schedule": timedelta(seconds=config[setting])}
            for name, task, setting in PERIODIC}


def init_celery(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.import_name, task_cls=FlaskTask, include=TASK_MODULES)
    check_time_limit, check_soft_time_limit = config.check_time_limits(app.config)
    celery.conf.update(
        # From the settings, so config.check_consistency can hold them against the visibility timeout and lease.
        task_annotations={"tasks.checks.run_check": {"time_limit": check_time_limit,
                                                     "soft_time_limit": check_soft_time_limit},
                          # Its rows run side by side; as long as they would one after the other, at most.
                          "tasks.checks.run_checks": {
                              "time_limit": check_time_limit * app.config["RECHECK_MESSAGE_ROWS"],
                              "soft_time_limit": check_soft_time_limit * app.config["RECHECK_MESSAGE_ROWS"]},
                          "tasks.sweeps.deliver_notifications": {
                              "time_limit": app.config["MAIL_DELIVERY_TIME_LIMIT_SECONDS"],
                              "soft_time_limit": max(1, app.config["MAIL_DELIVERY_TIME_LIMIT_SECONDS"] * 9 // 10)}},
        **broker_settings(app.config),
        task_default_queue=app.config["CELERY_QUEUE"],
        backoffice_sweep_on_start=app.config["SWEEP_ON_WORKER_START"],
        backoffice_gc_freeze=app.config["GC_FREEZE"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_always_eager=app.config["CELERY_TASK_ALWAYS_EAGER"],
        beat_schedule=beat_schedule(app.config),
        beat_schedule_filename=app.config["BEAT_SCHEDULE_FILE"],
        broker_connection_retry_on_startup=True,
        timezone="UTC",
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


@worker_ready.connect
def _settle(sender, **kwargs) -> None:
    """The worker has built its pool and consumers: freeze that start-up heap too (startup.settle)."""
    startup.settle(bool(sender.app.conf.get("backoffice_gc_freeze")))


@worker_ready.connect
def _sweep_on_start(sender, **kwargs) -> None:
    """Run every sweep once when a worker starts, so work that fell due while nothing ran is not left
    waiting a whole interval for beat (sweeps are idempotent, so several workers starting is harmless)."""
    app = sender.app
    if app.conf.get("backoffice_sweep_on_start"):
        for entry in app.conf.beat_schedule.values():
            app.send_task(entry["task"])
