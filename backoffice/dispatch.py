"""Send Celery tasks only once the transaction that asked for them has committed."""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_KEY = "tasks_after_commit"


def after_commit(session: Session, task: Any, *args: Any, **kwargs: Any) -> None:
    """Queue `task.delay(*args, **kwargs)` for when the session's transaction commits; dropped on rollback."""
    # Make sure a transaction is open, so that a rollback of it is seen and drops the task.
    session.connection()
    session.info.setdefault(_KEY, []).append((task, args, kwargs))


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for task, args, kwargs in session.info.pop(_KEY, []):
        task.apply_async(args=args, kwargs=kwargs)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_KEY, None)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_on_outer_rollback(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_KEY, None)
