"""Audit trail at scale: the cost of appending one event inside a decision, and verifying the chain.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.audit_chain [--size full]

Append: pairs of transactions that change one row and commit, one recording an audit event the way every
service does (`audit.record`, chained at commit under the chain lock) and one not; the cost is the
difference of each pair. Its floor, in the same run: the same statements through the raw driver (lock the
head with UPDATE ... RETURNING, hash, INSERT the event, move the head), paired the same way, so the ratio
says what the ORM and our code add to the work the database must do. Verification: `audit.verify_chain` over the whole stored chain, end to end from
the database (the daily verification's walk), in events per second.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from datetime import datetime, timezone

from sqlalchemy import select, update

from backoffice.auditverify import HASHED_FIELDS, canonical, compute_hash
from backoffice.extensions import db
from backoffice.models import Finding
from backoffice.services import audit
from benchmarks.expect import expect
from benchmarks.generate import bench_app, ensure_built, parse_size
from benchmarks.pages import percentiles


def append_cost(runs: int) -> dict:
    finding_id = db.session.scalar(select(Finding.id).limit(1))
    expect(finding_id is not None, "the dataset has no finding to change")
    with_event, without_event = [], []
    cpu = {True: 0.0, False: 0.0}
    for n in range(runs):
        for record in (True, False):
            started, cpu_started = time.perf_counter(), time.process_time()
            db.session.execute(update(Finding).where(Finding.id == finding_id).values(close_reason=f"bench {n}"))
            if record:
                audit.record(db.session, "system:bench", "finding.noted", "finding", finding_id,
                             before={"close_reason": None}, after={"close_reason": f"bench {n}"}, reason="benchmark")
            db.session.commit()
            (with_event if record else without_event).append((time.perf_counter() - started) * 1000)
            cpu[record] += time.process_time() - cpu_started
    differences = [a - b for a, b in zip(with_event, without_event, strict=True)]
    median, p95 = percentiles(differences)
    return {"runs": runs, "append_median_ms": median, "append_p95_ms": p95,
            "commit_with_event_median_ms": percentiles(with_event)[0],
            "commit_without_event_median_ms": percentiles(without_event)[0],
            "append_cpu_ms": round((cpu[True] - cpu[False]) / runs * 1000, 3)}


def _raw_statements(dialect: str) -> tuple[str, str, str, str]:
    mark = (lambda n: ", ".join("?" * n)) if dialect == "sqlite" else (lambda n: ", ".join(["%s"] * n))
    one = "?" if dialect == "sqlite" else "%s"
    columns = (*HASHED_FIELDS, "prev_hash", "hash")
    return (f"UPDATE finding SET close_reason = {one} WHERE id = {one}",
            f"UPDATE audit_chain_lock SET locked_at = {one} WHERE id = 1 RETURNING head_seq, head_hash",
            f"INSERT INTO audit_event ({', '.join(columns)}) VALUES ({mark(len(columns))})",
            f"UPDATE audit_chain_lock SET head_seq = {one}, head_hash = {one} WHERE id = 1")


def raw_append_cost(runs: int) -> dict:
    """The floor: the statements an append needs, through the raw driver, with the same hash computed."""
    finding_id = db.session.scalar(select(Finding.id).limit(1))
    db.session.remove()
    dialect = db.engine.dialect.name
    change, lock, insert_event, move_head = _raw_statements(dialect)
    connection = db.engine.raw_connection()

    def stamp(value: datetime):  # what UTCDateTime binds: naive UTC text on SQLite, aware on PostgreSQL
        return value.replace(tzinfo=None).isoformat(" ") if dialect == "sqlite" else value

    with_event, without_event = [], []
    cpu = {True: 0.0, False: 0.0}
    try:
        for n in range(runs):
            for record in (True, False):
                started, cpu_started = time.perf_counter(), time.process_time()
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
                    cursor.execute(insert_event, values)
                    cursor.execute(move_head, (seq + 1, digest))
                connection.commit()
                (with_event if record else without_event).append((time.perf_counter() - started) * 1000)
                cpu[record] += time.process_time() - cpu_started
    finally:
        connection.close()
    differences = [a - b for a, b in zip(with_event, without_event, strict=True)]
    median, p95 = percentiles(differences)
    return {"raw_append_median_ms": median, "raw_append_p95_ms": p95,
            "raw_append_cpu_ms": round((cpu[True] - cpu[False]) / runs * 1000, 3)}


def verify_baselines(limit: int) -> dict:
    """Beside the verification, in the same run, over the first `limit` events: the walk it made before (each
    row decoded, its content encoded again and hashed); the bare floor of the way it works now (the raw driver
    fetching the text the database rebuilds, one SHA-256 a row, nothing else); and SHA-256 alone over those
    bytes, read into memory first."""
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
    cursor.execute(query)  # no parameters: the driver leaves the text's % as it is
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


def verify_rate(repeats: int) -> dict:
    rates, seconds = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        report = audit.verify_chain(db.session)
        elapsed = time.perf_counter() - started
        db.session.rollback()
        expect(report.ok, f"the audit chain does not verify ({report}): its walk is not the verification's")
        rates.append(report.checked / elapsed)
        seconds.append(elapsed)
    rates.sort()
    return {"events": report.checked, "verify_seconds": [round(s, 2) for s in seconds],
            "verify_events_per_s_median": round(rates[len(rates) // 2]), "verify_events_per_s_worst": round(rates[0])}


def run(size: str, runs: int = 200, repeats: int = 3, log=print) -> dict:
    """Append cost over `runs` pairs of transactions and the verification rate over `repeats` walks."""
    app = bench_app()
    with app.app_context():
        ensure_built(parse_size(size), log)
        result = {**append_cost(runs), **raw_append_cost(runs), **verify_rate(repeats),
                  **verify_baselines(min(200_000, parse_size(size).audit_events))}
        result["append_over_raw"] = round(result["append_median_ms"] / max(result["raw_append_median_ms"], 0.001), 2)
        result["append_cpu_over_raw"] = round(result["append_cpu_ms"] / max(result["raw_append_cpu_ms"], 0.001), 2)
    log(f"  audit append {result['append_median_ms']} / {result['append_p95_ms']} ms (raw driver "
        f"{result['raw_append_median_ms']} ms: {result['append_over_raw']}x; client CPU {result['append_cpu_ms']} vs "
        f"{result['raw_append_cpu_ms']} ms: {result['append_cpu_over_raw']}x); verify "
        f"{result['events']:,} events at {result['verify_events_per_s_median']:,}/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    args = parser.parse_args()
    print(json.dumps(run(args.size), indent=1))


if __name__ == "__main__":
    main()
