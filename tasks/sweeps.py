"""Periodic sweeps: find what is due and act on it, in bounded batches, safe to run twice."""
from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from flask import current_app

from backoffice import mail, unit_of_work
from backoffice.extensions import db
from backoffice.models import CatalogueImpact, utcnow
from backoffice.services import audit_publish, expiry, impact, outbox, reverification, staff_notices, work

log = logging.getLogger(__name__)
BATCH_SIZE = 500


@shared_task(name="tasks.sweeps.verification_expiry_sweep", time_limit=600, soft_time_limit=540)
def verification_expiry_sweep(work_id: int | None = None) -> int:
    """Expire every verification whose verified_until has passed, each provider in its own transaction (one
    that keeps losing a race to a concurrent edit is left for the next, hourly, pass): on beat, or as work a
    research lead asked for."""
    if work_id is not None:
        with unit_of_work.atomic():
            claimed = work.claim(db.session, work_id, work.Policy.from_config(current_app.config), lease_seconds=900)
        if claimed is None:
            return 0
    actor, now = "system:verification-expiry-sweep", utcnow()
    after_id, total, left = 0, 0, []
    while True:
        ids = expiry.lapsed_provider_ids(db.session, now, BATCH_SIZE, after_id)
        unit_of_work.discard()  # the read ends here; each provider is read again in its own transaction
        if not ids:
            break
        changed, missed = unit_of_work.one_by_one(db.session, ids, lambda provider_id: expiry.expire_one(
            db.session, actor, provider_id, now), what="verification expiry of provider")
        total, left, after_id = total + changed, left + missed, ids[-1]
    if left:
        log.warning("verification expiry: providers %s kept losing races; the next pass expires them", left)
    if work_id is not None:
        with unit_of_work.atomic():
            work.complete(db.session, work_id)
    return total


@shared_task(name="tasks.sweeps.reverification_sweep", time_limit=3600, soft_time_limit=3500)
def reverification_sweep() -> int:
    """Each day, open the re-verification request of every verified provider whose verification ends within
    REVERIFICATION_LEAD_DAYS (once per verification period: a second pass opens nothing)."""
    return open_reverifications(utcnow())


def open_reverifications(now: datetime) -> int:
    """The sweep's work at `now` (a test moves the clock through here): batches of due providers in id order,
    each provider opened in its own transaction; returns how many requests were opened."""
    actor = "system:reverification-sweep"
    policy = reverification.Policy.from_config(current_app.config)
    after_id, total, left = 0, 0, []
    while True:
        ids = reverification.due_provider_ids(db.session, now, policy, BATCH_SIZE, after_id)
        unit_of_work.discard()  # the read ends here; each provider is read again in its own transaction
        if not ids:
            break
        opened, missed = unit_of_work.one_by_one(db.session, ids, lambda provider_id: reverification.open_due(
            db.session, actor, provider_id, now, policy), what="re-verification of provider")
        total, left, after_id = total + opened, left + missed, ids[-1]
    if left:
        log.warning("re-verification: providers %s kept losing races; the next pass opens theirs", left)
    return total


@shared_task(name="tasks.sweeps.deliver_notifications")  # time limits: MAIL_DELIVERY_TIME_LIMIT_SECONDS
def deliver_notifications() -> int:
    """Send what is due: the claim is committed before sending, each message is read in a transaction that ends
    before the mail server is asked, and its outcome is recorded in one of its own right after."""
    policy = outbox.DeliveryPolicy.from_config(current_app.config)
    with unit_of_work.atomic():
        claimed = outbox.claim(db.session, policy)
    if not claimed:
        return 0
    sent = 0
    with mail.transport_for(current_app.config) as transport:
        for note_id in claimed:
            with unit_of_work.atomic():
                outgoing = outbox.to_send(db.session, note_id, policy)
            if outgoing is None:
                continue
            message, name = outgoing
            outcome = transport.send(message, name=name)
            with unit_of_work.atomic():
                outbox.record_outcome(db.session, note_id, outcome, policy)
            sent += outcome.status == mail.SENT
    return sent


@shared_task(name="tasks.sweeps.staff_digest", time_limit=600, soft_time_limit=540)
def staff_digest() -> int:
    """Each day, one message per staff member with the notices they chose to get in a digest."""
    with unit_of_work.atomic():
        written = staff_notices.write_digests(db.session, current_app.config.get("PUBLIC_BASE_URL", ""))
    return written


@shared_task(name="tasks.sweeps.audit_verification", time_limit=3600, soft_time_limit=3500)
def audit_verification() -> bool:
    """The daily full verification of the audit chain, held to the published signed checkpoints too, with a
    checkpoint of its head when it verifies, signed and published."""
    with unit_of_work.atomic():
        result, _, refused = audit_publish.verify_and_publish(db.session, "system:audit-verification",
                                                              audit_publish.of_app(current_app))
    if refused is not None:
        log.error("audit verification: %s", refused)
    return result.ok and refused is None


@shared_task(name="tasks.sweeps.publish_checkpoint", time_limit=120, soft_time_limit=100)
def publish_checkpoint(work_id: int) -> bool:
    """The light signed checkpoint of the chain's head asked for when a provider's verification was granted."""
    with unit_of_work.atomic():
        claimed = work.claim(db.session, work_id, work.Policy.from_config(current_app.config))
    if claimed is None:
        return False
    with unit_of_work.atomic():
        try:
            audit_publish.publish_head(db.session, audit_publish.of_app(current_app))
            published = True
        except audit_publish.PublishRefused as refused:
            # Not retried: the folder or the chain was changed behind the product's back, and the daily
            # verification, which fails on the same finding, says so to the auditors in words.
            log.error("no signed checkpoint after a grant: %s", refused)
            published = False
        work.complete(db.session, work_id)
    return published


@shared_task(name="tasks.sweeps.open_rereviews", time_limit=3600, soft_time_limit=3500)
def open_rereviews(work_id: int) -> int:
    """Open the re-reviews a criteria version's publication scheduled, a batch per transaction, so the page shows
    how many are open so far; a second run (a second delivery, or the reconciler's after a worker stopped) opens
    only what is still missing."""
    with unit_of_work.atomic():
        # The lease covers the time limit: a second worker takes the row only once this one is surely gone.
        claimed = work.claim(db.session, work_id, work.Policy.from_config(current_app.config), lease_seconds=3700)
    if claimed is None:
        return 0
    catalogue_id, by, now = int(claimed.target_id), str(claimed.params["by"]), utcnow()
    after: int | None = 0
    try:
        while after is not None:
            with unit_of_work.atomic():
                after = impact.open_rereviews(db.session, catalogue_id, by, after, now)
    except Exception as exc:
        # The batches opened so far stay; the version page names the error until the row is sent again.
        log.exception("opening the re-reviews of catalogue %s stopped", catalogue_id)
        with unit_of_work.atomic():
            work.note_error(db.session, work_id, f"{type(exc).__name__}: {exc}")
        raise
    with unit_of_work.atomic():
        work.complete(db.session, work_id)
        kept = db.session.get(CatalogueImpact, catalogue_id)
        return (kept.scheduled or 0) if kept is not None else 0
