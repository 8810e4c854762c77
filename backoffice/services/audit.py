"""The audit trail: append hash-chained events in the caller's transaction, and verify the chain."""
from __future__ import annotations

import contextvars
import hashlib
import itertools
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Iterable, Iterator, Sequence

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from backoffice import auditverify, txn
from backoffice.auditverify import (  # one hash for the database check and exports
    HASHED_FIELDS,
    canonical,
    compute_hash,
)
from backoffice.models import (
    GENESIS_HASH,
    Account,
    AuditChainLock,
    AuditCheckpoint,
    AuditEvent,
    AuditVerification,
    utcnow,
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


@dataclass(slots=True)
class PendingEvent:
    """An event recorded in a transaction, chained (numbered, stamped, hashed) when it commits. A plain object,
    not an AuditEvent entity: appends are on every commit that changes anything, and the chain writes them
    with one INSERT, so nothing gains from the ORM tracking them."""

    actor: str
    action: str
    entity_type: str
    entity_id: str
    provider_id: int | None
    before: Any
    after: Any
    reason: str | None
    request_id: str | None
    ip: str | None
    seq: int | None = None
    occurred_at: datetime | None = None
    prev_hash: str | None = None
    hash: str | None = None


def event_fields(ev: AuditEvent | PendingEvent) -> dict[str, Any]:
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
) -> PendingEvent:
    """Record one event in the caller's transaction; it joins the chain when that transaction commits.

    Chaining at commit keeps the chain lock for the commit only, not for the whole transaction, and an
    event recorded in a rolled-back savepoint never reaches the chain.
    """
    context = _request_context.get()
    ev = PendingEvent(
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
    # The append runs on every commit that changes anything, so it speaks to the driver directly, on the
    # transaction's own connection: three statements, no statement building (SQLAlchemy's per-statement cost
    # was several times the statements themselves; benchmarks/audit_chain.py compares with the bare driver).
    connection = session.connection()
    dialect = connection.dialect.name
    lock, insert_events, move_head = _APPEND_SQL["sqlite" if dialect == "sqlite" else "format"]
    cursor = connection.connection.cursor()
    try:
        now = utcnow()
        stamp = _sqlite_stamp(now) if dialect == "sqlite" else now
        # An UPDATE takes a row lock on PostgreSQL and the write lock on SQLite: a second committer waits
        # here until this one ends, so both cannot extend the same head. It returns the head it locked.
        cursor.execute(lock, (stamp,))
        head = cursor.fetchone()
        if head is None:
            raise ChainLockMissing("the audit chain's head row is missing; refusing to write to a tampered trail")
        seq, prev_hash = head
        rows = []
        for ev in events:
            seq += 1
            ev.seq, ev.occurred_at, ev.prev_hash = seq, now, prev_hash
            ev.hash = compute_hash(prev_hash, event_fields(ev))
            prev_hash = ev.hash
            # `before` and `after` are stored as their canonical text (None as JSON null): exactly the text the
            # hash covers, so the verification rebuilds the hashed text from the columns (_walk) as stored.
            rows.append((seq, stamp, ev.actor, ev.action, ev.entity_type, ev.entity_id, ev.provider_id,
                         canonical(ev.before), canonical(ev.after), ev.reason, ev.request_id, ev.ip,
                         ev.prev_hash, ev.hash))
        cursor.executemany(insert_events, rows)
        cursor.execute(move_head, (seq, prev_hash))
    finally:
        cursor.close()


def _sqlite_stamp(value: datetime) -> str:
    """A UTC time as UTCDateTime stores it on SQLite: naive UTC text, so that text order is time order."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


_EVENT_COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")


def _append_sql(mark: str) -> tuple[str, str, str]:
    return (f"UPDATE audit_chain_lock SET locked_at = {mark} WHERE id = 1 RETURNING head_seq, head_hash",
            f"INSERT INTO audit_event ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join([mark] * len(_EVENT_COLUMNS))})",
            f"UPDATE audit_chain_lock SET head_seq = {mark}, head_hash = {mark} WHERE id = 1")


# By the driver's parameter style: sqlite3 "qmark", psycopg "format".
_APPEND_SQL = {"sqlite": _append_sql("?"), "format": _append_sql("%s")}


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


# The hashed text of an event rebuilt from its stored columns by the database itself: the canonical JSON of the
# hashed fields (keys sorted, no spaces), with `before` and `after` as stored. Events the chain wrote since it
# stores those as canonical text (_chain_pending_events) come out exactly as they were hashed; an event stored
# otherwise (written before that) does not, and is checked the slow way, decoded and encoded again (_walk).
def _rebuilt_text_sql(dialect: str) -> str:
    if dialect == "sqlite":
        quote, null = "json_quote({})".format, "coalesce({}, 'null')".format
        stamp = ("replace(CASE WHEN substr(occurred_at, 20) = '.000000' THEN substr(occurred_at, 1, 19) "
                 "ELSE occurred_at END, ' ', 'T')")
    else:
        quote, null = "coalesce(to_json({})::text, 'null')".format, "coalesce({}::text, 'null')".format
        stamp = ("to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
                 "extract(microseconds FROM occurred_at)::bigint % 1000000 = 0 THEN '' "
                 "ELSE to_char(occurred_at AT TIME ZONE 'UTC', '.US') END")
    parts = [f"""'{{"action":' || {quote('action')}""", f"""',"actor":' || {quote('actor')}""",
             f"""',"after":' || {null('after')}""", f"""',"before":' || {null('before')}""",
             f"""',"entity_id":' || {quote('entity_id')}""", f"""',"entity_type":' || {quote('entity_type')}""",
             f"""',"ip":' || {quote('ip')}""", f"""',"occurred_at":"' || {stamp} || '+00:00"'""",
             f"""',"provider_id":' || {null('provider_id')}""", f"""',"reason":' || {quote('reason')}""",
             f"""',"request_id":' || {quote('request_id')}""", f"""',"seq":' || {null('seq')} || '}}'"""]
    return " || ".join(parts)


class _WalkedEvent(dict):
    """An event record read by the database walk, with whether its hash matched its content."""

    intact: bool


def _walked_intact(record: dict[str, Any]) -> bool:
    return isinstance(record, _WalkedEvent) and record.intact


def _walk(session: Session, to_seq: int, batch_size: int) -> Iterator[_WalkedEvent]:
    """Every event up to `to_seq` in order, each checked against its hash: from the text the database rebuilds
    (one hash a row, no decoding), and, where that does not match, from the decoded columns as exports do, so
    an event whose stored text is not canonical is judged by the same rule as everywhere."""
    connection = session.connection()
    dialect = connection.dialect.name
    mark = "?" if dialect == "sqlite" else "%s"
    query = (f"SELECT seq, prev_hash, hash, {_rebuilt_text_sql(dialect)} FROM audit_event "
             f"WHERE seq > {mark} AND seq <= {mark} ORDER BY seq LIMIT {int(batch_size)}")
    if dialect != "sqlite":
        query = query.replace("% 1000000", "%% 1000000")
    cursor = connection.connection.cursor()
    sha256 = hashlib.sha256
    last = 0
    try:
        while last < to_seq:
            cursor.execute(query, (last, to_seq))
            rows = cursor.fetchall()
            if not rows:
                return
            walked, slow = [], []
            for seq, prev_hash, digest, text in rows:
                event = _WalkedEvent(record="event", seq=seq, prev_hash=prev_hash, hash=digest)
                event.intact = sha256((prev_hash + text).encode("utf-8")).hexdigest() == digest
                if not event.intact:
                    slow.append(event)
                walked.append(event)
            if slow:
                decoded = {r["seq"]: r for r in iter_event_rows(session, from_seq=slow[0]["seq"],
                                                                to_seq=slow[-1]["seq"])}
                for event in slow:
                    record = decoded.get(event["seq"])
                    event.intact = record is not None and auditverify.content_matches(record)
            yield from walked
            last = rows[-1][0]
    finally:
        cursor.close()


def chain_head(session: Session) -> tuple[int, str]:
    row = session.execute(select(AuditChainLock.head_seq, AuditChainLock.head_hash)
                          .where(AuditChainLock.id == 1)).first()
    if row is None:
        raise ChainLockMissing("the audit chain's head row is missing")
    return row.head_seq, row.head_hash


@dataclass(frozen=True)
class ChainBounds:
    """What one reading of the chain covers: the checkpoints up to `checkpoint_id`, the events up to the head."""

    checkpoint_id: int
    head_seq: int
    head_hash: str


def chain_bounds(session: Session) -> ChainBounds:
    """The newest checkpoint, then the head, read in that order (see verify_chain for why); every reader of
    the whole chain (verification, exports) bounds what it reads by them, so writers running meanwhile
    change nothing it sees."""
    checkpoint_id = session.scalar(select(func.max(AuditCheckpoint.id))) or 0
    head_seq, head_hash = chain_head(session)
    return ChainBounds(checkpoint_id, head_seq, head_hash)


def checkpoint_records(session: Session, through_id: int | None = None) -> Iterator[dict[str, Any]]:
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.id)
    if through_id is not None:
        query = query.where(AuditCheckpoint.id <= through_id)
    for cp in session.scalars(query):
        yield {"record": "checkpoint", "seq": cp.head_seq, "hash": cp.head_hash, "taken_at": jsonable(cp.taken_at)}


def verify_chain(session: Session, batch_size: int = 20_000,
                 signed: Sequence[auditverify.SignedCheckpoint] = ()) -> ChainReport:
    """Walk the stored chain from the first event, checking every checkpoint on the way, and check it
    ends at the head the chain records; the same check the offline script makes on an export.

    Writers keep appending while this runs, and each statement may see newer commits than the one before
    (SQLite outside a write, PostgreSQL's READ COMMITTED), so everything is bounded by what was read first:
    the newest checkpoint, then the head, then the events up to that head and the checkpoints up to that
    one. An event at or below a head that is visible is always visible too (both commit together), and a
    checkpoint that existed before the head was read holds a head no later than it, as heads only move
    forward. Events appended meanwhile, and checkpoints a concurrent verification adds, are simply not part
    of this run; a head rewound over deleted events is still caught by the checkpoints taken before, and,
    since those live in this database too, by the `signed` ones published outside it (audit_publish.read),
    which the caller reads before this starts.
    """
    try:
        bounds = chain_bounds(session)
    except ChainLockMissing as exc:
        return ChainReport(False, 0, None, str(exc))
    header = {"record": "export", "contiguous": True, "through_head": True,
              "head_seq": bounds.head_seq, "head_hash": bounds.head_hash}
    records = itertools.chain([header], checkpoint_records(session, bounds.checkpoint_id),
                              _walk(session, bounds.head_seq, batch_size))
    return auditverify.verify_records(records, content_ok=_walked_intact, signed=signed)


@dataclass(frozen=True)
class EventCheck:
    """One event checked on its own, as its page shows it."""

    intact: bool  # its hash is the hash of its content and of the hash it names before it
    linked: bool  # the hash it names is the previous event's (the first event follows none)


def check_event(session: Session, ev: AuditEvent) -> EventCheck:
    """Check one event against its content and the event before it, with the hash the whole chain uses."""
    previous = session.get(AuditEvent, ev.seq - 1)
    return EventCheck(intact=compute_hash(ev.prev_hash, event_fields(ev)) == ev.hash,
                      linked=previous.hash == ev.prev_hash if previous else ev.seq == 1)


def run_verification(session: Session, run_by: Actor, batch_size: int = 20_000, *,
                     signed: Sequence[auditverify.SignedCheckpoint] = (), refused: str | None = None
                     ) -> AuditVerification:
    """Verify the whole chain, keep the run (who ran it, what it found) and, if it verified, a checkpoint of
    the head it verified through. `signed`: the published checkpoints the chain must agree with and reach;
    `refused`: why they could not be read (a file rewritten, removed...), which fails the run."""
    started = utcnow()
    report = verify_chain(session, batch_size, signed)
    if refused is not None and report.ok:
        report = ChainReport(False, report.checked, None, refused)
    checkpoint = None
    if report.ok:
        checkpoint = AuditCheckpoint(taken_at=utcnow(), head_seq=report.last_seq or 0,
                                     head_hash=report.last_hash or GENESIS_HASH)
        session.add(checkpoint)
    result = AuditVerification(started_at=started, finished_at=utcnow(), checked=report.checked, ok=report.ok,
                               broken_seq=report.first_bad_seq, problem=report.problem, run_by=actor_label(run_by),
                               checkpoint=checkpoint)
    session.add(result)
    session.flush()
    return result


VERIFICATIONS_PAGE_SIZE = 50


@dataclass
class VerificationPage:
    runs: list[AuditVerification]
    next_before: int | None = None


def verification_runs(session: Session, before_id: int | None = None,
                      limit: int = VERIFICATIONS_PAGE_SIZE) -> VerificationPage:
    """Every verification run, newest first, a page at a time by id (the primary key serves it at any depth)."""
    query = select(AuditVerification).order_by(AuditVerification.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(AuditVerification.id < before_id)
    runs = list(session.scalars(query))
    more = len(runs) > limit
    runs = runs[:limit]
    return VerificationPage(runs, runs[-1].id if more else None)


def existing_seqs(session: Session, seqs: set[int]) -> set[int]:
    """Which of these events are stored (a broken run may name one that was deleted)."""
    if not seqs:
        return set()
    return set(session.scalars(select(AuditEvent.seq).where(AuditEvent.seq.in_(seqs))))


def latest_verification(session: Session) -> AuditVerification | None:
    return session.scalar(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1))


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
