"""Review queue at scale: server time of queue pages over N providers and submissions.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python benchmarks/review_queue.py [--size 100000]
Builds its data with bulk inserts into the configured (empty, migrated) database, then times
first page, filtered pages and a deep keyset page through the real app (test client), median and p95.
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import timedelta

from sqlalchemy import insert, select

from backoffice import create_app
from backoffice.extensions import db
from backoffice.models import (
    Account, AccountRole, Location, Provider, Role, Submission, SubmissionKind, SubmissionState, utcnow,
)
from backoffice.auth.passwords import hash_password
from backoffice.vocab import US_STATES


def build(size: int) -> None:
    rng = random.Random(7)
    now = utcnow()
    states = sorted(US_STATES)
    kinds = list(SubmissionKind)
    open_states = [SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO]
    closed_states = [SubmissionState.APPROVED, SubmissionState.REJECTED, SubmissionState.WITHDRAWN]
    researcher = Account(email="bench@example.org", name="Bench Researcher", password_hash=hash_password("x" * 16),
                         roles=[AccountRole(role=Role.RESEARCHER)])
    db.session.add(researcher)
    db.session.flush()
    batch = 10_000
    for start in range(0, size, batch):
        ids = range(start + 1, min(start + batch, size) + 1)
        db.session.execute(insert(Provider), [
            {"id": i, "legal_name": f"Provider {i} LLC", "public_name": f"Provider {i}", "levels_of_care": [],
             "services": [], "populations": [], "payment_accepted": [], "created_at": now, "updated_at": now,
             "row_version": 1} for i in ids])
        db.session.execute(insert(Location), [
            {"provider_id": i, "street1": f"{i} Main St", "city": "Town", "state": rng.choice(states),
             "zip": "22902"} for i in ids])
        rows = []
        for i in ids:
            is_open = rng.random() < 0.3
            submitted = now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 1440))
            rows.append({
                "id": i, "provider_id": i, "kind": rng.choice(kinds),
                "state": rng.choice(open_states if is_open else closed_states), "proposed": {},
                "created_at": submitted, "submitted_at": submitted, "updated_at": submitted,
                "first_response_due": submitted + timedelta(days=2), "decision_due": submitted + timedelta(days=14),
                "assignee_id": researcher.id if rng.random() < 0.2 else None, "row_version": 1,
            })
        db.session.execute(insert(Submission), rows)
    db.session.commit()


def timed(client, url: str, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    app = create_app("testing", {"WTF_CSRF_ENABLED": False})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        if db.session.scalar(select(Provider.id).limit(1)) is None:
            started = time.perf_counter()
            build(args.size)
            print(f"built {args.size} providers and submissions in {time.perf_counter() - started:.1f} s")
        client = app.test_client()
        client.post("/login", data={"email": "bench@example.org", "password": "x" * 16})
        from backoffice.services import queue

        deep = None
        page = queue.page(db.session, queue.QueueFilters(), 1, utcnow())
        for _ in range(100):
            if not page.next_cursor:
                break
            deep = page.next_cursor
            page = queue.page(db.session, queue.QueueFilters(), 1, utcnow(), deep)
        engine = db.engine.dialect.name
        print(f"engine {engine}, {args.size} submissions, {args.runs} runs per page (ms: median / p95)")
        for label, url in [
            ("queue first page", "/admin/review/"),
            ("queue, state=CA", "/admin/review/?state=CA"),
            ("queue, unassigned + overdue", "/admin/review/?assignee=unassigned&overdue=1"),
            ("queue, kind=advertiser_application", "/admin/review/?kind=advertiser_application"),
            ("queue, page 100 by keyset", f"/admin/review/?cursor={deep}"),
            ("case page", f"/admin/review/case/{page.rows[0].submission.id}"),
        ]:
            median, p95 = timed(client, url, args.runs)
            print(f"  {label:<38} {median:7.1f} / {p95:7.1f}")


if __name__ == "__main__":
    main()
