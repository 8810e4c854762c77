"""The audit trail: append hash-chained events in the caller's transaction, and verify the chain."""
from __future__ import annotations

import contextvars
import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Iterable, Iterator

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from backoffice import txn
from backoffice.models import Account, AuditChainLock, AuditEvent, GENESIS_HASH, utcnow


@dataclass(frozen=True)
class RequestContext:
    request_id: str | None = None
    ip: str | None = None


_request_context: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "audit_request_context", default=RequestContext()
)


def set_request_context(request_id: str | None, ip: str | None) -> contextvars.Token:
    """Called by the web layer per request, so events carry the request id and client address."""
    return _request_context.set(RequestContext(request_id=request_id, ip=ip))


def reset_request_context(token: contextvars.Token) -> None:
    _request_context.reset(token)


Actor = Account | str


def actor_label(actor: Actor) -> str:
    """`user:<id>` for an account, the string itself for a system actor such as `system:<job>`."""
    if isinstance(actor, Account):
        return f"user:{actor.id}"
    if not actor.startswith("system:"):
        raise ValueError(f"a non-account actor must be 'system:<job>', not {actor!r}")
    return actor


def jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of an entity as JSON-ready values."""
    return {name: jsonable(getattr(obj, name)) for name in fields}


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """Only the fields whose values differ, as (before, after)."""
    keys = [k for k in after if before.get(k) != after[k]] + [k for k in before if k not in after]
    return ({k: before.get(k) for k in keys}, {k: after.get(k) for k in keys})


def canonical(event_fields: dict[str, Any]) -> str:
    return json.dumps(event_fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


HASHED_FIELDS = (
    "seq", "occurred_at", "actor", "action", "entity_type", "entity_id", "provider_id",
    "before", "after", "reason", "request_id", "ip",
)


def event_fields(ev: AuditEvent) -> dict[str, Any]:
    """The hashed content of an event: everything but the hashes themselves."""
    fields = {name: getattr(ev, name) for name in HASHED_FIELDS}
    fields["occurred_at"] = jsonable(fields["occurred_at"])
    return fields


def compute_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode("utf-8")).hexdigest()


_QUEUE = "audit_events"


class ChainLockMissing(RuntimeError):
    """The row that serialises appends and records the head is gone: the trail has been tampered with."""


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: Any,
    *,
    before: dict | None = None,
    after: dict | None = None,
    reason: str | None = None,
    provider_id: int | None = None,
) -> AuditEvent:
    """Record one event in the caller's transaction; it joins the chain when that transaction commits.

    Chaining at commit keeps the chain lock for the commit only, not for the whole transaction, and an
    event recorded in a rolled-back savepoint never reaches the chain.
    """
    context = _request_context.get()
    ev = AuditEvent(
        actor=actor_label(actor),
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        provider_id=provider_id,
        before=jsonable(before) if before is not None else None,
        after=jsonable(after) if after is not None else None,
        reason=reason,
        request_id=context.request_id,
        ip=context.ip,
    )
    txn.queue(session, _QUEUE, ev)
    return ev


@event.listens_for(Session, "before_commit")
def _chain_pending_events(session: Session) -> None:
    """Lock the chain, number and hash this transaction's events after the head, and move the head."""
    transaction = txn.innermost(session)
    if transaction is None or transaction.parent is not None:
        return  # a savepoint is being released; the outermost commit chains everything
    events = [ev for ev in txn.pending(session, _QUEUE) if ev.seq is None]
    if not events:
        return
    # An UPDATE takes a row lock on PostgreSQL and the write lock on SQLite: a second committer waits
    # here until this one ends, so both cannot extend the same head.
    locked = session.execute(
        update(AuditChainLock).where(AuditChainLock.id == 1).values(locked_at=utcnow()),
        execution_options={"synchronize_session": False},
    )
    if locked.rowcount != 1:
        raise ChainLockMissing("the audit chain's head row is missing; refusing to write to a tampered trail")
    seq, prev_hash = session.execute(
        select(AuditChainLock.head_seq, AuditChainLock.head_hash).where(AuditChainLock.id == 1)
    ).one()
    now = utcnow()
    for ev in events:
        seq += 1
        ev.seq, ev.occurred_at, ev.prev_hash = seq, now, prev_hash
        ev.hash = compute_hash(prev_hash, event_fields(ev))
        prev_hash = ev.hash
        session.add(ev)
    session.execute(
        update(AuditChainLock).where(AuditChainLock.id == 1).values(head_seq=seq, head_hash=prev_hash),
        execution_options={"synchronize_session": False},
    )


txn.on_root_end(_QUEUE, lambda session, items, committed: None)


@dataclass
class ChainReport:
    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None


def verify_events(events: Iterable[dict[str, Any]]) -> ChainReport:
    """Recompute the chain over events given as dicts (the export's shape) in sequence order."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    for row in events:
        seq = row["seq"]
        if seq != expected_seq:
            problem = f"expected event {expected_seq} next, found {seq}: events are missing or out of order"
            return ChainReport(False, checked, expected_seq - 1, prev_hash, expected_seq, problem)
        if row["prev_hash"] != prev_hash:
            return ChainReport(False, checked, seq - 1, prev_hash, seq,
                               "prev_hash does not match the hash of the event before it")
        fields = {k: row[k] for k in HASHED_FIELDS}
        if compute_hash(prev_hash, fields) != row["hash"]:
            return ChainReport(False, checked, seq - 1, prev_hash, seq,
                               "content does not match its hash: the event was altered")
        prev_hash, expected_seq, checked = row["hash"], seq + 1, checked + 1
    return ChainReport(True, checked, expected_seq - 1, prev_hash)


def iter_event_rows(session: Session, batch_size: int = 20_000) -> Iterator[dict[str, Any]]:
    """Every event in sequence order as plain dicts, read in keyset batches so memory stays flat."""
    table = AuditEvent.__table__
    last = 0
    while True:
        rows = session.execute(
            select(table).where(table.c.seq > last).order_by(table.c.seq).limit(batch_size)
        ).mappings().all()
        if not rows:
            return
        for row in rows:
            out = {k: row[k] for k in HASHED_FIELDS}
            out["occurred_at"] = jsonable(row["occurred_at"])
            out["prev_hash"], out["hash"] = row["prev_hash"], row["hash"]
            yield out
        last = rows[-1]["seq"]


def verify_chain(session: Session, batch_size: int = 20_000) -> ChainReport:
    """Walk the stored chain from the first event, then check it ends at the head the lock row records.

    The second check catches events removed from the end, which leave an intact but shorter chain.
    """
    report = verify_events(iter_event_rows(session, batch_size))
    if not report.ok:
        return report
    recorded = session.execute(
        select(AuditChainLock.head_seq, AuditChainLock.head_hash).where(AuditChainLock.id == 1)
    ).first()
    if recorded is None:
        return ChainReport(False, report.checked, report.head_seq, report.head_hash, report.head_seq + 1,
                           "the chain's head record is missing")
    if recorded.head_seq != report.head_seq or recorded.head_hash != report.head_hash:
        return ChainReport(False, report.checked, report.head_seq, report.head_hash, report.head_seq + 1,
                           f"the chain should end at event {recorded.head_seq} but the stored events end at "
                           f"{report.head_seq}: events after {report.head_seq} are missing or replaced")
    return report
