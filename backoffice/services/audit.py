"""The audit trail: append hash-chained events in the caller's transaction, and verify the chain."""
from __future__ import annotations

import contextvars
import itertools
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Iterable, Iterator

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from backoffice import auditverify, txn
from backoffice.auditverify import HASHED_FIELDS, compute_hash  # one hash for the database check and exports
from backoffice.models import (
    Account, AuditChainLock, AuditCheckpoint, AuditEvent, AuditVerification, utcnow,
)


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


def event_fields(ev: AuditEvent) -> dict[str, Any]:
    """The hashed content of an event: everything but the hashes themselves."""
    fields = {name: getattr(ev, name) for name in HASHED_FIELDS}
    fields["occurred_at"] = jsonable(fields["occurred_at"])
    return fields


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


ChainReport = auditverify.Result


def iter_event_rows(session: Session, batch_size: int = 20_000, *, from_seq: int = 1, to_seq: int | None = None,
                    provider_id: int | None = None) -> Iterator[dict[str, Any]]:
    """Events in sequence order as export records, read in keyset batches so memory stays flat."""
    table = AuditEvent.__table__
    last = from_seq - 1
    while True:
        query = select(table).where(table.c.seq > last)
        if to_seq is not None:
            query = query.where(table.c.seq <= to_seq)
        if provider_id is not None:
            query = query.where(table.c.provider_id == provider_id)
        rows = session.execute(query.order_by(table.c.seq).limit(batch_size)).mappings().all()
        if not rows:
            return
        for row in rows:
            record = {"record": "event", **{k: row[k] for k in HASHED_FIELDS}}
            record["occurred_at"] = jsonable(row["occurred_at"])
            record["prev_hash"], record["hash"] = row["prev_hash"], row["hash"]
            yield record
        last = rows[-1]["seq"]


def chain_head(session: Session) -> tuple[int, str]:
    row = session.execute(select(AuditChainLock.head_seq, AuditChainLock.head_hash)
                          .where(AuditChainLock.id == 1)).first()
    if row is None:
        raise ChainLockMissing("the audit chain's head row is missing")
    return row.head_seq, row.head_hash


def checkpoint_records(session: Session) -> Iterator[dict[str, Any]]:
    for cp in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)):
        yield {"record": "checkpoint", "seq": cp.head_seq, "hash": cp.head_hash, "taken_at": jsonable(cp.taken_at)}


def verify_chain(session: Session, batch_size: int = 20_000) -> ChainReport:
    """Walk the stored chain from the first event, checking every checkpoint on the way, and check it
    ends at the head the chain records; the same check the offline script makes on an export."""
    try:
        head_seq, head_hash = chain_head(session)
    except ChainLockMissing as exc:
        return ChainReport(False, 0, None, str(exc))
    header = {"record": "export", "contiguous": True, "through_head": True,
              "head_seq": head_seq, "head_hash": head_hash}
    records = itertools.chain([header], checkpoint_records(session), iter_event_rows(session, batch_size))
    return auditverify.verify_records(records)


def run_verification(session: Session, run_by: str) -> AuditVerification:
    """Verify the whole chain, keep the result, and take a checkpoint of the head if it verified."""
    started = utcnow()
    head_seq, head_hash = chain_head(session)
    report = verify_chain(session)
    result = AuditVerification(started_at=started, finished_at=utcnow(), checked=report.checked, ok=report.ok,
                               broken_seq=report.first_bad_seq, problem=report.problem, run_by=run_by)
    session.add(result)
    if report.ok:
        session.add(AuditCheckpoint(taken_at=utcnow(), head_seq=head_seq, head_hash=head_hash))
    session.flush()
    return result


def latest_verification(session: Session) -> AuditVerification | None:
    return session.scalar(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1))


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
