"""Audit trail at scale: build a valid chain of N events, export it streamed, verify it offline and in the DB.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench-audit DATABASE_URL=... python benchmarks/audit_export.py --events 1000000

Reports the peak memory (max RSS) of the export process at two sizes, to show it does not grow with the
trail, and the verification rates (offline script over the export; the database walk).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backoffice import create_app  # noqa: E402
from backoffice.auditverify import compute_hash  # noqa: E402
from backoffice.extensions import db  # noqa: E402
from backoffice.models import AuditChainLock, AuditEvent, utcnow  # noqa: E402
from backoffice.services import audit  # noqa: E402

ACTIONS = ["assessment.recorded", "submission.transitioned", "decision.recorded", "finding.opened",
           "provider.imported", "verification.granted"]


def build(events: int) -> None:
    """Append `events` valid events after the current head, in bulk, hashing as the product does."""
    seq, prev = db.session.execute(select(AuditChainLock.head_seq, AuditChainLock.head_hash)).one()
    start = utcnow()
    batch = []
    for n in range(events):
        seq += 1
        row = {
            "seq": seq, "occurred_at": start + timedelta(microseconds=n * 50), "actor": f"user:{1 + n % 40}",
            "action": ACTIONS[n % len(ACTIONS)], "entity_type": "provider", "entity_id": str(1 + n % 100_000),
            "provider_id": 1 + n % 100_000, "before": {"status": "pending"}, "after": {"status": "met"},
            "reason": "scale data", "request_id": None, "ip": None,
        }
        fields = {**row, "occurred_at": audit.jsonable(row["occurred_at"])}
        row["prev_hash"], row["hash"] = prev, compute_hash(prev, fields)
        prev = row["hash"]
        batch.append(row)
        if len(batch) == 20_000:
            db.session.execute(insert(AuditEvent), batch)
            batch = []
    if batch:
        db.session.execute(insert(AuditEvent), batch)
    db.session.execute(update(AuditChainLock).where(AuditChainLock.id == 1).values(head_seq=seq, head_hash=prev))
    db.session.commit()


def export_in_child(path: Path, to_seq: int | None) -> tuple[float, int]:
    """Run the export as its own process; returns (seconds, peak RSS in MiB)."""
    args = [sys.executable, "-m", "flask", "--app", "backoffice", "audit", "export", str(path)]
    if to_seq:
        args += ["--to-seq", str(to_seq)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(args, check=True, cwd=ROOT, env=os.environ, capture_output=True)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) // 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    app = create_app("testing")
    out = Path(os.environ.get("BACKOFFICE_INSTANCE_PATH", "/tmp")) / "exports"
    out.mkdir(parents=True, exist_ok=True)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        have = db.session.scalar(select(func.count()).select_from(AuditEvent))
        if have < args.events:
            started = time.perf_counter()
            build(args.events - have)
            print(f"built {args.events - have} events in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = audit.verify_chain(db.session)
        db_seconds = time.perf_counter() - started
        engine = db.engine.dialect.name
    small = max(args.events // 10, 1)
    small_time, small_rss = export_in_child(out / "small.jsonl", small)
    full_time, full_rss = export_in_child(out / "full.jsonl", None)
    started = time.perf_counter()
    verified = subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(out / "full.jsonl")],
                              capture_output=True, text=True)
    offline_seconds = time.perf_counter() - started
    size_mb = (out / "full.jsonl").stat().st_size / 1e6
    print(json.dumps({
        "engine": engine, "events": report.checked, "db_verify_ok": report.ok,
        "db_verify_seconds": round(db_seconds, 2), "db_verify_events_per_s": round(report.checked / db_seconds),
        f"export_{small}_events": {"seconds": round(small_time, 1), "peak_rss_mib": small_rss},
        f"export_{report.checked}_events": {"seconds": round(full_time, 1), "peak_rss_mib": full_rss,
                                            "file_mb": round(size_mb, 1)},
        "offline_verify": verified.stdout.strip(), "offline_verify_seconds": round(offline_seconds, 1),
        "offline_events_per_s": round(report.checked / offline_seconds),
    }, indent=2))


if __name__ == "__main__":
    main()
