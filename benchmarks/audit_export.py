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
from benchmarks.expect import expect  # noqa: E402

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


def export_in_child(path: Path, to_seq: int | None, env: dict) -> tuple[float, int]:
    """Run the export as its own process; returns (seconds, peak RSS in MiB)."""
    args = [sys.executable, "-m", "flask", "--app", "backoffice", "audit", "export", str(path)]
    if to_seq:
        args += ["--to-seq", str(to_seq)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    expect(done.returncode == 0, f"the export ended with status {done.returncode}: {done.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) // 1024


def run(events: int = 1_000_000, url: str | None = None, folder: Path | None = None, log=print) -> dict:
    """Fill the database at `url` (default DATABASE_URL) up to `events` events, export and verify them."""
    folder = folder or Path(os.environ.get("BACKOFFICE_INSTANCE_PATH", "/tmp"))
    out = folder / "exports"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "BACKOFFICE_ENV": "testing", "BACKOFFICE_INSTANCE_PATH": str(folder)}
    if url:
        env["DATABASE_URL"] = url
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url} if url else None)
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        have = db.session.scalar(select(func.count()).select_from(AuditEvent))
        if have < events:
            started = time.perf_counter()
            build(events - have)
            log(f"built {events - have} events in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = audit.verify_chain(db.session)
        db_seconds = time.perf_counter() - started
        expect(report.ok, f"the audit chain in the database does not verify ({report})")
        engine = db.engine.dialect.name
        db.session.remove()
        db.engine.dispose()
    small = max(report.checked // 10, 1)
    small_time, small_rss = export_in_child(out / "small.jsonl", small, env)
    full_time, full_rss = export_in_child(out / "full.jsonl", None, env)
    started = time.perf_counter()
    verified = subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(out / "full.jsonl")],
                              capture_output=True, text=True)
    offline_seconds = time.perf_counter() - started
    expect(verified.returncode == 0, f"the offline check of the export failed: {verified.stdout}{verified.stderr}")
    size_mb = (out / "full.jsonl").stat().st_size / 1e6
    return {
        "engine": engine, "events": report.checked, "db_verify_ok": report.ok,
        "db_verify_seconds": round(db_seconds, 2), "db_verify_events_per_s": round(report.checked / db_seconds),
        f"export_{small}_events": {"seconds": round(small_time, 1), "peak_rss_mib": small_rss},
        f"export_{report.checked}_events": {"seconds": round(full_time, 1), "peak_rss_mib": full_rss,
                                            "file_mb": round(size_mb, 1)},
        "offline_verify": verified.stdout.strip(), "offline_verify_seconds": round(offline_seconds, 1),
        "offline_events_per_s": round(report.checked / offline_seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    print(json.dumps(run(args.events), indent=2))


if __name__ == "__main__":
    main()
