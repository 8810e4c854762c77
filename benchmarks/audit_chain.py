"""Audit trail at scale: the cost of appending one event inside a decision, and verifying the chain.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.audit_chain [--size full]

Append: pairs of transactions that change one row and commit, one recording an audit event the way every
service does (`audit.record`, chained at commit under the chain lock) and one not; the cost is the
difference of each pair. Its floor, in the same run: the same statements through the raw driver (lock the
head with UPDATE ... RETURNING, hash, insert the event and move the head: on PostgreSQL one statement),
paired the same way, the four transactions of a round in a random order, so the ratio says what the ORM and
our code add to the work the database must do.

Verification: `audit.verify_chain` over the whole stored chain, end to end from the database (the daily
verification's walk), in events per second. On PostgreSQL beside it, in the same run: the same chain hashed
in this process (the design before: the database rebuilds each event's text, Python hashes it) and the bare
in-database floor (a count of the events whose hash differs from the hash of the rebuilt text, over the same
ranges on as many connections at once, and in one statement).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from sqlalchemy import select, update

from backoffice.auditverify import HASHED_FIELDS, canonical, compute_hash
from backoffice.extensions import db
from backoffice.models import Finding
from backoffice.services import audit
from benchmarks.expect import expect
from benchmarks.generate import bench_app, ensure_built, parse_size
from benchmarks.pages import percentiles


def _raw_statements(dialect: str) -> tuple[str, str, tuple[str, ...]]:
    """The statements the append makes, as the product spells them: change the row, lock and read the head,
    then insert the event and move the head (on PostgreSQL one statement)."""
    mark = "?" if dialect == "sqlite" else "%s"
    append = ((audit._insert_sql(mark, 1), audit._MOVE_HEAD_SQL[mark]) if dialect == "sqlite"
              else (audit._insert_and_move_head_sql(1),))
    return f"UPDATE finding SET close_reason = {mark} WHERE id = {mark}", audit._LOCK_SQL[mark], append


def append_cost(runs: int, seed: int = 20261202) -> dict:
    """Pairs of transactions through the product (one recording an event, one not) and the same pairs through the
    raw driver, all four in a random order each round, so that the machine's load and the processor's caches
    treat both alike."""
    finding_id = db.session.scalar(select(Finding.id).limit(1))
    expect(finding_id is not None, "the dataset has no finding to change")
    dialect = db.engine.dialect.name
    change, lock, append = _raw_statements(dialect)
    connection = db.engine.raw_connection()

    def stamp(value: datetime):  # what UTCDateTime binds: naive UTC text on SQLite, aware on PostgreSQL
        return audit._sqlite_stamp(value) if dialect == "sqlite" else value

    def product(n: int, record: bool) -> None:
        db.session.execute(update(Finding).where(Finding.id == finding_id).values(close_reason=f"bench {n}"))
        if record:
            audit.record(db.session, "system:bench", "finding.noted", "finding", finding_id,
                         before={"close_reason": None}, after={"close_reason": f"bench {n}"}, reason="benchmark")
        db.session.commit()

    def raw(n: int, record: bool) -> None:
        cursor = connection.cursor()
        cursor.execute(change, (f"raw {n}", finding_id))
        if record:
            now = datetime.now(timezone.utc)
            cursor.execute(lock, (stamp(now),))
            seq, prev_hash = cursor.fetchone()
            fields = {"seq": seq + 1, "occurred_at": now.isoformat(), "actor": "system:bench",
                      "action": "finding.noted", "entity_type": "finding", "entity_id": str(finding_id),
                      "provider_id": None, "before": {"close_reason": None},
                      "after": {"close_reason": f"raw {n}"}, "reason": "benchmark", "request_id": None,
                      "ip": None}
            digest = compute_hash(prev_hash, fields)
            values = [fields[name] for name in HASHED_FIELDS] + [prev_hash, digest]
            values[1] = stamp(now)
            values[7], values[8] = canonical(fields["before"]), canonical(fields["after"])
            if len(append) == 1:
                cursor.execute(append[0], values + [seq + 1, digest])
            else:
                cursor.execute(append[0], values)
                cursor.execute(append[1], (seq + 1, digest))
        connection.commit()

    kinds = [(product, True), (product, False), (raw, True), (raw, False)]
    wall: dict[tuple, list[float]] = {kind: [] for kind in kinds}
    cpu = dict.fromkeys(kinds, 0.0)
    rng = random.Random(seed)
    try:
        for n in range(runs + runs // 10):  # the first tenth warms up (statements prepared, caches filled)
            rng.shuffle(kinds)
            for kind in kinds:
                started, cpu_started = time.perf_counter(), time.process_time()
                kind[0](n, kind[1])
                if n >= runs // 10:
                    wall[kind].append((time.perf_counter() - started) * 1000)
                    cpu[kind] += time.process_time() - cpu_started
    finally:
        connection.close()
    result: dict = {"runs": runs}
    for name, how in (("", product), ("raw_", raw)):
        differences = [a - b for a, b in zip(wall[(how, True)], wall[(how, False)], strict=True)]
        median, p95 = percentiles(differences)
        result |= {f"{name}append_median_ms": median, f"{name}append_p95_ms": p95,
                   f"{name}append_cpu_ms": round((cpu[(how, True)] - cpu[(how, False)]) / runs * 1000, 3)}
    result["commit_with_event_median_ms"] = percentiles(wall[(product, True)])[0]
    result["commit_without_event_median_ms"] = percentiles(wall[(product, False)])[0]
    return result


def verify_baselines(limit: int) -> dict:
    """Beside the verification, in the same run, over the first `limit` events: the walk of two designs ago (each
    row decoded, its content encoded again and hashed); the bare floor of the last design (the raw driver fetching
    the text the database rebuilds, one SHA-256 a row, nothing else); and SHA-256 alone over those bytes, read
    into memory first."""
    from backoffice import auditverify

    started = time.perf_counter()
    decoded = sum(1 for record in audit.iter_event_rows(db.session, to_seq=limit) if auditverify.content_matches(record))
    decode_rate = decoded / (time.perf_counter() - started)
    db.session.rollback()
    connection = db.session.connection()
    dialect = connection.dialect.name
    query = f"SELECT prev_hash, hash, {audit._rebuilt_text_sql(dialect)} FROM audit_event WHERE seq <= {int(limit)} ORDER BY seq"
    cursor = connection.connection.cursor()
    started = time.perf_counter()
    cursor.execute(query)
    texts, matched = [], 0
    for prev_hash, digest, text in cursor:
        data = (prev_hash + text).encode("utf-8")
        matched += hashlib.sha256(data).hexdigest() == digest
        texts.append(data)
    raw_rate = len(texts) / (time.perf_counter() - started)
    cursor.close()
    db.session.rollback()
    started = time.perf_counter()
    for data in texts:
        hashlib.sha256(data).hexdigest()
    sha_rate = len(texts) / (time.perf_counter() - started)
    expect(matched == len(texts) == decoded,
           f"of {len(texts)} events the rebuilt text matched {matched} and the decoded walk {decoded}: the chain "
           "was not written as the product writes it")
    return {"baseline_events": len(texts), "verify_before_events_per_s": round(decode_rate),
            "verify_floor_events_per_s": round(raw_rate), "sha256_alone_events_per_s": round(sha_rate)}


def _count_unmatched(engine, after: int, through: int) -> int:
    """The bare in-database check of one range: how many events' hashes differ from the hash of the text the
    database rebuilds; no order, no links, no rows sent back."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("SET LOCAL jit = off")  # as the verification runs it
        cursor.execute(f"SELECT count(*) FROM audit_event WHERE seq > %s AND seq <= %s AND encode(sha256(convert_to("
                       f"prev_hash || {audit._rebuilt_text_sql('postgresql')}, 'UTF8')), 'hex') "
                       f"<> hash", (after, through))
        return cursor.fetchone()[0]
    finally:
        connection.rollback()
        connection.close()


def in_database_floor(events: int, ranges: int) -> tuple[float, float]:
    """PostgreSQL: the floor of the verification's design: the bare count of unmatched hashes over the same
    events, in the same ranges on as many connections at once, and in one statement (one core); events/s."""
    bounds = [events * n // ranges for n in range(ranges + 1)]
    pairs = list(zip(bounds, bounds[1:], strict=False))
    engine = db.engine
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=ranges) as pool:
        unmatched = sum(pool.map(lambda pair: _count_unmatched(engine, *pair), pairs))
    parallel = events / (time.perf_counter() - started)
    started = time.perf_counter()
    unmatched_one = _count_unmatched(engine, 0, events)
    one = events / (time.perf_counter() - started)
    expect(unmatched == unmatched_one == 0, f"{unmatched} events' hashes differ from their rebuilt text")
    return parallel, one


def verify_rate(repeats: int) -> dict:
    """The verification as the product runs it (on PostgreSQL the database walk in `verify_ranges` ranges), each
    run followed by its in-database floor (PostgreSQL), and, once, the walk of the design before (the database
    rebuilds each event's text, this process hashes it). A floor pass first reads the events into memory, so
    that the first run does not pay for reading them from disk alone."""
    postgresql = db.engine.dialect.name == "postgresql"
    head = audit.chain_head(db.session)[0]
    ranges = audit.verify_ranges(head)
    db.session.rollback()
    if postgresql:
        in_database_floor(head, ranges)
    rates, seconds, floors, floors_one = [], [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        report = audit.verify_chain(db.session)
        elapsed = time.perf_counter() - started
        db.session.rollback()
        expect(report.ok, f"the audit chain does not verify ({report}): its walk is not the verification's")
        rates.append(report.checked / elapsed)
        seconds.append(elapsed)
        if postgresql:
            parallel, one = in_database_floor(report.checked, ranges)
            floors.append(parallel)
            floors_one.append(one)
    result = {"events": report.checked, "verify_seconds": [round(s, 2) for s in seconds],
              "verify_events_per_s_median": round(statistics.median(rates)), "verify_events_per_s_worst": round(min(rates))}
    if postgresql:
        started = time.perf_counter()
        here = audit.verify_chain(db.session, in_database=False)
        elapsed = time.perf_counter() - started
        db.session.rollback()
        expect(here == report, f"hashing here reports {here}, the database walk {report}")
        result |= {"verify_ranges": ranges, "verify_hashed_here_events_per_s": round(here.checked / elapsed),
                   "in_db_floor_events_per_s": round(statistics.median(floors)),
                   "in_db_floor_one_statement_events_per_s": round(statistics.median(floors_one)),
                   "verify_over_in_db_floor": round(statistics.median(r / f for r, f in zip(rates, floors, strict=True)), 2)}
    return result


def run(size: str, runs: int = 1000, repeats: int = 3, log=print) -> dict:
    """Append cost over `runs` rounds of transactions and the verification rate over `repeats` walks."""
    app = bench_app()
    with app.app_context():
        scale = parse_size(size)
        ensure_built(scale, log)
        result = {"load_at_start": os.getloadavg()[0], **append_cost(runs), **verify_rate(repeats),
                  **verify_baselines(min(200_000, scale.audit_events))}
        result["load_at_end"] = os.getloadavg()[0]
        result["append_over_raw"] = round(result["append_median_ms"] / max(result["raw_append_median_ms"], 0.001), 2)
        result["append_cpu_over_raw"] = round(result["append_cpu_ms"] / max(result["raw_append_cpu_ms"], 0.001), 2)
    log(f"  audit append {result['append_median_ms']} / {result['append_p95_ms']} ms (raw driver "
        f"{result['raw_append_median_ms']} ms: {result['append_over_raw']}x; client CPU {result['append_cpu_ms']} vs "
        f"{result['raw_append_cpu_ms']} ms: {result['append_cpu_over_raw']}x); verify "
        f"{result['events']:,} events at {result['verify_events_per_s_median']:,}/s"
        + (f" ({result['verify_over_in_db_floor']}x the bare in-database check's "
           f"{result['in_db_floor_events_per_s']:,}/s; hashed here {result['verify_hashed_here_events_per_s']:,}/s)"
           if "in_db_floor_events_per_s" in result else ""))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--runs", type=int, default=1000, help="rounds of append transactions (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="verifications of the whole chain (default 3)")
    args = parser.parse_args()
    print(json.dumps(run(args.size, parse_size(args.size).sample(args.runs), args.repeats), indent=1))


if __name__ == "__main__":
    main()
