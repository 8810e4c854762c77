"""The reconciler: requested work whose message was lost (broker down, worker killed) is sent again."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from backoffice import unit_of_work
from backoffice.extensions import db
from backoffice.services import work

log = logging.getLogger(__name__)


@shared_task(name="tasks.work.reconcile", time_limit=120, soft_time_limit=100)
def reconcile() -> dict:
    """One pass (beat, every minute): fail what has had its attempts, then send the rest again after commit."""
    with unit_of_work.atomic():
        done = work.reconcile(db.session, work.Policy.from_config(current_app.config))
    if done.resent or done.failed:
        log.info("reconciler: %d work rows sent again, %d failed after their last attempt",
                 len(done.resent), len(done.failed))
    return {"resent": len(done.resent), "failed": len(done.failed)}
