"""Staff list pages at scale: server time of each page through the app, beside a stock Flask-Admin baseline.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.pages [--size full] [--runs 20]

Each page is fetched through the Flask test client as a researcher/auditor signed in through the sign-in pages
with the second factor (the time includes routing, the login session, the queries and the template), `--runs`
times after one warm-up; median and p95. A page that answers anything but 200 (a redirect to the sign-in
page, an error) stops the run: no figure is recorded for something that is not the page.
The baseline is a plain `flask_admin.contrib.sqla.ModelView` of the same table in a bare Flask app on the
same database, with default settings (numbered pager with COUNT(*), OFFSET paging) except that it shows the
same columns, filters, sort and page size as our page, so both render the same rows.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import OPEN_STATES, AuditEvent, CheckRun, Finding, Location, Provider, Submission, utcnow
from backoffice.services import hsds_ids
from benchmarks.expect import expect_status
from benchmarks.generate import bench_app, ensure_built, parse_size, sign_in


@dataclass
class PageResult:
    page: str
    url: str
    median_ms: float
    p95_ms: float
    baseline_url: str | None = None
    baseline_median_ms: float | None = None
    baseline_p95_ms: float | None = None


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return round(statistics.median(ordered), 1), round(p95, 1)


def timed(client, url: str, runs: int) -> tuple[float, float]:
    """Median and p95 of `runs` requests after a warm-up; every one of them must be the page itself (200)."""
    expect_status(client.get(url), url)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        expect_status(response, url)
    return percentiles(samples)


BASELINE_TABLES = {
    "providers": (Provider, ["id", "public_name", "npi", "listing_status", "verification_status", "verified_until",
                             "advertising_status", "recheck_due_at"],
                  ["listing_status", "verification_status", "advertising_status"], ("id", True)),
    "submissions": (Submission, ["id", "provider", "kind", "state", "submitted_at", "decision_due", "assignee"],
                    ["state", "kind"], ("id", True)),
    "findings": (Finding, ["id", "provider", "check", "severity", "state", "title", "opened_at"],
                 ["severity", "state", "check"], ("id", True)),
    "check_runs": (CheckRun, ["id", "provider", "check", "outcome", "summary", "started_at", "duration_ms"],
                   ["check", "outcome"], ("id", True)),
    "audit": (AuditEvent, ["seq", "occurred_at", "actor", "action", "entity_type", "entity_id", "provider_id"],
              ["actor", "action", "provider_id"], ("seq", True)),
}


def baseline_app(database_uri: str) -> Flask:
    """A bare Flask-Admin app: stock ModelViews, nothing of ours but the models."""
    app = Flask("baseline")
    app.config.update(SQLALCHEMY_DATABASE_URI=database_uri, SECRET_KEY="baseline")
    db.init_app(app)
    admin = Admin(app, url="/baseline")
    for name, (model, columns, filters, sort) in BASELINE_TABLES.items():
        view = type(f"Baseline{name.title()}", (ModelView,), {
            "column_list": columns, "column_filters": filters, "column_default_sort": sort, "page_size": 50,
            "column_searchable_list": ["public_name", "npi"] if model is Provider else None})
        admin.add_view(view(model, db, endpoint=f"baseline_{name}", url=f"/baseline/{name}"))
    return app


def filter_arg(app: Flask, endpoint: str, column: str, value: str) -> str:
    """The URL argument of a Flask-Admin 'equals' filter on a column, e.g. flt0_5=fail."""
    for view in app.extensions["admin"][0]._views:
        if getattr(view, "endpoint", None) != endpoint:
            continue
        for index, flt in enumerate(view._filters):
            if getattr(flt, "column", None) is not None and flt.column.key == column \
                    and str(flt.operation()) == "equals":
                return f"flt0_{view.get_filter_arg(index, flt)}={value}"
    raise LookupError(f"no equals filter on {endpoint}.{column}")


def cases(app: Flask, base: Flask, providers: int) -> list[tuple[str, str, str | None]]:
    """(label, our URL, baseline URL or None) for every page measured."""
    from backoffice.services import queue

    deep_page = providers // 100  # OFFSET of providers/2 rows at 50 a page
    cursor = None
    page = queue.page(db.session, queue.QueueFilters(), 1, utcnow())
    for _ in range(20):
        if not page.next_cursor:
            break
        cursor = page.next_cursor
        page = queue.page(db.session, queue.QueueFilters(), 1, utcnow(), cursor)
    head = db.session.scalar(select(func.max(AuditEvent.seq)))
    busiest = db.session.execute(select(AuditEvent.provider_id, func.count()).where(AuditEvent.provider_id <= 1000)
                                 .group_by(AuditEvent.provider_id).order_by(func.count().desc()).limit(1)).first()[0]
    actor = db.session.scalar(select(AuditEvent.actor).where(AuditEvent.actor.like("user:%")).limit(1))
    # What a researcher searches the queue for: a provider with an open request, by its NPI and its city.
    waiting = db.session.execute(
        select(Submission.id, Provider.npi, Location.city).join(Provider, Provider.id == Submission.provider_id)
        .join(Location, Location.provider_id == Provider.id)
        .where(Submission.state.in_(OPEN_STATES), Provider.npi.is_not(None)).limit(1)).first()

    def ours(endpoint, column, value):
        return filter_arg(app, endpoint, column, value)

    def theirs(endpoint, column, value):
        # The stock enum filter takes the member's name (SUSPENDED), ours its value (suspended).
        return filter_arg(base, f"baseline_{endpoint}", column, value if endpoint == "audit" else value.upper())

    rows = []
    for name, deep_label in (("providers", deep_page), ("submissions", deep_page * 3),
                             ("findings", max(1, deep_page * 3 // 10)), ("check_runs", deep_page * 20)):
        rows.append((f"{name}: first page", f"/admin/{name}/", f"/baseline/{name}/"))
        rows.append((f"{name}: page {deep_label}", f"/admin/{name}/?page={deep_label}",
                     f"/baseline/{name}/?page={deep_label}"))
    for name, column, value in (("providers", "listing_status", "suspended"), ("providers", "verification_status", "expired"),
                                ("submissions", "state", "needs_info"), ("submissions", "kind", "reinstatement"),
                                ("findings", "state", "open"), ("findings", "severity", "critical"),
                                ("check_runs", "outcome", "fail"), ("check_runs", "check", "submission_sla")):
        rows.append((f"{name}: {column}={value}", f"/admin/{name}/?{ours(name, column, value)}",
                     f"/baseline/{name}/?{theirs(name, column, value)}"))
    rows.append(("providers: search 'recovery'", "/admin/providers/?search=recovery", "/baseline/providers/?search=recovery"))
    rows += [
        ("review queue: first page", "/admin/review/", None),
        ("review queue: state=CA", "/admin/review/?state=CA", None),
        ("review queue: state=WY (few requests)", "/admin/review/?state=WY", None),
        ("review queue: unassigned + overdue", "/admin/review/?assignee=unassigned&overdue=1", None),
        ("review queue: page 20 (keyset)", f"/admin/review/?cursor={cursor}", None),
        ("review queue: search 'recovery'", "/admin/review/?q=recovery", None),
        ("review queue: search a city", f"/admin/review/?q={waiting.city}", None),
        ("review queue: search an NPI", f"/admin/review/?q={waiting.npi}", None),
        ("review queue: search a request number", f"/admin/review/?q=%23{waiting.id}", None),
        ("review queue: search matching nothing", "/admin/review/?q=zzzzqqq", None),
        ("review queue: My work", "/admin/review/?view=mine", None),
        ("review queue: Answered by the provider", "/admin/review/?view=answered", None),
        ("review queue: sorted by age", "/admin/review/?sort=age", None),
        ("review queue: sorted by latest activity", "/admin/review/?sort=activity", None),
        ("review queue: sorted by status", "/admin/review/?sort=state", None),
        ("open findings worklist", "/admin/finding-work/", None),
        ("audit log: first page", "/admin/audit/", "/baseline/audit/"),
        ("audit log: middle of the chain", f"/admin/audit/?before={head // 2}",
         f"/baseline/audit/?page={head // 2 // 50}"),
        (f"audit log: actor={actor}", f"/admin/audit/?actor={actor}", f"/baseline/audit/?{theirs('audit', 'actor', actor)}"),
        ("audit log: action=decision.recorded", "/admin/audit/?action=decision.recorded",
         f"/baseline/audit/?{theirs('audit', 'action', 'decision.recorded')}"),
        ("audit log: provider", f"/admin/audit/?provider_id={busiest}",
         f"/baseline/audit/?{theirs('audit', 'provider_id', str(busiest))}"),
        ("provider history", f"/admin/audit/provider/{busiest}", None),
        # Not staff pages, but read far more often: the public feed, a page of 100 with its advertisers' copy.
        ("listing feed: 100 listings with advertisements", "/api/v1/listings?limit=100", None),
        ("listing feed: filtered by state", "/api/v1/listings?limit=100&state=CA", None),
        # Not a staff page, but read as often: Prometheus scrapes every figure from the database.
        ("metrics scrape (Prometheus /metrics)", "/metrics", None),
        # The public feed (target p95 < 25 ms for every filter), including filters that match few rows or none.
        ("feed: first page", "/api/v1/listings", None),
        ("feed: level_of_care=otp", "/api/v1/listings?level_of_care=otp", None),
        ("feed: service=naloxone", "/api/v1/listings?service=naloxone", None),
        ("feed: service=syringe_services (few or none)", "/api/v1/listings?service=syringe_services", None),
        ("feed: state=WY", "/api/v1/listings?state=WY", None),
        ("feed: state=WY + service=naloxone", "/api/v1/listings?state=WY&service=naloxone", None),
        # The same listings as HSDS 3.0 (target p95 < 50 ms): numbered pages with their total, as HSDS pages are.
        ("hsds: services first page", "/hsds/services", None),
        ("hsds: services deep page", f"/hsds/services?page={max(1, deep_page)}", None),
        ("hsds: services taxonomy_term_id=naloxone",
         f"/hsds/services?taxonomy_term_id={hsds_ids.taxonomy_term(hsds_ids.term('service', 'naloxone'))}", None),
        ("hsds: organizations first page", "/hsds/organizations", None),
    ]
    return rows


def run(size: str, runs: int, only: str | None = None, baseline: bool = True, log=print) -> list[PageResult]:
    scale = parse_size(size)
    app = bench_app()
    with app.app_context():
        ensure_built(scale, log)
        base = baseline_app(app.config["SQLALCHEMY_DATABASE_URI"])
        client = app.test_client()
        sign_in(client)
        todo = [c for c in cases(app, base, scale.providers) if not only or only in c[0]]
        db.session.remove()
    results = []
    base_client = base.test_client()
    for label, url, base_url in todo:
        median, p95 = timed(client, url, runs)
        result = PageResult(label, url, median, p95, base_url)
        if base_url and baseline:
            result.baseline_median_ms, result.baseline_p95_ms = timed(base_client, base_url, max(min(3, runs), runs // 4))
        log(f"  {label:<44} {median:8.1f} / {p95:8.1f} ms" + (
            f"   baseline {result.baseline_median_ms:8.1f} / {result.baseline_p95_ms:8.1f} ms"
            if result.baseline_median_ms is not None else ""))
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--only", help="only the pages whose label contains this")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    results = run(args.size, args.runs, args.only, not args.no_baseline)
    print(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
