"""Send Celery tasks only once the transaction that asked for them has committed.

Requested work (backoffice/services/work.py) is sent the same way: its row's id, after the commit that
recorded it; the row is then marked sent. A broker that refuses (down, unreachable) is logged once per
commit and the rows stay requested: the reconciler sends them when it answers again.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from backoffice import txn, unit_of_work
from backoffice.extensions import db
from backoffice.models import WorkKind
from backoffice.services import work

log = logging.getLogger(__name__)

_QUEUE = "tasks_after_commit"

# The task that does each kind of work; it is given the row's id only.
WORK_TASKS = {
    WorkKind.RECHECK_NOW: "tasks.checks.run_check",
    WorkKind.SCHEDULED_CHECK: "tasks.checks.run_check",
    WorkKind.SCREENING: "tasks.checks.run_check",
    WorkKind.IMPORT_SCREENING: "tasks.checks.exclusion_sweep",
    WorkKind.SCREENING_BATCH: "tasks.checks.screen_batch",
    WorkKind.EXPIRY_SWEEP: "tasks.sweeps.verification_expiry_sweep",
    WorkKind.CHECKPOINT: "tasks.sweeps.publish_checkpoint",
    WorkKind.REREVIEWS: "tasks.sweeps.open_rereviews",
}


def after_commit(session: Session, task: Any, *args: Any, **kwargs: Any) -> None:
    """Send `task(*args, **kwargs)` when the transaction commits; dropped on rollback, close or savepoint rollback."""
    txn.queue(session, _QUEUE, (task, args, kwargs))


def _send(session: Session, items: list, committed: bool) -> None:
    if committed:
        for task, args, kwargs in items:
            task.apply_async(args=args, kwargs=kwargs)


def _task(name: str):
    celery = current_app.extensions["celery"]
    if name not in celery.tasks:
        # The task modules import this one (to send after commit), so they are loaded when first needed.
        importlib.import_module(name.rsplit(".", 1)[0])
    return celery.tasks[name]


# Work sent several rows a message (RECHECK_MESSAGE_ROWS): the sweep's scheduled checks, many at once.
BUNDLED = {WorkKind.SCHEDULED_CHECK: "tasks.checks.run_checks"}


def _messages(items: list[tuple[int, WorkKind]], rows_a_message: int) -> list[tuple[str, list, list[int]]]:
    """(task, args, the rows it carries) for each message: a bundled kind's rows `rows_a_message` at a time, each
    message as soon as it is full and what is left at the end (a lone row goes to its own task); every other row
    alone, in the order given."""
    messages: list[tuple[str, list, list[int]]] = []
    gathering: dict[WorkKind, list[int]] = {}
    for work_id, kind in items:
        if kind not in BUNDLED or rows_a_message <= 1:
            messages.append((WORK_TASKS[kind], [work_id], [work_id]))
            continue
        rows = gathering.setdefault(kind, [])
        rows.append(work_id)
        if len(rows) == rows_a_message:
            messages.append((BUNDLED[kind], [rows], rows))
            gathering[kind] = []
    for kind, rows in gathering.items():
        if len(rows) == 1:
            messages.append((WORK_TASKS[kind], rows, rows))
        elif rows:
            messages.append((BUNDLED[kind], [rows], rows))
    return messages


def send_work(items: list[tuple[int, WorkKind]], *, alone: bool = False) -> list[int]:
    """Send each row's id to its task (the sweep's checks several a message, unless `alone`: rows sent again), then
    mark the accepted ones sent; returns their ids.

    Never raises for the broker: the first refusal is logged and the rest are left requested, for the
    reconciler (a broker that refused one message would refuse the next, each after its own timeout)."""
    if not items:
        return []
    sent: list[int] = []
    for task, args, rows in _messages(items, 1 if alone else current_app.config["RECHECK_MESSAGE_ROWS"]):
        try:
            _task(task).apply_async(args=args)
        except Exception as exc:  # noqa: BLE001 - whatever the broker's client raises, the row is kept
            log.warning("The worker queue did not accept work %s (%s: %s); it and %d more are kept as requested "
                        "and will be sent by the reconciler", rows[0], exc.__class__.__name__, exc,
                        len(items) - len(sent) - 1)
            break
        sent.extend(rows)
    if sent:
        # The asking transaction has ended; this bookkeeping has a short one of its own.
        with Session(db.engine) as marking, unit_of_work.atomic(marking):
            work.mark_sent(marking, sent, work.Policy.from_config(current_app.config))
    return sent


def _send_work(session: Session, items: list, committed: bool) -> None:
    if committed:
        send_work(items)


def _send_work_again(session: Session, items: list, committed: bool) -> None:
    if committed:
        send_work(items, alone=True)


txn.on_root_end(_QUEUE, _send)
txn.on_root_end(work.SEND_QUEUE, _send_work)
txn.on_root_end(work.RESEND_QUEUE, _send_work_again)
