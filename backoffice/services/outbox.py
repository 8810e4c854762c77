"""The notification outbox: messages are written with the change and delivered later by a task.

Delivery is safe to retry. A message is claimed (its attempt counted and its Message-ID fixed) and that claim
committed before anything is sent; the outcome is recorded after. A worker killed between sending and
recording leaves the message "being sent": once its lease has passed it is sent again with the same
Message-ID, which a mail program shows as one message. A temporary failure (4xx, a refused or lost
connection) is tried again with a doubling back-off; a permanent one (5xx), or the last attempt, marks the
message failed, and staff see it on the Outgoing mail page.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from backoffice import mail
from backoffice.models import Account, DeliveryState, Notification, utcnow
from backoffice.services import audit
from backoffice.services.errors import InvalidTransition

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:outbox"
# What an auditor sees of a message whose delivery changed by a decision (a failure, a staff retry).
AUDITED = ("recipient_email", "kind", "subject", "delivery_state", "attempts", "failed_at", "last_error")


@dataclass(frozen=True)
class DeliveryPolicy:
    """The settings delivery runs under (MAIL_* in config.py)."""

    sender: str
    # Page paths stored with messages are made absolute on this address (PUBLIC_BASE_URL).
    base_url: str = ""
    batch_size: int = 100
    max_attempts: int = 8
    backoff_seconds: int = 60
    max_backoff_seconds: int = 6 * 3600
    lease_seconds: int = 600

    @classmethod
    def from_config(cls, config) -> "DeliveryPolicy":
        return cls(sender=config["MAIL_FROM"], base_url=config.get("PUBLIC_BASE_URL", ""), batch_size=config["MAIL_BATCH_SIZE"],
                   max_attempts=config["MAIL_MAX_ATTEMPTS"], backoff_seconds=config["MAIL_RETRY_BACKOFF_SECONDS"],
                   max_backoff_seconds=config["MAIL_MAX_BACKOFF_SECONDS"],
                   lease_seconds=config["MAIL_SENDING_LEASE_SECONDS"])

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(0, attempts - 1)))


def enqueue(session: Session, *, kind: str, subject: str, body: str, link: str | None = None,
            account: Account | None = None, email: str | None = None) -> Notification:
    """Write a notification in the caller's transaction; it is sent only if that transaction commits."""
    recipient = email or (account.email if account else None)
    if not recipient:
        raise ValueError("a notification needs a recipient")
    now = utcnow()
    note = Notification(
        recipient_account_id=account.id if account else None, recipient_email=recipient,
        kind=kind, subject=subject, body=body, link=link, created_at=now,
        delivery_state=DeliveryState.PENDING, next_attempt_at=now,
    )
    session.add(note)
    session.flush()
    return note


def _due(now: datetime, policy: DeliveryPolicy):
    stale = now - timedelta(seconds=policy.lease_seconds)
    return or_(
        and_(Notification.delivery_state == DeliveryState.PENDING, Notification.next_attempt_at <= now),
        and_(Notification.delivery_state == DeliveryState.SENDING, Notification.attempt_started_at < stale),
    )


def claim(session: Session, policy: DeliveryPolicy, now: datetime | None = None) -> list[int]:
    """Take the messages that are due, oldest first: count the attempt and fix the Message-ID.

    The caller commits the claim before sending; rows another worker holds are skipped, not waited for.
    """
    now = now or utcnow()
    notes = session.scalars(
        select(Notification).where(_due(now, policy)).order_by(Notification.id).limit(policy.batch_size)
        .with_for_update(skip_locked=True)
    ).all()
    for note in notes:
        note.delivery_state = DeliveryState.SENDING
        note.attempts += 1
        note.attempt_started_at = now
        if note.message_id is None:
            note.message_id = mail.new_message_id(policy.sender)
    session.flush()
    return [note.id for note in notes]


def to_send(session: Session, note_id: int, policy: DeliveryPolicy) -> tuple[EmailMessage, str] | None:
    """The message of a claimed notification, built to send, and its name in a file outbox; None if it is no
    longer claimed. The caller ends the transaction before sending: nothing stays open while the mail server
    answers."""
    note = session.get(Notification, note_id)
    if note is None or note.delivery_state != DeliveryState.SENDING:
        return None
    return mail.build_message(note, policy.sender, policy.base_url), f"{note.id:08d}-{note.kind}"


def record_outcome(session: Session, note_id: int, outcome: mail.Outcome, policy: DeliveryPolicy,
                   now: datetime | None = None) -> None:
    """What the mail server said about a message sent, in its own transaction; a message no longer claimed
    (another worker finished it meanwhile) is left as it is."""
    note = session.get(Notification, note_id)
    if note is None or note.delivery_state != DeliveryState.SENDING:
        return
    record(session, note, outcome, policy, now or utcnow())
    session.flush()


def record(session: Session, note: Notification, outcome: mail.Outcome, policy: DeliveryPolicy, now: datetime) -> None:
    if outcome.status == mail.SENT:
        note.delivery_state = DeliveryState.SENT
        note.sent_at = now
        note.last_reply = outcome.reply
        note.last_error = None
        log.info("mail %s (%s) to %s: %s — %s", note.id, note.kind, note.recipient_email, note.subject,
                 outcome.reply)
        # Whether, when and after how many attempts the person was told: the auditors read a message's fate
        # here; its body stays in the outbox (it may carry a single-use link).
        audit.record(session, SYSTEM_ACTOR, "notification.sent", "notification", note.id,
                     after={"kind": note.kind, "recipient_account_id": note.recipient_account_id,
                            "sent_at": note.sent_at, "attempts": note.attempts, "message_id": note.message_id,
                            "reply": outcome.reply})
    elif outcome.status == mail.PERMANENT or note.attempts >= policy.max_attempts:
        before = audit.snapshot(note, AUDITED)
        note.delivery_state = DeliveryState.FAILED
        note.failed_at = now
        note.last_error = outcome.reply
        why = "refused" if outcome.status == mail.PERMANENT else f"still failing after {note.attempts} attempts"
        log.warning("mail %s (%s) to %s could not be delivered (%s): %s", note.id, note.kind,
                    note.recipient_email, why, outcome.reply)
        audit.record(session, SYSTEM_ACTOR, "notification.failed", "notification", note.id, before=before,
                     after=audit.snapshot(note, AUDITED), reason=f"{why}: {outcome.reply}")
    else:
        note.delivery_state = DeliveryState.PENDING
        note.next_attempt_at = now + policy.backoff(note.attempts)
        note.last_error = outcome.reply
        log.info("mail %s (%s) to %s: temporary failure, attempt %s, next at %s: %s", note.id, note.kind,
                 note.recipient_email, note.attempts, note.next_attempt_at.isoformat(timespec="seconds"),
                 outcome.reply)


def retry(session: Session, actor: Account, note_id: int, now: datetime | None = None,
          kinds: tuple[str, ...] | None = None) -> Notification:
    """Send an undelivered message again (after the address or the mail server was put right); audited. Only
    one of `kinds` when given (what the actor may see)."""
    note = session.get(Notification, note_id)
    if note is None or (kinds is not None and note.kind not in kinds):
        raise InvalidTransition("There is no such message.")
    if note.delivery_state != DeliveryState.FAILED:
        raise InvalidTransition(
            f"This message is {note.delivery_state.label}: only one that could not be delivered is sent again.")
    before = audit.snapshot(note, AUDITED)
    note.delivery_state = DeliveryState.PENDING
    note.next_attempt_at = now or utcnow()
    note.failed_at = None
    audit.record(session, actor, "notification.retried", "notification", note.id, before=before,
                 after=audit.snapshot(note, AUDITED), provider_id=None)
    session.flush()
    return note


# Every kind of message, as staff read it on the Outgoing mail page.
KIND_NAMES = {
    "confirm_email": "e-mail address confirmation",
    "registration_exists": "registration for an address that has an account",
    "password_reset": "password reset link",
    "staff_welcome": "new staff member's set-up link",
    "second_factor_reset": "second factor reset",
    "info_requested": "question from the research team",
    "decided": "decision on a request",
    "expiry_reminder": "licence or accreditation expiry reminder",
    "staff_provider_answered": "to staff: a provider submitted or answered",
    "staff_signoff_waiting": "to staff: a decision awaits sign-off",
    "staff_critical_finding": "to staff: a critical finding opened",
    "staff_digest": "to staff: daily digest",
}

# The lists of the Outgoing mail page: which delivery states each shows.
MAIL_LISTS = {
    "undelivered": (DeliveryState.FAILED,),
    "waiting": (DeliveryState.PENDING, DeliveryState.SENDING),
    "sent": (DeliveryState.SENT,),
}
MAIL_PAGE_SIZE = 50
# What an admin (who manages staff accounts and reads no provider data) sees of the outgoing mail: the
# messages about staff accounts.
STAFF_ACCOUNT_KINDS = ("staff_welcome", "second_factor_reset")


@dataclass(frozen=True)
class MailPage:
    messages: list[Notification]
    next_before: int | None


def mail_page(session: Session, which: str, before_id: int | None = None,
              limit: int = MAIL_PAGE_SIZE, kinds: tuple[str, ...] | None = None) -> MailPage:
    """One list of the Outgoing mail page, newest first, a page at a time by id; only `kinds` when given."""
    query = (select(Notification).where(Notification.delivery_state.in_(MAIL_LISTS[which]))
             .order_by(Notification.id.desc()).limit(limit + 1))
    if kinds is not None:
        query = query.where(Notification.kind.in_(kinds))
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    rows = list(session.scalars(query))
    return MailPage(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


def open_counts(session: Session, kinds: tuple[str, ...] | None = None) -> dict[str, int]:
    """How many messages could not be delivered and how many wait: the small lists, counted from the index."""
    query = (select(Notification.delivery_state, func.count()).where(Notification.delivery_state.in_(
        (DeliveryState.FAILED, DeliveryState.PENDING, DeliveryState.SENDING))).group_by(Notification.delivery_state))
    if kinds is not None:
        query = query.where(Notification.kind.in_(kinds))
    rows = session.execute(query).all()
    by_state = {state: count for state, count in rows}
    return {"undelivered": by_state.get(DeliveryState.FAILED, 0),
            "waiting": by_state.get(DeliveryState.PENDING, 0) + by_state.get(DeliveryState.SENDING, 0)}
