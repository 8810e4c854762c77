"""The notification outbox: messages are written with the change and delivered later by a task."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import Account, Notification, utcnow
from backoffice.services import audit

log = logging.getLogger(__name__)


def enqueue(session: Session, *, kind: str, subject: str, body: str,
            account: Account | None = None, email: str | None = None) -> Notification:
    """Write a notification in the caller's transaction; it is sent only if that transaction commits."""
    recipient = email or (account.email if account else None)
    if not recipient:
        raise ValueError("a notification needs a recipient")
    note = Notification(
        recipient_account_id=account.id if account else None, recipient_email=recipient,
        kind=kind, subject=subject, body=body,
    )
    session.add(note)
    session.flush()
    return note


def deliver_pending(session: Session, folder: str, limit: int = 100) -> int:
    """Deliver unsent notifications to the log and a local outbox folder; returns how many were sent."""
    pending = session.scalars(
        select(Notification).where(Notification.sent_at.is_(None)).order_by(Notification.id).limit(limit)
    ).all()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for note in pending:
        note.attempts += 1
        message = {
            "id": note.id, "to": note.recipient_email, "kind": note.kind,
            "subject": note.subject, "body": note.body,
        }
        (out / f"{note.id:08d}-{note.kind}.json").write_text(json.dumps(message, indent=2))
        log.info("notification %s to %s: %s\n%s", note.id, note.recipient_email, note.subject, note.body)
        note.sent_at = utcnow()
        # Whether, when and after how many attempts the person was told: the auditors read a message's fate
        # here; its body stays in the outbox (it may carry a single-use link).
        audit.record(session, "system:outbox", "notification.sent", "notification", note.id,
                     after={"kind": note.kind, "recipient_account_id": note.recipient_account_id,
                            "sent_at": note.sent_at, "attempts": note.attempts})
    session.flush()
    return len(pending)
