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
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime

from flask import Flask
from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import OPEN_STATES, AuditEvent, CheckRun, Finding, Location, Provider, Submission, utcnow
from backoffice.services import hsds_ids
from benchmarks.expect import expect, expect_status
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


PUBLIC = ("/api/", "/hsds/", "/.well-known/")  # what anyone reads without signing in


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


def timed_call(work: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and p95 of `runs` calls of a baseline after a warm-up."""
    work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


# The feed's bare baseline: the same rows through the raw driver (the same four queries the page makes:
# providers, their locations, their catalogue versions, their advertisers' copy) and one json.dumps, no ORM and
# no Flask. The SQL is spelled out on purpose: it is what the feed's ORM queries amount to.
BARE_FEED = """SELECT p.id, p.public_name, p.legal_name, p.website, p.phone, p.levels_of_care, p.services,
 p.populations, p.payment_accepted, p.verification_status, p.verified_at, p.verified_until,
 p.verified_catalogue_id, p.last_rechecked_at, p.advertising_status
 FROM provider p WHERE p.listing_status = 'listed' AND p.verification_status = 'verified'
 AND p.verified_until > :now {where} ORDER BY p.id LIMIT :limit"""
BARE_STATE = " AND EXISTS (SELECT 1 FROM location l WHERE l.provider_id = p.id AND l.state = :state)"
BARE_CODE = (" AND p.id IN (SELECT c.provider_id FROM provider_code c WHERE c.kind = :kind_{name}"
             " AND c.code = :code_{name})")
BARE_LOCATIONS = ("SELECT provider_id, street1, street2, city, state, zip, latitude, longitude FROM location"
                  " WHERE provider_id IN ({ids}) ORDER BY provider_id, id")
BARE_VERSIONS = "SELECT id, version FROM criteria_catalogue WHERE id IN ({ids})"
BARE_COPY = ("SELECT provider_id, headline, body, claims, landing_url, approved_at FROM advertising_copy"
             " WHERE provider_id IN ({ids}) AND approved_at IS NOT NULL ORDER BY provider_id, approved_at")


def _plain(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(type(value))


def bare_feed(url: str) -> Callable[[], bytes]:
    """The bare baseline of one feed URL (its state, level_of_care and service filters, its limit)."""
    from urllib.parse import parse_qsl, urlsplit

    from backoffice.models import CODED_LISTS

    args = dict(parse_qsl(urlsplit(url).query))
    dialect = db.engine.dialect
    now = Provider.verified_until.type.bind_processor(dialect)(utcnow())
    params: dict = {"now": now, "limit": int(args.get("limit", 50)) + 1}
    where = ""
    if "state" in args:
        where += BARE_STATE
        params["state"] = args["state"]
    for name, lists in (("level_of_care", "levels_of_care"), ("service", "services")):
        if name in args:
            where += BARE_CODE.format(name=name)
            params[f"kind_{name}"], params[f"code_{name}"] = CODED_LISTS[lists], args[name]
    sql = BARE_FEED.format(where=where)
    if dialect.name == "postgresql":
        sql = re.sub(r":(\w+)", r"%(\1)s", sql)

    def listing_json(value):
        return json.loads(value) if isinstance(value, str) else value

    def fetch() -> bytes:
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql, params)
            names = [d[0] for d in cursor.description]
            providers = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()][:params["limit"] - 1]
            ids = ",".join(str(p["id"]) for p in providers) or "0"
            cursor.execute(BARE_LOCATIONS.format(ids=ids))
            located: dict = {}
            for row in cursor.fetchall():
                located.setdefault(row[0], []).append(dict(zip(
                    ("street1", "street2", "city", "state", "zip", "latitude", "longitude"), row[1:], strict=True)))
            catalogues = ",".join(str(p["verified_catalogue_id"]) for p in providers if p["verified_catalogue_id"])
            if catalogues:
                cursor.execute(BARE_VERSIONS.format(ids=catalogues))
                versions = dict(cursor.fetchall())
            else:
                versions = {}
            cursor.execute(BARE_COPY.format(ids=ids))
            copies = {row[0]: row for row in cursor.fetchall()}
            for p in providers:
                p["locations"] = located.get(p["id"], [])
                for name in ("levels_of_care", "services", "populations", "payment_accepted"):
                    p[name] = listing_json(p[name])
                p["criteria_version"] = versions.get(p["verified_catalogue_id"])
                p["advertisement"] = copies.get(p["id"])
            return json.dumps({"listings": providers}, default=_plain, sort_keys=True).encode()
        finally:
            raw.close()

    expect(fetch().startswith(b'{"listings"'), f"the bare baseline of {url} did not run")
    return fetch


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


def cases(app: Flask, base: Flask, providers: int) -> list[tuple[str, str, str | Callable | None]]:
    """(label, our URL, baseline URL, bare baseline function or None) for every page measured."""
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
        # The same page as the pager's next link from the page before reaches it, with the key it starts after.
        model = BASELINE_TABLES[name][0]
        after = db.session.scalar(select(model.id).order_by(model.id.desc()).offset(deep_label * 50 - 1).limit(1))
        rows.append((f"{name}: page {deep_label} by the pager's link (keyset)",
                     f"/admin/{name}/?page={deep_label}&after={after}", None))
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
        ("listing feed: 100 listings with advertisements", "/api/v1/listings?limit=100",
         bare_feed("/api/v1/listings?limit=100")),
        ("listing feed: filtered by state", "/api/v1/listings?limit=100&state=CA",
         bare_feed("/api/v1/listings?limit=100&state=CA")),
        # Not a staff page, but read as often: Prometheus scrapes every figure from the database.
        ("metrics scrape (Prometheus /metrics)", "/metrics", None),
        # The public feed (target p95 < 25 ms for every filter), including filters that match few rows or none,
        # each beside its bare baseline (target: at most 2.5x).
        *((label, url, bare_feed(url)) for label, url in (
            ("feed: first page", "/api/v1/listings"),
            ("feed: level_of_care=otp", "/api/v1/listings?level_of_care=otp"),
            ("feed: service=naloxone", "/api/v1/listings?service=naloxone"),
            ("feed: service=syringe_services (few or none)", "/api/v1/listings?service=syringe_services"),
            ("feed: state=WY", "/api/v1/listings?state=WY"),
            ("feed: state=WY + service=naloxone", "/api/v1/listings?state=WY&service=naloxone"),
            ("feed: state=WY + level_of_care=otp + service=syringe_services (none)",
             "/api/v1/listings?state=WY&level_of_care=otp&service=syringe_services"))),
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
        # The feed's and HSDS's readers are programs without a session: a staff client would add loading its
        # account and renewing its session cookie to every request.
        anonymous = app.test_client()
        wanted = only.split(",") if only else None  # labels containing any of these
        todo = [c for c in cases(app, base, scale.providers) if not wanted or any(w in c[0] for w in wanted)]
        db.session.remove()
    results = []
    base_client = base.test_client()
    for label, url, base_url in todo:
        median, p95 = timed(anonymous if url.startswith(PUBLIC) else client, url, runs)
        result = PageResult(label, url, median, p95, base_url if isinstance(base_url, str) else None)
        if callable(base_url) and baseline:
            result.baseline_url = "bare SQL + json.dumps of the same rows"
            with app.app_context():
                result.baseline_median_ms, result.baseline_p95_ms = timed_call(base_url, runs)
        elif base_url and baseline:
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
    parser.add_argument("--only", help="only the pages whose label contains this (or any of a comma-separated list)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    results = run(args.size, args.runs, args.only, not args.no_baseline)
    print(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
