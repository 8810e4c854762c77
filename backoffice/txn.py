"""Work that lives and dies with a database transaction, savepoints included, and how a transaction that
lost a race ends.

Things queued during a transaction (tasks to send, audit events to chain) are tagged with the innermost
transaction. A savepoint that rolls back drops its own; one that is released hands them to its parent;
the outermost transaction runs them if it committed and drops them otherwise (rollback or close).

A transaction loses a race when the database refuses one of its writes because another transaction changed
the same rows first: a versioned UPDATE that matches no row (StaleDataError), a deadlock or a serialisation
failure (PostgreSQL), a write lock never granted (SQLite). Whichever statement loses, an explicit flush, the
autoflush before a query, the flush inside commit or a plain statement, it raises services.errors.LostRace
(a Conflict), so every page that shows a Conflict's message shows this one, and a sweep can retry it. The
unit of work that catches it rolls back: nothing of the losing transaction is kept.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, TypeVar

from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, SessionTransaction, scoped_session
from sqlalchemy.orm.exc import StaleDataError

from backoffice.services.errors import LostRace

log = logging.getLogger(__name__)
T = TypeVar("T")
K = TypeVar("K")

# PostgreSQL's codes for "run this transaction again": serialization_failure, deadlock_detected.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

_COMMITTED = "txn_committed"
_QUEUES = "txn_queues"

EndHandler = Callable[[Session, list, bool], None]
_on_root_end: dict[str, EndHandler] = {}


def _real(session: Session | scoped_session) -> Session:
    return session() if isinstance(session, scoped_session) else session


def innermost(session: Session | scoped_session) -> SessionTransaction | None:
    session = _real(session)
    return session.get_nested_transaction() or session.get_transaction()


def queue(session: Session | scoped_session, name: str, item: Any) -> None:
    """Keep `item` until the transaction ends; a transaction is begun if none is open."""
    session = _real(session)
    transaction = innermost(session) or session.begin()
    session.info.setdefault(_QUEUES, {}).setdefault(name, []).append((transaction, item))


def pending(session: Session, name: str) -> list:
    """Items still queued under `name`, oldest first."""
    return [item for _, item in session.info.get(_QUEUES, {}).get(name, [])]


def on_root_end(name: str, handler: EndHandler) -> None:
    """Call handler(session, items, committed) when the outermost transaction ends."""
    _on_root_end[name] = handler


@event.listens_for(Session, "after_commit")
def _mark_committed(session: Session) -> None:
    transaction = innermost(session)
    if transaction is not None:
        session.info.setdefault(_COMMITTED, set()).add(transaction)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    committed_set = session.info.get(_COMMITTED, set())
    committed = transaction in committed_set
    committed_set.discard(transaction)
    queues = session.info.get(_QUEUES, {})
    for name, entries in list(queues.items()):
        mine = [item for owner, item in entries if owner is transaction]
        others = [(owner, item) for owner, item in entries if owner is not transaction]
        if transaction.parent is not None:
            if committed:  # a released savepoint: its work now belongs to the enclosing transaction
                others += [(transaction.parent, item) for item in mine]
            queues[name] = others
        else:
            queues[name] = others
            if name in _on_root_end:
                _on_root_end[name](session, mine, committed)


# -- lost races -------------------------------------------------------------------------------------


def is_lost_race(dbapi_error: BaseException | None) -> bool:
    """Whether the driver's error means another transaction got the rows first (the work may be run again)."""
    if dbapi_error is None:
        return False
    sqlstate = getattr(dbapi_error, "sqlstate", None) or getattr(dbapi_error, "pgcode", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    # SQLite's write lock was not granted within the busy timeout: another writer held it throughout.
    return type(dbapi_error).__module__.startswith("sqlite3") and "database is locked" in str(dbapi_error)


@event.listens_for(Engine, "handle_error")
def _raise_lost_race(context) -> None:
    if is_lost_race(context.original_exception):
        raise LostRace() from context.sqlalchemy_exception


class BackofficeSession(FlaskSession):
    """The class of db.session: a flush that finds its row version moved raises LostRace instead of
    StaleDataError, whichever call flushed (flush, autoflush, commit)."""

    def flush(self, objects=None) -> None:
        try:
            super().flush(objects)
        except StaleDataError as exc:
            raise LostRace() from exc


def retrying(session: Session | scoped_session, work: Callable[[], T], *, attempts: int = 3,
             what: str = "a transaction") -> T:
    """Run `work` and commit, as one small unit of work; when it loses a race, roll back and run it again from
    fresh reads, up to `attempts` times in all, then let the last LostRace go to the caller."""
    for attempt in range(1, attempts + 1):
        try:
            result = work()
            session.commit()
            return result
        except LostRace:
            session.rollback()
            if attempt == attempts:
                log.warning("%s lost a race %s times; giving up for now", what, attempts)
                raise
            log.info("%s lost a race (attempt %s of %s); trying again", what, attempt, attempts)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def one_by_one(session: Session | scoped_session, items: Iterable[K], work: Callable[[K], bool], *,
               attempts: int = 3, what: str = "item") -> tuple[int, list[K]]:
    """A sweep's pass: each item in its own small transaction (retried when it loses a race), so one item
    that keeps losing is left for the next pass and never holds back or undoes the others.

    Returns how many items `work` changed (it returns True when it did) and the items left for next time
    (those that kept losing races, and any that failed, whose traceback is logged).
    """
    changed, left = 0, []
    for item in items:
        try:
            changed += bool(retrying(session, lambda: work(item),  # noqa: B023 - retrying calls it at once
                                     attempts=attempts, what=f"{what} {item}"))
        except LostRace:
            left.append(item)
        except Exception:  # noqa: BLE001 - one item's failure is logged and left; the others still run
            session.rollback()
            log.exception("%s %s failed; left for the next pass", what, item)
            left.append(item)
    return changed, left
