"""Periodic sweeps: find what is due and act on it, in bounded batches, safe to run twice."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from backoffice.extensions import db
from backoffice.models import utcnow
from backoffice.services import outbox, verification, work


@shared_task(name="tasks.sweeps.verification_expiry_sweep", time_limit=600, soft_time_limit=540)
def verification_expiry_sweep(work_id: int | None = None) -> int:
    """Expire every verification whose verified_until has passed, one committed batch at a time: on beat, or as
    work a research lead asked for."""
    if work_id is not None:
        if work.claim(db.session, work_id, work.Policy.from_config(current_app.config), lease_seconds=900) is None:
            db.session.rollback()
            return 0
        db.session.commit()
    total = 0
    now = utcnow()
    while True:
        changed = verification.expire_lapsed(db.session, "system:verification-expiry-sweep", now)
        if not changed:
            if work_id is not None:
                work.complete(db.session, work_id)
            db.session.commit()
            return total
        db.session.commit()
        total += changed


@shared_task(name="tasks.sweeps.deliver_notifications", time_limit=300, soft_time_limit=270)
def deliver_notifications() -> int:
    sent = outbox.deliver_pending(db.session, current_app.config["OUTBOX_FOLDER"])
    db.session.commit()
    return sent


@shared_task(name="tasks.sweeps.audit_verification", time_limit=3600, soft_time_limit=3500)
def audit_verification() -> bool:
    """The daily full verification of the audit chain, with a checkpoint of its head when it verifies."""
    from backoffice.services import audit

    result = audit.run_verification(db.session, "system:audit-verification")
    db.session.commit()
    return result.ok
