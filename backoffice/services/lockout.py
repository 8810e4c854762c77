"""Lock-outs that hold across every web process and host: attempts counted in the database, not in memory.

Flask-Limiter without Redis counts in each process apart, so two gunicorn workers let twice the limit
through; these counts live in the one database every process shares, with or without Redis.

Races. Counting and writing an attempt happen in one short transaction that holds a lock on the key first
(PostgreSQL: a transaction-level advisory lock on the key; SQLite: the database's single write lock, taken
by the transaction's first statement), so two workers counting at the same moment take turns: the second
counts the first one's attempt, and no more than the limit get through in a window however many processes
race. An attempt still being judged counts too, until it succeeds. An attempt that succeeds is removed again (the right password or code costs nothing); one refused by the
lock-out writes nothing, so hammering a locked address does not keep it locked beyond its window.

An attempt is counted in a transaction of its own on the engine, apart from the request's: it must be
visible to every process before the password is checked, whatever the request's transaction does next. It is
forgotten in the request's transaction, so only a success that commits makes it cost nothing (and on SQLite,
where the request may already hold the write lock by then, a second writer would wait on it).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse_many
from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from backoffice.models import AttemptKind, FailedAttempt, utcnow
from backoffice.services.errors import DomainError

log = logging.getLogger(__name__)
KEY_LENGTH = 254


@dataclass(frozen=True)
class Window:
    amount: int
    seconds: int
    text: str  # as the refusal names it: "10 per 15 minute"


@dataclass(frozen=True)
class Attempt:
    id: int
    kind: AttemptKind
    key: str


class LockedOut(DomainError):
    """Too many failed attempts for this key within a window; nothing was checked."""

    def __init__(self, window: Window):
        super().__init__(f"Too many attempts: the limit is {window.text}.")
        self.window = window
        self.limit = window.text

    def __reduce__(self):
        return type(self), (self.window,)


def windows(spec: str) -> tuple[Window, ...]:
    """The windows of a limit setting such as "5 per 15 minutes;20 per day"."""
    return tuple(Window(item.amount, item.get_expiry(), str(item)) for item in parse_many(spec))


def begin(engine: Engine, kind: AttemptKind, key: str, spec: str, now: datetime | None = None) -> Attempt:
    """Count an attempt before it is judged; LockedOut (and nothing counted) when the key is over a limit."""
    limits = windows(spec)
    key = key[:KEY_LENGTH]
    now = now or utcnow()
    longest = timedelta(seconds=max(window.seconds for window in limits))
    with engine.begin() as conn:
        _lock_key(conn, kind, key)
        conn.execute(delete(FailedAttempt).where(FailedAttempt.kind == kind, FailedAttempt.attempted_at < now - longest))
        in_window = [func.coalesce(func.sum(case((FailedAttempt.attempted_at > now - timedelta(seconds=w.seconds), 1),
                                                 else_=0)), 0) for w in limits]
        counts = conn.execute(select(*in_window).where(
            FailedAttempt.kind == kind, FailedAttempt.key == key, FailedAttempt.attempted_at > now - longest)).one()
        for window, count in zip(limits, counts, strict=True):
            if count >= window.amount:
                log.warning("%s locked out for %r: %d attempts within %s", kind.label, key, count, window.text)
                raise LockedOut(window)
        inserted = conn.execute(insert(FailedAttempt).values(kind=kind, key=key, attempted_at=now)
                                ).inserted_primary_key
        assert inserted is not None  # None only for a many-row INSERT
        attempt_id = inserted[0]
    return Attempt(attempt_id, kind, key)


def forget(session: Session, attempt: Attempt) -> None:
    """The attempt succeeded: once the caller's transaction commits, it does not count against the key."""
    session.execute(delete(FailedAttempt).where(FailedAttempt.id == attempt.id))
    session.flush()


def _lock_key(conn, kind: AttemptKind, key: str) -> None:
    """Hold the key until this transaction ends, so the count that follows sees every attempt before it."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"lockout:{kind.value}:{key}".encode()).digest()
        conn.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest[:8], "big", signed=True))))
    # SQLite: the DELETE that follows takes the database's write lock before it reads anything, and holds it
    # until commit; writers wait for it in turn (busy_timeout).
