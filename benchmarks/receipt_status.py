"""The signed status list of receipts at 100k providers: its one query, and the list signed as it is served.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench [DATABASE_URL=...] python -m benchmarks.receipt_status [--providers N]

A scratch database of its own (the scale dataset has no decisions): N providers, each verified by an approved
listing decision; 2% revoked, 1% suspended, 1% renewed by a later decision (so their first receipt is
superseded), each departure with its audit event. Ours: `receipts.no_longer_holding` (the one set-based
query) and `status_list_claims` signed (what GET /api/v1/receipts/status does). Bare baseline from the same
run: the same join of decision, submission and provider, counted, with no condition.
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

from flask_migrate import upgrade
from sqlalchemy import func, insert, select

from backoffice.extensions import db
from backoffice.models import (
    Account,
    AuditEvent,
    CriteriaCatalogue,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ListingStatus,
    Provider,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import receipts
from benchmarks.generate import bench_app, scratch_database

RESULTS = Path(__file__).resolve().parent / "results"


def build(providers: int) -> dict[str, int]:
    now = utcnow()
    until = now + timedelta(days=300)
    session = db.session
    session.execute(insert(Account.__table__), [{"id": 1, "email": "bench@example.org", "name": "Bench Researcher",
                                                 "password_hash": "x"}])
    session.execute(insert(CriteriaCatalogue.__table__), [{"id": 1, "version": 1, "published_by": "bench"}])
    revoked, suspended, renewed = set(range(1, providers + 1, 50)), set(range(2, providers + 1, 100)), \
        set(range(3, providers + 1, 100))
    rows = []
    for pid in range(1, providers + 1):
        rows.append({"id": pid, "legal_name": f"Provider {pid}", "public_name": f"Provider {pid}",
                     "listing_status": (ListingStatus.DELISTED if pid in revoked else
                                        ListingStatus.SUSPENDED if pid in suspended else ListingStatus.LISTED),
                     "verification_status": VerificationStatus.REVOKED if pid in revoked else VerificationStatus.VERIFIED,
                     "verified_at": now - timedelta(days=60), "verified_until": until, "verified_catalogue_id": 1,
                     "verified_decision_id": None})
    session.execute(insert(Provider.__table__), rows)
    submissions = [{"id": pid, "provider_id": pid, "kind": SubmissionKind.NEW_LISTING,
                    "state": SubmissionState.APPROVED} for pid in range(1, providers + 1)]
    submissions += [{"id": providers + n, "provider_id": pid, "kind": SubmissionKind.UPDATE,
                     "state": SubmissionState.APPROVED} for n, pid in enumerate(sorted(renewed), start=1)]
    session.execute(insert(Submission.__table__), submissions)
    decision = {"outcome": DecisionOutcome.APPROVED, "status": DecisionStatus.FINAL, "catalogue_id": 1,
                "decided_by_id": 1, "verified_until": until, "reason_codes": []}
    session.execute(insert(Decision.__table__), [
        {**decision, "id": s["id"], "submission_id": s["id"], "decided_at": now - timedelta(days=60 if s["id"] <= providers else 5)}
        for s in submissions])
    session.execute(Provider.__table__.update().values(verified_decision_id=Provider.id))
    for n, pid in enumerate(sorted(renewed), start=1):
        session.execute(Provider.__table__.update().where(Provider.id == pid)
                        .values(verified_decision_id=providers + n))
    events = [{"seq": n, "occurred_at": now - timedelta(days=1), "actor": "bench", "entity_type": "provider",
               "action": "verification.revoked" if pid in revoked else "listing.suspended", "entity_id": str(pid),
               "provider_id": pid, "before": None, "after": None, "prev_hash": f"{n - 1:064x}", "hash": f"{n:064x}"}
              for n, pid in enumerate(sorted(revoked | suspended), start=1)]
    session.execute(insert(AuditEvent.__table__), events)
    session.commit()
    return {"providers": providers, "decisions": len(submissions), "departures": len(revoked | suspended),
            "superseded": len(renewed)}


def timed(action, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        times.append((time.perf_counter() - started) * 1000)
        db.session.rollback()
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--providers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    folder = Path(os.environ.get("BACKOFFICE_INSTANCE_PATH", tempfile.mkdtemp(prefix="bench-receipts-")))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "receipt_status.db").unlink(missing_ok=True)  # the SQLite scratch file of an earlier run
    with scratch_database("receipt_status", folder) as url:
        app = bench_app(SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"))
            started = time.perf_counter()
            sizes = build(args.providers)
            built_s = time.perf_counter() - started
            if db.engine.dialect.name == "postgresql":
                db.session.execute(db.text("ANALYZE"))
                db.session.commit()
            now = utcnow()
            bare_ms, total = timed(lambda: db.session.scalar(
                select(func.count()).select_from(Decision).join(Submission, Submission.id == Decision.submission_id)
                .join(Provider, Provider.id == Submission.provider_id)), args.runs)
            query_ms, entries = timed(lambda: receipts.no_longer_holding(db.session, now), args.runs)
            keys = app.extensions["signing"]
            served_ms, token = timed(lambda: keys.sign(receipts.status_list_claims(db.session, now, "https://bench"),
                                                       receipts.STATUS_LIST_TYPE), args.runs)
            expected = sizes["departures"] + sizes["superseded"]
            if len(entries) != expected:
                raise SystemExit(f"not measured: the list holds {len(entries)} entries, not {expected}")
            engine = db.engine.dialect.name
    result = {
        "name": f"receipt_status-{engine}", "engine": engine, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **sizes,
        "joined_rows": total, "entries": len(entries), "runs": args.runs, "build_s": round(built_s, 1),
        "bare_join_count_ms": round(bare_ms, 1), "status_query_ms": round(query_ms, 1),
        "status_list_signed_ms": round(served_ms, 1), "status_list_bytes": len(str(token)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"receipt_status-{engine}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
