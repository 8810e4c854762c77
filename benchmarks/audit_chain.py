"""Audit trail at scale: the cost of appending one event inside a decision, and verifying the chain.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.audit_chain [--size full]

Append: pairs of transactions that change one row and commit, one recording an audit event the way every
service does (`audit.record`, chained at commit under the chain lock) and one not; the cost is the
difference of each pair. Verification: `audit.verify_chain` over the whole stored chain, end to end from
the database (the daily verification's walk), in events per second.
"""
from __future__ import annotations

import argparse
import json
import time

from sqlalchemy import select, update

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
    for n in range(runs):
        for record in (True, False):
            started = time.perf_counter()
            db.session.execute(update(Finding).where(Finding.id == finding_id).values(close_reason=f"bench {n}"))
            if record:
                audit.record(db.session, "system:bench", "finding.noted", "finding", finding_id,
                             before={"close_reason": None}, after={"close_reason": f"bench {n}"}, reason="benchmark")
            db.session.commit()
            (with_event if record else without_event).append((time.perf_counter() - started) * 1000)
    differences = [a - b for a, b in zip(with_event, without_event, strict=True)]
    median, p95 = percentiles(differences)
    return {"runs": runs, "append_median_ms": median, "append_p95_ms": p95,
            "commit_with_event_median_ms": percentiles(with_event)[0],
            "commit_without_event_median_ms": percentiles(without_event)[0]}


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
        result = {**append_cost(runs), **verify_rate(repeats)}
    log(f"  audit append {result['append_median_ms']} / {result['append_p95_ms']} ms; verify "
        f"{result['events']:,} events at {result['verify_events_per_s_median']:,}/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    args = parser.parse_args()
    print(json.dumps(run(args.size), indent=1))


if __name__ == "__main__":
    main()
