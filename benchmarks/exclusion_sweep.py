"""The exclusion sweep end to end: one task per provider (a SCREENING work row and run_check each) against the
batches (screening_batch rows and screen_batch), claims, screening and recording included.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/copy DATABASE_URL=... python -m benchmarks.exclusion_sweep [--sample 300]

It records runs, findings and work rows: run it on a copy of a scale database, never on a shared one. The
one-task-per-provider path is timed on a sample of listed providers and extrapolated; the sweep then screens
every other listed provider in batches of SCREENING_BATCH_SIZE. The load average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from flask_migrate import upgrade
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import CheckKind, ListingStatus, Provider, Work, WorkKind
from backoffice.services import rechecks, work
from benchmarks.generate import bench_app


def run(sample: int = 300) -> dict:
    app = bench_app()
    with app.app_context():
        upgrade()
        from tasks import checks  # the task modules need the app (they read its Celery instance)

        listed = db.session.scalar(select(func.count()).select_from(Provider)
                                   .where(Provider.listing_status == ListingStatus.LISTED))
        load_at_start = [round(x, 2) for x in os.getloadavg()]
        policy = work.Policy.from_config(app.config)
        rows = work.request_many(db.session, "system:benchmark", [
            work.check_spec(WorkKind.SCREENING, provider_id, CheckKind.EXCLUSION, "benchmark-one-by-one")
            for provider_id in rechecks.listed_provider_ids(db.session, 0, sample)], policy)
        db.session.commit()
        row_ids = [r.id for r in rows]
        started = time.perf_counter()
        for row_id in row_ids:
            checks.run_check.apply(args=[row_id]).get()
        one_by_one = (time.perf_counter() - started) / len(row_ids)
        started = time.perf_counter()
        checks.exclusion_sweep.apply().get()
        asking = time.perf_counter() - started
        batches = list(db.session.scalars(select(Work.id).where(Work.kind == WorkKind.SCREENING_BATCH)
                                          .order_by(Work.id)))
        started = time.perf_counter()
        recorded = sum(checks.screen_batch.apply(args=[batch]).get() for batch in batches)
        batched = time.perf_counter() - started
    return {"listed": listed, "one_by_one_sample": len(row_ids), "one_task_per_provider_ms": round(one_by_one * 1000, 2),
            "one_task_per_provider_extrapolated_seconds": round(one_by_one * listed, 1),
            "sweep_asking_seconds": round(asking, 2), "batches": len(batches), "runs_recorded": recorded,
            "batches_seconds": round(batched, 1), "batched_per_provider_ms": round(batched / max(recorded, 1) * 1000, 2),
            "load_at_start": load_at_start, "load_at_end": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300)
    print(json.dumps(run(parser.parse_args().sample), indent=1))


if __name__ == "__main__":
    main()
