"""Send Celery tasks only once the transaction that asked for them has committed."""
from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from backoffice import txn

_QUEUE = "tasks_after_commit"


def after_commit(session: Session, task: Any, *args: Any, **kwargs: Any) -> None:
    """Send `task(*args, **kwargs)` when the transaction commits; dropped on rollback, close or savepoint rollback."""
    txn.queue(session, _QUEUE, (task, args, kwargs))


def _send(session: Session, items: list, committed: bool) -> None:
    if committed:
        for task, args, kwargs in items:
            task.apply_async(args=args, kwargs=kwargs)


txn.on_root_end(_QUEUE, _send)
