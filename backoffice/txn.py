"""Work that lives and dies with a database transaction, savepoints included.

Things queued during a transaction (tasks to send, audit events to chain) are tagged with the innermost
transaction. A savepoint that rolls back drops its own; one that is released hands them to its parent;
the outermost transaction runs them if it committed and drops them otherwise (rollback or close).
"""
from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

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
