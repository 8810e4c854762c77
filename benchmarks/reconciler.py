"""The work reconciler's pass over many finished and some open work rows (target: < 100 ms).

Usage: DATABASE_URL=... [REDIS_URL=...] python -m benchmarks.reconciler [--finished 1000000] [--open 10000] [--due 100]

On a database of its own (a new SQLite file, or DATABASE_URL's server with a database of its own): `finished`
done rows, and `open` rows requested, sent or running, of which `due` have a lease that ran out (the
messages a broker outage or killed workers lost). Timed, each after a warm-up:

- the pass with nothing due (the every-minute case): `work.reconcile` and its commit;
- the pass that sends the `due` rows again: `work.reconcile` (its database part, timed alone too), its commit
  and the sends to the broker (Redis with REDIS_URL, else the embedded one in a folder of its own), the due
  rows re-armed between runs;
- baseline: the reconciler's SELECT through the raw driver (no ORM, no UPDATE), reading the partial index;
- reference: the same SELECT with the index kept out (a full scan), to show what the index is for.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, update

from backoffice.extensions import db
from backoffice.models import Work, WorkKind, WorkState, utcnow
from backoffice.services import work
from benchmarks.expect import expect
from benchmarks.generate import bench_app, scratch_database

TARGET_MS = 100
BATCH = 20_000
SELECT_DUE = ("SELECT id, kind, state, attempts, max_attempts, last_error, target_id FROM work {hint}"
              "WHERE state IN ('requested', 'sent', 'running') AND lease_expires_at < {now} "
              "ORDER BY lease_expires_at LIMIT 500")


def _rows(start: int, count: int, state: WorkState, now, lease) -> list[dict]:
    return [{"id": n, "kind": WorkKind.SCHEDULED_CHECK, "target_type": "provider", "target_id": str(n % 100_000 + 1),
             "params": {"check": "website", "window": f"due-{n}"}, "idempotency_key": f"website:{n}:due-{n}",
             "state": state, "attempts": 1 if state != WorkState.REQUESTED else 0, "max_attempts": 5,
             "requested_by": "system:recheck-sweep", "created_at": now - timedelta(days=n % 60),
             "updated_at": now, "lease_expires_at": lease}
            for n in range(start, start + count)]


def build(finished: int, open_: int, due: int) -> float:
    started = time.perf_counter()
    now = utcnow()
    for start in range(1, finished + 1, BATCH):
        db.session.execute(insert(Work), _rows(start, min(BATCH, finished + 1 - start), WorkState.DONE, now, None))
        db.session.commit()
    states = [WorkState.REQUESTED, WorkState.SENT, WorkState.RUNNING]
    first_open = finished + 1
    rows = []
    for i, n in enumerate(range(first_open, first_open + open_)):
        state = states[i % 3]
        lease = now - timedelta(seconds=60) if i < due else now + timedelta(seconds=600 + i)
        rows += _rows(n, 1, state, now, lease)
    for start in range(0, len(rows), BATCH):
        db.session.execute(insert(Work), rows[start:start + BATCH])
    db.session.commit()
    if db.engine.dialect.name == "postgresql":
        db.session.remove()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(db.text("VACUUM ANALYZE work"))
    else:
        db.session.execute(db.text("ANALYZE"))
        db.session.commit()
    return time.perf_counter() - started


def _timed(fn, runs: int, before=None) -> list[float]:
    times = []
    for n in range(runs + 1):
        if before:
            before()
        started = time.perf_counter()
        fn()
        if n:  # the first is the warm-up
            times.append((time.perf_counter() - started) * 1000)
    return times


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2)}


def run(finished: int = 1_000_000, open_: int = 10_000, due: int = 100, runs: int = 20, log=print) -> dict:
    instance = Path(tempfile.mkdtemp(prefix="bench-reconciler-"))
    due = min(due, open_)
    with scratch_database("reconciler", instance) as url:
        app = bench_app(SQLALCHEMY_DATABASE_URI=url, REDIS_URL=os.environ.get("REDIS_URL", ""), BROKER_FOLDER=str(instance / "broker"),
                        CELERY_QUEUE="bench-reconciler", WORK_RECONCILE_BATCH_SIZE=500)
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            build_seconds = build(finished, open_, due)
            counts = dict(db.session.execute(select(Work.state, func.count()).group_by(Work.state)).all())
            expect(counts.get(WorkState.DONE) == finished and sum(counts.values()) == finished + open_,
                   f"the work table holds {counts}, not {finished} done and {open_} open")
            policy = work.Policy.from_config(app.config)
            engine = db.engine.dialect.name
            due_ids = list(range(finished + 1, finished + 1 + due))

            def quiet_pass():
                result = work.reconcile(db.session, policy)
                db.session.commit()
                expect(not result.resent and not result.failed, f"a quiet pass resent {len(result.resent)} rows")

            def rearm():
                db.session.execute(update(Work).where(Work.id.in_(due_ids)).values(
                    state=WorkState.RUNNING, attempts=1, lease_expires_at=utcnow() - timedelta(seconds=60)))
                db.session.commit()

            resent_counts, database_ms = [], []

            def resending_pass():
                started = time.perf_counter()
                result = work.reconcile(db.session, policy)
                database_ms.append((time.perf_counter() - started) * 1000)
                db.session.commit()  # and the sends, after it
                resent_counts.append(len(result.resent))

            if due:  # sent once first, so that nothing is due for the quiet pass
                rearm()
                resending_pass()
            quiet = _timed(quiet_pass, runs)
            resending = _timed(resending_pass, runs, before=rearm) if due else []
            expect(not due or set(resent_counts) == {due}, f"the resending passes sent {set(resent_counts)} rows, not {due}")
            sent_state = db.session.scalar(select(func.count()).select_from(Work).where(
                Work.id.in_(due_ids), Work.state == WorkState.SENT))
            expect(not due or sent_state == due, f"{sent_state} of the {due} resent rows were marked sent")

            rearm()
            # On PostgreSQL a literal moment; SQLite stores UTC text without a zone.
            stamp = utcnow()
            literal = f"'{stamp.isoformat()}'" if engine == "postgresql" else \
                f"'{stamp.replace(tzinfo=None).isoformat(sep=' ')}'"
            raw = db.engine.raw_connection()
            try:
                cursor = raw.cursor()
                selected = []

                def raw_select(hint=""):
                    def go():
                        cursor.execute(SELECT_DUE.format(hint=hint, now=literal))
                        selected.append(len(cursor.fetchall()))
                    return go

                def raw_select_unindexed():
                    query = SELECT_DUE.format(hint="", now=literal).replace("WHERE state IN", "WHERE state || '' IN")

                    def go():
                        cursor.execute(query)
                        selected.append(len(cursor.fetchall()))
                    return go

                if engine == "postgresql":
                    baseline = _timed(raw_select(), runs)
                    # `state || ''` no longer implies the partial index's condition: the planner must scan.
                    full_scan = _timed(raw_select_unindexed(), max(3, runs // 4))
                    cursor.execute("EXPLAIN " + SELECT_DUE.format(hint="", now=literal))
                else:
                    baseline = _timed(raw_select(), runs)
                    full_scan = _timed(raw_select("NOT INDEXED "), max(3, runs // 4))
                    cursor.execute("EXPLAIN QUERY PLAN " + SELECT_DUE.format(hint="", now=literal))
                plan = " ".join(str(row) for row in cursor.fetchall())
                raw.rollback()
            finally:
                raw.close()
            expect(set(selected) == {due}, f"the raw SELECT found {set(selected)} due rows, not {due}")
            expect("ix_work_open_lease" in plan, f"the reconciler's query does not read the partial index: {plan}")
            broker = "Redis" if app.config.get("REDIS_URL") else "embedded (filesystem, fsync per message)"
            with app.extensions["celery"].connection_for_write() as conn:
                conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])
            db.session.remove()
            db.engine.dispose()
    resend_db = _summary(database_ms[1:]) if len(database_ms) > 1 else None
    result = {
        "engine": engine, "finished": finished, "open": open_, "due": due, "runs": runs,
        "build_seconds": round(build_seconds, 1),
        "broker": broker, "quiet_pass": _summary(quiet),
        "resending_pass": _summary(resending) if resending else None, "resending_pass_database": resend_db,
        "baseline_raw_select": _summary(baseline), "full_scan_select": _summary(full_scan),
    }
    log(f"  reconciler over {finished:,} done + {open_:,} open work rows ({engine}): quiet pass "
        f"{result['quiet_pass']['median_ms']} ms median / {result['quiet_pass']['p95_ms']} ms p95; "
        + (f"resending {due} rows {result['resending_pass']['median_ms']} / {result['resending_pass']['p95_ms']} ms "
           f"(database part {resend_db['median_ms']} / {resend_db['p95_ms']} ms, the rest is the sends to the "
           f"{broker} broker); " if resending else "")
        + f"raw SELECT on the partial index {result['baseline_raw_select']['median_ms']} ms; "
        f"full scan {result['full_scan_select']['median_ms']} ms")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--record", metavar="SIZE",
                        help="keep the figures in benchmarks/results/<engine>-SIZE.json and rewrite RESULTS.md")
    args = parser.parse_args()
    load = [round(x, 1) for x in os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = run(args.finished, args.open, args.due, args.runs)
    print(json.dumps(result, indent=1))
    if args.record:
        from benchmarks import run as bench

        path = bench.RESULTS / f"{result['engine']}-{args.record}.json"
        record = json.loads(path.read_text())
        record["reconciler"] = result
        record.setdefault("runs", []).append({
            "started": started, "only": f"reconciler ({args.finished:,} finished, {args.open:,} open)",
            "load_at_start": load, "load_at_end": [round(x, 1) for x in os.getloadavg()]})
        path.write_text(json.dumps(record, indent=1, default=str))
        bench.write()


if __name__ == "__main__":
    main()
