"""Requested work: recorded with the change that asks for it, sent after commit, claimed, finished, reconciled.

The one owner of a work row's states (requested -> sent -> running -> done | failed). The database keeps
every piece of work asked for until it is done; the broker carries the row's id only, so a lost message (the
broker down when it was sent, a worker killed while it ran) is found here by the reconciler and sent again,
up to the row's max_attempts. Every step is a conditional UPDATE on the row's state: a second delivery of
the same id finds it taken or done and changes nothing.

Services never send: `request` queues the row's id on the transaction (backoffice/txn.py) and
backoffice/dispatch.py sends it once that transaction commits, then marks it sent.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Sequence, cast

from sqlalchemy import CursorResult, Table, and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backoffice import txn, zones
from backoffice.models import CheckKind, CheckRun, Work, WorkKind, WorkState, utcnow
from backoffice.services import audit
from backoffice.services.errors import Conflict, InvalidTransition, LostRace

# The queue (backoffice/txn.py) of rows to send when the asking transaction commits: (id, kind) each.
SEND_QUEUE = "work_to_send"
# Rows sent again (the reconciler, a researcher's retry): each in a message of its own, never with others, so a
# row that keeps killing its worker takes no other row down with it.
RESEND_QUEUE = "work_to_send_again"
# Written exactly as the partial indexes' predicate: SQLite (and PostgreSQL with bound parameters) uses a
# partial index only when the query repeats its condition.
OPEN = text("work.state IN ('requested', 'sent', 'running')")
FAILED = text("work.state = 'failed'")
CHECK_KINDS = frozenset({WorkKind.RECHECK_NOW, WorkKind.SCHEDULED_CHECK, WorkKind.SCREENING})

# What each kind of work is, for the staff page.
KIND_WORDS = {
    WorkKind.RECHECK_NOW: "re-check asked for by a researcher",
    WorkKind.SCHEDULED_CHECK: "scheduled re-check",
    WorkKind.SCREENING: "exclusion screening",
    WorkKind.IMPORT_SCREENING: "screening of every listed provider after a list import",
    WorkKind.SCREENING_BATCH: "exclusion screening of a batch of providers",
    WorkKind.EXPIRY_SWEEP: "verification-expiry sweep",
    WorkKind.CHECKPOINT: "signed checkpoint of the audit trail after a verification was granted",
    WorkKind.REREVIEWS: "opening the re-reviews a criteria version's publication scheduled",
}
STATE_WORDS = {
    WorkState.REQUESTED: "waiting for the worker queue",
    WorkState.SENT: "queued for a worker",
    WorkState.RUNNING: "running",
    WorkState.DONE: "done",
    WorkState.FAILED: "failed",
}


@dataclass(frozen=True)
class Policy:
    """How long each open state may last before the reconciler sends the row again, and how often."""

    send_grace_seconds: int = 10  # requested: the after-commit send should have happened by then
    sent_lease_seconds: int = 3600  # sent: a worker should have taken the message by then
    run_lease_seconds: int = 300  # running: the task should have finished by then (beyond its time limit)
    max_attempts: int = 5  # workers taking it and stopping without an answer, before it is failed
    batch_size: int = 500  # rows looked at per reconciler pass

    @classmethod
    def from_config(cls, config) -> "Policy":
        return cls(send_grace_seconds=config["WORK_SEND_GRACE_SECONDS"],
                   sent_lease_seconds=config["WORK_SENT_LEASE_SECONDS"],
                   run_lease_seconds=config["WORK_LEASE_SECONDS"], max_attempts=config["WORK_MAX_ATTEMPTS"],
                   batch_size=config["WORK_RECONCILE_BATCH_SIZE"])


@dataclass(frozen=True)
class Spec:
    """One piece of work to ask for."""

    kind: WorkKind
    target_type: str
    target_id: str | int
    key: str
    params: dict | None = None


def check_spec(kind: WorkKind, provider_id: int, check: CheckKind, window: str) -> Spec:
    """One network check of one provider in one window; its key is the check run's own idempotency key."""
    return Spec(kind, "provider", provider_id, f"{check.value}:{provider_id}:{window}",
                {"check": check.value, "window": window})


def request(session: Session, actor: audit.Actor, spec: Spec, policy: Policy) -> Work | None:
    """Record one piece of work in the caller's transaction; it is sent when that transaction commits. Asking
    again while the same work is open gives the open row."""
    rows = request_many(session, actor, [spec], policy)
    return rows[0] if rows else session.scalar(select(Work).where(Work.idempotency_key == spec.key, OPEN))


EXPIRY_SWEEP = Spec(WorkKind.EXPIRY_SWEEP, "sweep", "verification_expiry", "sweep:verification_expiry")


def request_expiry_sweep(session: Session, actor: audit.Actor, policy: Policy) -> Work | None:
    """A research lead asks for the verification-expiry sweep now, outside its schedule (audited)."""
    audit.record(session, actor, "sweep.requested", "sweep", "verification_expiry")
    return request(session, actor, EXPIRY_SWEEP, policy)


def request_many(session: Session, actor: audit.Actor, specs: Iterable[Spec], policy: Policy) -> list[Work]:
    """Record many pieces of work at once; those already open, and checks whose run is recorded, are left out.

    Returns the new rows (the sweeps ask for a batch of providers at a time)."""
    specs = list({s.key: s for s in specs}.values())
    if not specs:
        return []
    keys = [s.key for s in specs]
    taken = set(session.scalars(select(Work.idempotency_key).where(Work.idempotency_key.in_(keys), OPEN)))
    check_keys = [s.key for s in specs if s.kind in CHECK_KINDS]
    if check_keys:
        taken |= set(session.scalars(select(CheckRun.idempotency_key).where(CheckRun.idempotency_key.in_(check_keys))))
    now = utcnow()
    by = audit.actor_label(actor)
    rows = [Work(kind=s.kind, target_type=s.target_type, target_id=str(s.target_id), params=s.params or {},
                 idempotency_key=s.key, state=WorkState.REQUESTED, attempts=0, max_attempts=policy.max_attempts,
                 requested_by=by, created_at=now, updated_at=now,
                 lease_expires_at=now + timedelta(seconds=policy.send_grace_seconds))
            for s in specs if s.key not in taken]
    session.add_all(rows)
    try:
        session.flush()
    except IntegrityError as exc:
        # Another transaction asked for the same work between the read above and this insert (the open key
        # is unique): a lost race, so the page says so and a sweep tries again, never a 500.
        raise LostRace() from exc
    for row in rows:
        txn.queue(session, SEND_QUEUE, (row.id, row.kind))
    return rows


def mark_sent(session: Session, ids: list[int], policy: Policy) -> int:
    """The broker accepted a message for each of these rows; a row a worker took meanwhile stays as it is."""
    if not ids:
        return 0
    now = utcnow()
    result = session.execute(
        update(Work).where(Work.id.in_(ids), Work.state == WorkState.REQUESTED)
        .values(state=WorkState.SENT, sent_at=now, updated_at=now,
                lease_expires_at=now + timedelta(seconds=policy.sent_lease_seconds)),
        execution_options={"synchronize_session": False},
    )
    return cast(CursorResult, result).rowcount


@dataclass(frozen=True)
class Claimed:
    """A row a worker has taken: what its task needs, read back by the statement that took it."""

    id: int
    kind: WorkKind
    target_id: str
    params: dict
    idempotency_key: str
    state: WorkState
    attempts: int
    lease_expires_at: datetime


# The task side runs these once per check: Core statements on the table (no ORM unit of work, no entity
# built and tracked), each one round trip.
_TABLE = cast(Table, Work.__table__)  # declared as a FromClause; a mapped class's table is a Table
_CLAIMED = (_TABLE.c.id, _TABLE.c.kind, _TABLE.c.target_id, _TABLE.c.params, _TABLE.c.idempotency_key,
            _TABLE.c.state, _TABLE.c.attempts, _TABLE.c.lease_expires_at)


def _run_recorded():
    """The check this row asks for has its run recorded already (a run's key is its work row's key)."""
    runs = CheckRun.__table__
    return select(runs.c.id).where(runs.c.idempotency_key == _TABLE.c.idempotency_key).exists()


def claim(session: Session, work_id: int, policy: Policy, *, lease_seconds: int | None = None,
          retry: bool = False, unless_recorded: bool = False) -> Claimed | None:
    """A worker takes the row: running, with a lease. None when it is done, failed, or held by another worker
    whose lease has not run out (a second delivery of the same id), and with `unless_recorded` when its check
    run is recorded already (see `complete_if_recorded`). The caller commits before working.

    `retry` is a task's own retry after a back-off (not a lost attempt, so not counted)."""
    now = utcnow()
    lease = lease_seconds or policy.run_lease_seconds
    row = session.execute(_CLAIM[unless_recorded], {
        "work_id": work_id, "now": now, "attempt": 0 if retry else 1,
        "lease_until": now + timedelta(seconds=lease)}).first()
    return Claimed(*row) if row is not None else None


def claim_many(session: Session, work_ids: list[int], policy: Policy) -> dict[int, Claimed]:
    """`claim` of several check rows in one statement (first deliveries, `unless_recorded`), by id: each row is
    taken on the same condition as alone; those left out are held, finished or recorded already."""
    if not work_ids:
        return {}
    now = utcnow()
    rows = session.execute(_CLAIM_MANY, {"work_ids": sorted(set(work_ids)), "now": now, "attempt": 1,
                                         "lease_until": now + timedelta(seconds=policy.run_lease_seconds)}).all()
    return {row.id: Claimed(*row) for row in rows}


def _claim_statement(unless_recorded: bool, many: bool = False):
    """One statement that takes the row (or the rows) and returns it (no second read). Built once: this runs once
    per check, and building a statement costs more than the cached compiled form it finds."""
    c = _TABLE.c
    now = bindparam("now", type_=c.updated_at.type)
    takeable = or_(c.state.in_([WorkState.REQUESTED, WorkState.SENT]),
                   and_(c.state == WorkState.RUNNING, c.lease_expires_at < now))
    which = c.id.in_(bindparam("work_ids", expanding=True)) if many else c.id == bindparam("work_id")
    return (_TABLE.update()
            .where(which, takeable, *([~_run_recorded()] if unless_recorded else []))
            .values(state=WorkState.RUNNING, started_at=now, updated_at=now,
                    attempts=c.attempts + bindparam("attempt"),
                    lease_expires_at=bindparam("lease_until", type_=c.lease_expires_at.type))
            .returning(*_CLAIMED))


_CLAIM = {unless: _claim_statement(unless) for unless in (False, True)}
_CLAIM_MANY = _claim_statement(True, many=True)


def complete_if_recorded(session: Session, work_id: int) -> bool:
    """A check row whose run is recorded already (an earlier delivery recorded it) is done; False when it is
    not recorded, or the row is no longer open."""
    return _finish(session, work_id, _run_recorded())


def complete_many_if_recorded(session: Session, work_ids: list[int]) -> set[int]:
    """`complete_if_recorded` for several rows in one statement: the ids it finished."""
    if not work_ids:
        return set()
    return set(session.scalars(_FINISH_IF_RECORDED, {"work_ids": sorted(set(work_ids)), "now": utcnow()}))


def release_for_retry(session: Session, work_id: int, countdown: int, reason: str, policy: Policy) -> None:
    """The task retries itself after `countdown` seconds: the row waits as sent until the retry takes it."""
    now = utcnow()
    session.execute(
        update(Work).where(Work.id == work_id, Work.state == WorkState.RUNNING)
        .values(state=WorkState.SENT, updated_at=now, last_error=reason[:2000],
                lease_expires_at=now + timedelta(seconds=countdown + policy.sent_lease_seconds)),
        execution_options={"synchronize_session": False},
    )


def note_error(session: Session, work_id: int, reason: str) -> None:
    """A running row's task stopped on an error: the row keeps its lease (the reconciler sends it again once the
    lease runs out, and fails it after its last attempt), and the error is kept for staff to read meanwhile."""
    session.execute(
        update(Work).where(Work.id == work_id, Work.state == WorkState.RUNNING)
        .values(updated_at=utcnow(), last_error=reason[:2000]),
        execution_options={"synchronize_session": False},
    )


def complete(session: Session, work_id: int) -> bool:
    """Done; in the transaction that records the work's result. A row done already, or failed by the reconciler
    (audited), changes nothing: a late worker's result is recorded, its row stays as the staff page shows it."""
    return _finish(session, work_id)


def complete_many(session: Session, work_ids: list[int]) -> int:
    """`complete` for the rows of a batch of results recorded in one transaction; how many were still open."""
    return _finish_many(session, work_ids)


def _finish(session: Session, work_id: int, *condition) -> bool:
    return _finish_many(session, [work_id], *condition) == 1


def _finish_many(session: Session, work_ids: list[int], *condition) -> int:
    now = utcnow()
    statement = _FINISH if not condition else _finish_statement(*condition)
    result = session.execute(statement, {"work_ids": work_ids, "now": now})
    return cast(CursorResult, result).rowcount


def _finish_statement(*condition):
    now = bindparam("now", type_=_TABLE.c.updated_at.type)
    return (_TABLE.update().where(_TABLE.c.id.in_(bindparam("work_ids", expanding=True)), OPEN, *condition)
            .values(state=WorkState.DONE, finished_at=now, updated_at=now, lease_expires_at=None))


_FINISH = _finish_statement()
_FINISH_IF_RECORDED = _finish_statement(_run_recorded()).returning(_TABLE.c.id)


@dataclass
class Pass:
    """What one reconciler pass did."""

    resent: list[tuple[int, WorkKind]]
    failed: list[int]


def due(session: Session, now: datetime, limit: int) -> Sequence[Any]:
    """Open rows whose lease ran out, oldest first: read from the partial index on the open states only."""
    return session.execute(
        select(Work.id, Work.kind, Work.state, Work.attempts, Work.max_attempts, Work.last_error, Work.target_id)
        .where(OPEN, Work.lease_expires_at < now).order_by(Work.lease_expires_at).limit(limit)
    ).all()


def reconcile(session: Session, policy: Policy, now: datetime | None = None) -> Pass:
    """Send again what was requested but never sent, sent but never taken, or taken but never finished within
    its lease; a row taken max_attempts times without finishing is failed with the reason (audited).

    Each row is changed only if it is still as it was read (a worker finishing meanwhile wins); the rows to
    send are queued on the transaction and sent after the caller commits."""
    now = now or utcnow()
    rows = due(session, now, policy.batch_size)
    give_up = [r for r in rows if r.state == WorkState.RUNNING and r.attempts >= r.max_attempts]
    failed = []
    for row in give_up:
        reason = (f"A worker took it {row.attempts} times and never finished it within its lease "
                  f"({policy.run_lease_seconds} s)" + (f"; last error: {row.last_error}" if row.last_error else ""))
        changed = cast(CursorResult, session.execute(
            update(Work).where(Work.id == row.id, Work.state == WorkState.RUNNING, Work.lease_expires_at < now)
            .values(state=WorkState.FAILED, last_error=reason[:2000], finished_at=now, updated_at=now,
                    lease_expires_at=None),
            execution_options={"synchronize_session": False},
        )).rowcount
        if changed:
            audit.record(session, "system:work-reconciler", "work.failed", "work", row.id,
                         before={"state": WorkState.RUNNING.value}, after={"state": WorkState.FAILED.value},
                         reason=reason, provider_id=_provider_of(row))
            failed.append(row.id)
    given_up = {r.id for r in give_up}
    again = [r for r in rows if r.id not in given_up]
    resent = []
    if again:
        stopped = [r.id for r in again if r.state == WorkState.RUNNING]
        if stopped:
            session.execute(
                update(Work).where(Work.id.in_(stopped), Work.state == WorkState.RUNNING, Work.lease_expires_at < now)
                .values(last_error="The worker stopped before finishing it (its lease ran out by "
                        f"{zones.moment_text(now, zones.UTC, seconds=True)})"),
                execution_options={"synchronize_session": False},
            )
        # Back to requested: sent again now, and looked at again after the grace if the broker refuses it too.
        moved = session.execute(
            update(Work).where(Work.id.in_([r.id for r in again]), OPEN, Work.lease_expires_at < now)
            .values(state=WorkState.REQUESTED, updated_at=now,
                    lease_expires_at=now + timedelta(seconds=policy.send_grace_seconds))
            .returning(Work.id, Work.kind),
            execution_options={"synchronize_session": False},
        ).all()
        resent = [(r.id, r.kind) for r in moved]
        for item in resent:
            txn.queue(session, RESEND_QUEUE, item)
    session.flush()
    return Pass(resent=resent, failed=failed)


def _provider_of(row) -> int | None:
    return int(row.target_id) if row.kind in CHECK_KINDS else None


def retry(session: Session, actor: audit.Actor, work: Work, policy: Policy) -> Work:
    """A researcher sends failed work again, with a fresh count of attempts (audited)."""
    if work.state != WorkState.FAILED:
        raise InvalidTransition(f"Only failed work can be retried; this is {STATE_WORDS[work.state]}.")
    if session.scalar(select(Work.id).where(Work.idempotency_key == work.idempotency_key, OPEN)) is not None:
        raise Conflict("The same work was asked for again and is already waiting or running; nothing was changed.")
    now = utcnow()
    before = {"state": work.state.value, "attempts": work.attempts}
    work.state = WorkState.REQUESTED
    work.attempts = 0
    work.updated_at = now
    work.finished_at = None
    work.lease_expires_at = now + timedelta(seconds=policy.send_grace_seconds)
    audit.record(session, actor, "work.retried", "work", work.id, before=before,
                 after={"state": work.state.value, "attempts": 0}, reason=work.last_error,
                 provider_id=_provider_of(work))
    session.flush()
    txn.queue(session, RESEND_QUEUE, (work.id, work.kind))
    return work


def in_flight(session: Session, limit: int = 200) -> list[Work]:
    """Open work (oldest first) then failed work (latest first), for the staff page."""
    open_rows = session.scalars(select(Work).where(OPEN).order_by(Work.created_at, Work.id).limit(limit)).all()
    failed = session.scalars(
        select(Work).where(FAILED).order_by(Work.updated_at.desc()).limit(limit)).all()
    return [*open_rows, *failed]


def counts_by_kind_and_state(session: Session) -> dict[tuple[str, str], int]:
    """Open and failed rows by kind and state (done rows are not counted: they would need a full scan)."""
    rows = session.execute(
        select(Work.kind, Work.state, func.count()).where(or_(OPEN, text("work.state = 'failed'")))
        .group_by(Work.kind, Work.state)
    ).all()
    return {(kind.value, state.value): n for kind, state, n in rows}


def oldest_open_age(session: Session, now: datetime | None = None) -> float | None:
    """Seconds since the oldest open row was asked for; None when nothing is open."""
    oldest = session.scalar(select(func.min(Work.created_at)).where(OPEN))
    if oldest is None:
        return None
    return ((now or utcnow()) - oldest).total_seconds()


def open_by_kind(session: Session, now: datetime | None = None) -> dict[str, tuple[datetime, int]]:
    """For each kind with open rows: when its oldest open row was asked for, and how many open rows have let
    their lease run out (the reconciler's next pass takes them). One pass over the open-state index."""
    now = now or utcnow()
    rows = session.execute(
        select(Work.kind, func.min(Work.created_at),
               func.count().filter(Work.lease_expires_at < now))
        .where(OPEN).group_by(Work.kind)
    ).all()
    return {kind.value: (oldest, past or 0) for kind, oldest, past in rows}
