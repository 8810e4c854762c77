"""The audit trail: append hash-chained events in the caller's transaction, and verify the chain."""
from __future__ import annotations

import contextvars
import functools
import hashlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Collection, Iterable, Iterator, Sequence

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

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
    # transaction's own connection, with no statement building (SQLAlchemy's per-statement cost was several times
    # the statements themselves; benchmarks/audit_chain.py compares with the bare driver): lock and read the
    # head, then insert the events and move the head, on PostgreSQL in one statement.
    connection = session.connection()
    sqlite = connection.dialect.name == "sqlite"
    cursor = connection.connection.cursor()
    try:
        now = utcnow()
        # An UPDATE takes a row lock on PostgreSQL and the write lock on SQLite: a second committer waits
        # here until this one ends, so both cannot extend the same head. It returns the head it locked.
        cursor.execute(_LOCK_SQL["?" if sqlite else "%s"], (_sqlite_stamp(now) if sqlite else now,))
        head = cursor.fetchone()
        if head is None:
            raise ChainLockMissing("the audit chain's head row is missing; refusing to write to a tampered trail")
        seq, prev_hash = head
        rows = _chained_rows(events, seq, prev_hash, now, _sqlite_stamp(now) if sqlite else now)
        seq, prev_hash = events[-1].seq, events[-1].hash
        if sqlite:
            cursor.executemany(_insert_sql("?", 1), rows)
            cursor.execute(_MOVE_HEAD_SQL["?"], (seq, prev_hash))
            return
        for at in range(0, len(rows) - _INSERT_ROWS_AT_MOST, _INSERT_ROWS_AT_MOST):
            cursor.execute(_insert_sql("%s", _INSERT_ROWS_AT_MOST),
                           [value for row in rows[at:at + _INSERT_ROWS_AT_MOST] for value in row])
        last = rows[(len(rows) - 1) // _INSERT_ROWS_AT_MOST * _INSERT_ROWS_AT_MOST:]
        cursor.execute(_insert_and_move_head_sql(len(last)), [value for row in last for value in row] + [seq, prev_hash])
    finally:
        cursor.close()


def _chained_rows(events: list[PendingEvent], seq: int, prev_hash: str, now: datetime, stamp: Any) -> list[tuple]:
    """Number, stamp and hash `events` after the head (`seq`, `prev_hash`); their rows for audit_event."""
    rows = []
    for ev in events:
        seq += 1
        ev.seq, ev.occurred_at, ev.prev_hash = seq, now, prev_hash
        ev.hash = prev_hash = compute_hash(prev_hash, event_fields(ev))
        # `before` and `after` are stored as their canonical text (None as JSON null): exactly the text the
        # hash covers, so the verification rebuilds the hashed text from the columns (_walk) as stored.
        rows.append((seq, stamp, ev.actor, ev.action, ev.entity_type, ev.entity_id, ev.provider_id,
                     canonical(ev.before), canonical(ev.after), ev.reason, ev.request_id, ev.ip, ev.prev_hash, ev.hash))
    return rows


def _sqlite_stamp(value: datetime) -> str:
    """A UTC time as UTCDateTime stores it on SQLite: naive UTC text, so that text order is time order."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


_EVENT_COLUMNS = (*HASHED_FIELDS, "prev_hash", "hash")
# By the driver's parameter style: sqlite3 "?", psycopg "%s".
_LOCK_SQL = {mark: f"UPDATE audit_chain_lock SET locked_at = {mark} WHERE id = 1 RETURNING head_seq, head_hash"
             for mark in ("?", "%s")}
_MOVE_HEAD_SQL = {mark: f"UPDATE audit_chain_lock SET head_seq = {mark}, head_hash = {mark} WHERE id = 1"
                  for mark in ("?", "%s")}
# A commit's events go in one INSERT (many rows, one round trip), up to this many rows a statement: PostgreSQL
# takes at most 65,535 parameters in one.
_INSERT_ROWS_AT_MOST = 1_000


@functools.lru_cache(maxsize=32)
def _insert_sql(mark: str, rows: int) -> str:
    values = "(" + ", ".join([mark] * len(_EVENT_COLUMNS)) + ")"
    return f"INSERT INTO audit_event ({', '.join(_EVENT_COLUMNS)}) VALUES {', '.join([values] * rows)}"


@functools.lru_cache(maxsize=32)
def _insert_and_move_head_sql(rows: int) -> str:
    """PostgreSQL: insert the last rows and move the head in one statement."""
    return f"WITH inserted AS ({_insert_sql('%s', rows)}) {_MOVE_HEAD_SQL['%s']}"


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
        yield from map(_event_record, rows)
        last = rows[-1]["seq"]


def _event_record(row: Any) -> dict[str, Any]:
    """A stored event (a row of audit_event as a mapping) as an export record."""
    record = {"record": "event", **{k: row[k] for k in HASHED_FIELDS}}
    record["occurred_at"] = jsonable(row["occurred_at"])
    record["prev_hash"], record["hash"] = row["prev_hash"], row["hash"]
    return record


def _decoded_events(session: Session, seqs: Sequence[int]) -> dict[int, dict[str, Any]]:
    """These events, by seq, as export records (decoded and typed as exports read them)."""
    table = AuditEvent.__table__
    rows = session.execute(select(table).where(table.c.seq.in_(seqs))).mappings()
    return {row["seq"]: _event_record(row) for row in rows}


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
        # Python leaves out the fraction of a whole second; '.000000' can only be that fraction.
        stamp = "replace(to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '')"
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


# On PostgreSQL the database checks the chain itself, each range of seqs in one statement: every event's hash
# from the text it rebuilds (_rebuilt_text_sql), and every event's place (its seq follows the one before it and it
# names that one's hash). It hands back only the events that need a look of their own: those whose hash does not
# match the rebuilt text (judged again the slow way, as _walk does), those that do not follow the one before them,
# those at a checkpoint, and the range's first and last; what lies between two of them is a CheckedRun.
_DATABASE_WALK_SQL = """
SELECT seq, prev_hash, hash, intact, before_seq, before_hash FROM (
    SELECT seq, prev_hash, hash,
           coalesce(encode(sha256(convert_to(prev_hash || {text}, 'UTF8')), 'hex') = hash, false) AS intact,
           lag(seq) OVER by_seq AS before_seq, lag(hash) OVER by_seq AS before_hash,
           lead(seq) OVER by_seq AS after_seq
    FROM audit_event WHERE seq > %(after)s AND seq <= %(through)s
    WINDOW by_seq AS (ORDER BY seq)
) AS walked
WHERE NOT intact OR before_seq IS NULL OR after_seq IS NULL OR seq <> before_seq + 1
   OR prev_hash IS DISTINCT FROM before_hash OR seq = ANY(%(marks)s::bigint[])
ORDER BY seq
""".format(text=_rebuilt_text_sql("postgresql"))

# A range is hashed by one database backend on one core. The chain is split into one range per core this process
# may run on (the database is taken to run on a machine like it: here, the same one), each read on a connection
# of its own at once; a range is never shorter than this, as each costs a connection and a statement of its own.
VERIFY_RANGE_MIN_EVENTS = 50_000


def verify_ranges(events: int) -> int:
    """How many ranges the database walk splits `events` events into (see VERIFY_RANGE_MIN_EVENTS)."""
    return max(1, min(auditverify.available_cores(), events // VERIFY_RANGE_MIN_EVENTS))


def _flagged_rows(engine: Any, after: int, through: int, marks: list[int]) -> list[tuple]:
    """The rows _DATABASE_WALK_SQL flags in one range, read on a connection of its own (ranges are read at once)."""
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        try:
            # Compiling the statement's expressions (JIT) makes it about twice as slow, in this transaction only.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute(_DATABASE_WALK_SQL, {"after": after, "through": through, "marks": marks})
            return cursor.fetchall()
        finally:
            cursor.close()


def _spare_connections(engine: Any) -> int:
    """How many ranges may be read at once: at most half the engine's pool (its size and overflow), so that the
    walk, which holds one connection already, never waits on the pool and leaves the rest to the process's other
    work; ranges beyond it wait for a reader to finish."""
    pool = engine.pool
    if not isinstance(pool, QueuePool):
        return 1
    return max(1, (pool.size() + max(0, pool._max_overflow)) // 2)


def _walk_in_database(session: Session, to_seq: int, marks: Collection[int],
                      ranges: int) -> Iterator[_WalkedEvent | auditverify.CheckedRun]:
    """Every event up to `to_seq` in order, checked by the database (_DATABASE_WALK_SQL) in `ranges` ranges read
    at once: the events it flags one by one, each as _walk would give it (an event whose hash does not match the
    rebuilt text is decoded and judged as exports are), and the stretches between them as CheckedRuns. `marks`:
    the seqs of the checkpoints the events are held to, which come one by one too."""
    bounds = [to_seq * n // ranges for n in range(ranges + 1)]
    pairs = list(zip(bounds, bounds[1:], strict=False))
    engine = session.get_bind()
    work = [(engine, after, through, sorted(m for m in marks if after < m <= through)) for after, through in pairs]
    executor = None
    if len(work) == 1:
        results: Iterator[list[tuple]] = iter([_flagged_rows(*work[0])])
    else:
        executor = ThreadPoolExecutor(max_workers=min(len(work), _spare_connections(engine)),
                                      thread_name_prefix="audit-verify")
        results = (future.result() for future in [executor.submit(_flagged_rows, *job) for job in work])
    try:
        for rows in results:
            yield from _runs_and_events(session, rows)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


_SLOW_BATCH = 1_000


def _runs_and_events(session: Session, rows: list[tuple]) -> Iterator[_WalkedEvent | auditverify.CheckedRun]:
    """One range's flagged rows (seq order) as events, with the runs of unflagged events between them."""
    suspects = [row[0] for row in rows if not row[3]]  # decoded a batch at a time, as the walk reaches them
    decoded: dict[int, dict[str, Any]] = {}
    reached = 0
    previous: tuple | None = None
    for seq, prev_hash, digest, intact, before_seq, before_hash in rows:
        if previous is not None and before_seq > previous[0]:
            yield auditverify.CheckedRun(previous[0] + 1, before_seq, previous[2], before_hash)
        event = _WalkedEvent(record="event", seq=seq, prev_hash=prev_hash, hash=digest)
        if not intact:
            if reached % _SLOW_BATCH == 0:
                decoded = _decoded_events(session, suspects[reached:reached + _SLOW_BATCH])
            reached += 1
            record = decoded.get(seq)
            intact = record is not None and auditverify.content_matches(record)
        event.intact = intact
        yield event
        previous = (seq, prev_hash, digest)


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
                 signed: Sequence[auditverify.SignedCheckpoint] = (), *, in_database: bool | None = None,
                 ranges: int | None = None) -> ChainReport:
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

    On PostgreSQL (unless `in_database` is False) the database hashes the events itself, in `ranges` ranges
    at once (by default verify_ranges), and hands back only what needs a look (_walk_in_database); otherwise
    the events are read in batches of `batch_size` and hashed here (_walk). Both judge every event by the same
    rule and give the same report.
    """
    try:
        bounds = chain_bounds(session)
    except ChainLockMissing as exc:
        return ChainReport(False, 0, None, str(exc))
    header = {"record": "export", "contiguous": True, "through_head": True,
              "head_seq": bounds.head_seq, "head_hash": bounds.head_hash}
    checkpoints = list(checkpoint_records(session, bounds.checkpoint_id))
    if in_database is None:
        in_database = session.get_bind().dialect.name == "postgresql"
    if in_database:
        marks = {checkpoint["seq"] for checkpoint in checkpoints} | {checkpoint.seq for checkpoint in signed}
        events: Iterator[Any] = _walk_in_database(session, bounds.head_seq, marks,
                                                  ranges or verify_ranges(bounds.head_seq))
    else:
        events = _walk(session, bounds.head_seq, batch_size)
    records = itertools.chain([header], checkpoints, events)
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
