"""Scale dataset for the benchmarks, built with bulk inserts on SQLite or PostgreSQL (DATABASE_URL).

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.generate [--size full|small|N]

At full size (N = 100,000 providers): names and addresses drawn from the real SAMHSA facility files in
data/public, realistic spreads of states, levels of care and statuses, 1-3 principals each, 300k
submissions, 1M audit events forming a valid chain, 2M check runs, ~30k findings, and an exclusion
table of ~80k rows built from the real OIG LEIE rows. Every count scales with N. Reports its own time.
The database must be migrated and empty (the script migrates it); a second run on a filled one does nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Iterator

from sqlalchemy import JSON, create_engine, make_url, select, update

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backoffice.auditverify import canonical, compute_hash  # noqa: E402
from backoffice.checks import exclusion_lists, names  # noqa: E402
from backoffice.extensions import db  # noqa: E402
from backoffice.importers.locator import FacilityRecord, read_file  # noqa: E402
from backoffice.models import (  # noqa: E402
    AdvertisingCopy,
    AdvertisingStatus,
    AuditChainLock,
    AuditEvent,
    CheckKind,
    CheckOutcome,
    CheckRun,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    Finding,
    FindingSeverity,
    FindingState,
    ListingStatus,
    Location,
    Principal,
    PrincipalRole,
    Provider,
    ProviderCode,
    Role,
    Submission,
    SubmissionKind,
    SubmissionProposedCity,
    SubmissionProposedState,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import accounts, audit, mfa, provider_codes  # noqa: E402
from backoffice.vocab import US_STATES  # noqa: E402
from benchmarks.expect import expect  # noqa: E402
from config import normalise_database_url  # noqa: E402

DATA = ROOT / "data" / "public"
SAMHSA_FILES = ["oeps_SubstanceUseTreatment_Geocoded.csv", "oeps_MentalHealthProviders_Geocoded.csv",
                "oeps_OpioidTreatmentProgram_Geocoded.csv"]
LEIE_FILES = ["oig_leie_monthly_exclusions_2016-01_to_2023-06.csv", "oig_leie_monthly_reinstatements_2016-01_to_2023-06.csv"]
# tiny is for the test that keeps the benchmarks running (tests/test_benchmarks.py), not for figures.
SIZES = {"full": 100_000, "medium": 30_000, "small": 10_000, "tiny": 200}
BENCH_STATES = sorted(US_STATES)
BENCH_PASSWORD = "bench-password-2026"
BENCH_EMAIL = "bench@bench.example"
BATCH = 20_000


@dataclass(frozen=True)
class Scale:
    providers: int

    @property
    def submissions(self) -> int:
        return self.providers * 3

    @property
    def audit_events(self) -> int:
        return self.providers * 10

    @property
    def check_runs(self) -> int:
        return self.providers * 20

    @property
    def exclusions(self) -> int:
        # The full LEIE is ~80k rows; smaller sizes keep the ratio of list to providers, and a tiny one
        # holds ten rows a provider.
        return max(min(25_000, self.providers * 10), self.providers * 8 // 10)

    @property
    def quick(self) -> bool:
        """Below `small` a run only proves the tools work: its samples are cut down and it records nothing."""
        return self.providers < SIZES["small"]

    def sample(self, default: int) -> int:
        """How many repeats or sampled items a benchmark takes at this size."""
        return max(5, default // 20) if self.quick else default

    @property
    def import_rows(self) -> int | None:
        """Rows read from each SAMHSA file by the import benchmark: every row from `small` up."""
        return self.providers if self.quick else None


def parse_size(value: str) -> Scale:
    return Scale(SIZES[value] if value in SIZES else int(value))


def weighted(rng: random.Random, spread: dict):
    return rng.choices(list(spread), weights=list(spread.values()))[0]


LISTING = {ListingStatus.LISTED: 70, ListingStatus.UNLISTED: 15, ListingStatus.SUSPENDED: 4,
           ListingStatus.DELISTED: 6, ListingStatus.CLOSED: 5}
VERIFICATION = {VerificationStatus.VERIFIED: 55, VerificationStatus.UNVERIFIED: 30, VerificationStatus.EXPIRED: 12,
                VerificationStatus.REVOKED: 3}
SUBMISSION_STATES = {SubmissionState.APPROVED: 62, SubmissionState.REJECTED: 14, SubmissionState.WITHDRAWN: 8,
                     SubmissionState.SUBMITTED: 6, SubmissionState.IN_REVIEW: 5, SubmissionState.NEEDS_INFO: 3,
                     SubmissionState.DRAFT: 2}
SUBMISSION_KINDS = {SubmissionKind.UPDATE: 55, SubmissionKind.NEW_LISTING: 30,
                    SubmissionKind.ADVERTISER_APPLICATION: 10, SubmissionKind.REINSTATEMENT: 5}
CHECKS = {CheckKind.WEBSITE: 30, CheckKind.NPI: 25, CheckKind.EXCLUSION: 25, CheckKind.LICENCE_EXPIRY: 8,
          CheckKind.ACCREDITATION_EXPIRY: 5, CheckKind.VERIFICATION_EXPIRY: 5, CheckKind.SUBMISSION_SLA: 2}
OUTCOMES = {CheckOutcome.PASS: 88, CheckOutcome.WARN: 6, CheckOutcome.FAIL: 3, CheckOutcome.ERROR: 3}
FINDING_STATES = {FindingState.RESOLVED: 55, FindingState.OPEN: 25, FindingState.ACKNOWLEDGED: 8,
                  FindingState.DISMISSED: 12}
LEVELS = ["outpatient", "iop", "residential", "detox", "php", "otp", "telehealth", "recovery_residence"]
AUDIT_ACTIONS = {"check_run.recorded": 40, "assessment.recorded": 20, "submission.transitioned": 15,
                 "decision.recorded": 6, "finding.opened": 6, "finding.resolved": 4, "provider.updated": 5,
                 "verification.granted": 3, "provider.imported": 1}


def samhsa_facilities(limit: int | None = None) -> list[FacilityRecord]:
    """The facilities of the real files, in file order; with `limit`, only as many as that."""
    records: list[FacilityRecord] = []
    for name in SAMHSA_FILES:
        _, rows = read_file(DATA / name)
        for row in rows:
            if isinstance(row, FacilityRecord):
                records.append(row)
                if limit is not None and len(records) == limit:
                    return records
    return records


def leie_rows(limit: int | None = None) -> list[exclusion_lists.ExclusionRow]:
    """The rows of the real LEIE files; with `limit`, only the first that many lines of each (a small dataset
    does not need the whole list, and reading it is most of a tiny build)."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in LEIE_FILES:
            path = DATA / name
            if limit is not None:
                head = Path(folder) / name
                head.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:limit + 1]))
                path = head
            rows += exclusion_lists.read(path, expect={"oig_leie"}).rows
    return rows


def bulk_insert(table, rows: list[dict]) -> None:
    """COPY on PostgreSQL (an order of magnitude faster than INSERT), executemany elsewhere. Values are bound
    as the columns' types bind them, JSON as canonical text (keys sorted, no spaces): what the audit chain
    stores since it keeps the hashed text, and equally valid JSON for every other column."""
    if not rows:
        return
    columns = list(rows[0])
    types = {c: table.c[c].type for c in columns}
    processors = {c: types[c].bind_processor(db.engine.dialect) for c in columns}

    def bound(row: dict) -> list:
        values = []
        for c in columns:
            value = row[c]
            if value is not None and isinstance(types[c], JSON):
                value = canonical(value)
            elif value is not None and processors[c] is not None:
                value = processors[c](value)
            values.append(value)
        return values

    if db.engine.dialect.name != "postgresql":
        marks = ", ".join("?" * len(columns))
        cursor = db.session.connection().connection.cursor()
        quoted = ", ".join(f'"{c}"' for c in columns)
        cursor.executemany(f"INSERT INTO {table.name} ({quoted}) VALUES ({marks})",
                           [bound(row) for row in rows])
        cursor.close()
        return
    raw = db.session.connection().connection.driver_connection
    with raw.cursor() as cursor:
        quoted = ", ".join(f'"{c}"' for c in columns)
        with cursor.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(bound(row))


def fix_sequences() -> None:
    """COPY with explicit ids leaves PostgreSQL's sequences behind; move them past the data."""
    if db.engine.dialect.name != "postgresql":
        return
    for table in ("provider", "location", "principal", "submission", "check_run", "finding", "exclusion_record",
                  "exclusion_source"):
        db.session.execute(db.text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 1))"))


def build(scale: Scale, log=print) -> dict[str, float]:
    """Fill the empty, migrated database of the current app; returns seconds per part."""
    rng = random.Random(2026)
    now = utcnow()
    timings: dict[str, float] = {}

    def part(label: str, started: float, rows: int) -> None:
        timings[label] = time.perf_counter() - started
        log(f"  {label:<16} {rows:>9,} rows in {timings[label]:6.1f} s")

    started = time.perf_counter()
    staff = [accounts.create_account(db.session, "system:bench", email=f"researcher{n}@bench.example",
                                     name=f"Researcher {n}", password=BENCH_PASSWORD, roles=[Role.RESEARCHER],
                                     email_confirmed=True) for n in range(1, 3 if scale.quick else 9)]
    bench = accounts.create_account(db.session, "system:bench", email=BENCH_EMAIL, name="Bench Staff",
                                    password=BENCH_PASSWORD, roles=[Role.RESEARCHER, Role.AUDITOR],
                                    email_confirmed=True)
    with_second_factor(bench)
    db.session.commit()  # the account events join the chain now; the bulk chain continues after them
    staff_ids = [a.id for a in staff] + [bench.id]

    facilities = samhsa_facilities(scale.providers)
    people = leie_rows(scale.exclusions if scale.quick else None)
    first_names = [r.first_name for r in people if r.first_name]
    last_names = [r.last_name for r in people if r.last_name]
    providers, locations, principals = [], [], []
    principal_id = 0
    for pid in range(1, scale.providers + 1):
        facility = facilities[(pid - 1) % len(facilities)]
        copy = (pid - 1) // len(facilities)
        public = facility.public_name if copy == 0 else f"{facility.public_name} ({copy + 1})"
        listing = weighted(rng, LISTING)
        verification = weighted(rng, VERIFICATION)
        advertising = AdvertisingStatus.NONE
        if verification == VerificationStatus.VERIFIED and listing == ListingStatus.LISTED:
            advertising = weighted(rng, {AdvertisingStatus.NONE: 85, AdvertisingStatus.ACTIVE: 10,
                                         AdvertisingStatus.PENDING: 3, AdvertisingStatus.ENDED: 2})
        verified_at = now - timedelta(days=rng.randint(1, 700)) if verification != VerificationStatus.UNVERIFIED else None
        created = now - timedelta(days=rng.randint(30, 1500))
        providers.append({
            "id": pid, "legal_name": facility.legal_name if copy == 0 else public, "public_name": public,
            "npi": f"1{rng.randrange(10**8, 10**9):09d}" if rng.random() < 0.7 else None,
            "website": facility.website, "phone": facility.phone, "email": None,
            "levels_of_care": facility.levels_of_care or rng.sample(LEVELS, rng.randint(1, 3)),
            "services": facility.services, "populations": facility.populations,
            "payment_accepted": facility.payment_accepted, "listing_status": listing,
            "verification_status": verification, "verified_at": verified_at,
            "verified_until": verified_at + timedelta(days=365) if verified_at else None,
            "advertising_status": advertising,
            "last_rechecked_at": now - timedelta(days=rng.randint(0, 30)),
            "recheck_due_at": now + timedelta(days=rng.randint(-3, 30)),
            "import_source": "bench", "import_key": str(pid), "created_at": created, "updated_at": created,
            "row_version": 1,
        })
        locations.append({
            "id": pid, "provider_id": pid,
            "street1": facility.street1 if copy == 0 else f"{rng.randint(1, 9999)} {facility.street1}"[:200],
            "street2": facility.street2, "city": facility.city, "state": facility.state, "zip": facility.zip,
            "county": facility.county, "latitude": facility.latitude, "longitude": facility.longitude,
            "phone": facility.phone,
        })
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            principal_id += 1
            principals.append({
                "id": principal_id, "provider_id": pid, "role": rng.choice(list(PrincipalRole)),
                "name": f"{rng.choice(first_names).title()} {rng.choice(last_names).title()}",
                "npi": f"1{rng.randrange(10**8, 10**9):09d}" if rng.random() < 0.5 else None, "notes": None,
            })
    # Core inserts bypass the session hook that keeps provider_code: its rows are written here.
    codes = [row for p in providers for row in provider_codes.rows_for(p["id"], p)]
    for table, rows in ((Provider.__table__, providers), (Location.__table__, locations),
                        (Principal.__table__, principals), (ProviderCode.__table__, codes)):
        for start in range(0, len(rows), BATCH):
            bulk_insert(table, rows[start:start + BATCH])
    db.session.commit()
    part("providers", started, len(providers) + len(locations) + len(principals))

    started = time.perf_counter()
    open_states = {SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO}
    rows, proposed_states, proposed_cities, copies = [], [], [], []
    state_of = {loc["provider_id"]: loc["state"] for loc in locations}
    for sid in range(1, scale.submissions + 1):
        state = weighted(rng, SUBMISSION_STATES)
        submitted = now - timedelta(days=rng.randint(0, 900) if state not in open_states else rng.randint(0, 40),
                                    minutes=rng.randint(0, 1440))
        provider_id, kind = rng.randint(1, scale.providers), weighted(rng, SUBMISSION_KINDS)
        proposed = {}
        if kind in (SubmissionKind.NEW_LISTING, SubmissionKind.UPDATE):
            # A listing request proposes its locations; one in ten moves to (or adds) another state.
            moved = rng.choice(BENCH_STATES) if rng.random() < 0.1 else state_of[provider_id]
            proposed = {"locations": [{"street1": "1 Main Street", "city": "Springfield", "state": moved,
                                       "zip": "00000"}]}
            proposed_states.append({"submission_id": sid, "state": moved})
            proposed_cities.append({"submission_id": sid, "city": "springfield"})
        rows.append({
            "id": sid, "provider_id": provider_id, "kind": kind,
            "state": state, "proposed": proposed, "created_by_id": None,
            "assignee_id": rng.choice(staff_ids) if state in open_states and rng.random() < 0.6 else None,
            "created_at": submitted, "submitted_at": submitted if state != SubmissionState.DRAFT else None,
            "first_response_due": submitted + timedelta(days=2), "decision_due": submitted + timedelta(days=14),
            "closed_at": submitted + timedelta(days=rng.randint(1, 20)) if state not in open_states else None,
            "updated_at": submitted, "row_version": 1,
        })
        if kind == SubmissionKind.ADVERTISER_APPLICATION:
            # Every application carries its copy; an approved one's copy was approved when it closed.
            copies.append({
                "submission_id": sid, "provider_id": provider_id, "headline": f"Recovery close to home {sid}",
                "body": "Outpatient and residential treatment; call our admissions team.",
                "claims": ["Accredited by CARF", "Admissions open 24 hours"],
                "landing_url": f"https://provider{provider_id}.example.org/admissions",
                "created_at": submitted, "updated_at": submitted,
                "approved_at": rows[-1]["closed_at"] if state == SubmissionState.APPROVED else None})
        if len(rows) == BATCH:
            bulk_insert(Submission.__table__, rows)
            rows = []
    bulk_insert(Submission.__table__, rows)
    for start in range(0, len(copies), BATCH):
        bulk_insert(AdvertisingCopy.__table__, copies[start:start + BATCH])
    for start in range(0, len(proposed_states), BATCH):
        bulk_insert(SubmissionProposedState.__table__, proposed_states[start:start + BATCH])
        bulk_insert(SubmissionProposedCity.__table__, proposed_cities[start:start + BATCH])
    db.session.commit()
    part("submissions", started, scale.submissions)

    started = time.perf_counter()
    rows = []
    kinds, weights = list(CHECKS), list(CHECKS.values())
    outcomes, outcome_weights = list(OUTCOMES), list(OUTCOMES.values())
    span = timedelta(days=365).total_seconds()
    for rid in range(1, scale.check_runs + 1):
        check = rng.choices(kinds, weights)[0]
        outcome = rng.choices(outcomes, outcome_weights)[0]
        pid = rng.randint(1, scale.providers)
        began = now - timedelta(seconds=span * (1 - rid / scale.check_runs))
        rows.append({
            "id": rid, "provider_id": pid, "check": check, "outcome": outcome,
            "summary": f"{check.label}: {outcome.value}", "evidence": {}, "source_version": None,
            "idempotency_key": f"{check.value}:{pid}:bench-{rid}", "started_at": began,
            "finished_at": began + timedelta(milliseconds=250), "duration_ms": rng.randint(80, 2500),
        })
        if len(rows) == BATCH:
            bulk_insert(CheckRun.__table__, rows)
            rows = []
    bulk_insert(CheckRun.__table__, rows)
    db.session.commit()
    part("check runs", started, scale.check_runs)

    started = time.perf_counter()
    rows = []
    for fid in range(1, scale.providers * 3 // 10 + 1):
        state = weighted(rng, FINDING_STATES)
        check = rng.choice([CheckKind.WEBSITE, CheckKind.NPI, CheckKind.EXCLUSION, CheckKind.LICENCE_EXPIRY])
        opened = now - timedelta(days=rng.randint(0, 365), minutes=rng.randint(0, 1440))
        rows.append({
            "id": fid, "provider_id": rng.randint(1, scale.providers), "check": check, "subject_key": f"{check.value}:{fid}",
            "severity": rng.choices(list(FindingSeverity), [30, 55, 15])[0], "state": state,
            "title": f"{check.label} problem", "detail": {}, "last_check_run_id": rng.randint(1, scale.check_runs),
            "opened_at": opened, "updated_at": opened,
            "closed_at": opened + timedelta(days=3) if state in (FindingState.RESOLVED, FindingState.DISMISSED) else None,
            "closed_by": None, "close_reason": None, "row_version": 1,
        })
    bulk_insert(Finding.__table__, rows)
    db.session.commit()
    part("findings", started, len(rows))

    started = time.perf_counter()
    count = build_exclusions(scale.exclusions, people, principals, locations, rng)
    part("exclusions", started, count)

    started = time.perf_counter()
    build_chain(scale.audit_events, scale.providers, staff_ids, rng)
    part("audit events", started, scale.audit_events)
    fix_sequences()
    db.session.commit()
    return timings


def build_exclusions(target: int, people: list, principals: list[dict], locations: list[dict],
                     rng: random.Random) -> int:
    """The real LEIE rows, then recombined real names and places up to `target` rows; a few principals are
    made to match, by name and state, so that screening has something to find."""
    source = ExclusionSource(list_name="oig_leie", file_name="bench-leie.csv", file_date=utcnow().date(),
                             sha256="bench" + "0" * 59, row_count=target, imported_by="system:bench")
    db.session.add(source)
    db.session.flush()
    rows = []
    persons = [r for r in people if r.first_name and r.last_name and r.kind == ExclusionRecordKind.EXCLUSION]
    for n in range(target):
        real = people[n % len(people)]
        first, last, business = real.first_name, real.last_name, real.business_name
        if n >= len(people):
            other = rng.choice(persons)
            first, last = (other.first_name, real.last_name) if real.last_name else (first, last)
            business = f"{business} {n // len(people)}" if business else None
        name_key = names.business_key(business) if business else names.person_key(first, last)
        rows.append({
            "id": n + 1, "source_id": source.id, "list_name": "oig_leie", "kind": real.kind,
            "row_key": f"bench-{n}", "identity": f"bench-{n}", "business_name": business, "last_name": last, "first_name": first,
            "middle_name": real.middle_name, "name_key": name_key,
            "npi": real.npi if n < len(people) else None, "state": real.state, "city": real.city,
            "exclusion_type": real.exclusion_type, "excluded_on": real.excluded_on, "reinstated_on": real.reinstated_on,
            "raw": real.raw,
        })
    state_of = {loc["provider_id"]: loc["state"] for loc in locations}
    for n, principal in enumerate(rng.sample(principals, max(1, len(principals) // 2000))):
        first, last = principal["name"].split(" ", 1)
        rows.append({
            "id": target + n + 1, "source_id": source.id, "list_name": "oig_leie", "kind": ExclusionRecordKind.EXCLUSION,
            "row_key": f"bench-match-{n}", "identity": f"bench-match-{n}", "business_name": None, "last_name": last.upper(), "first_name": first.upper(),
            "middle_name": None, "name_key": names.person_key(first, last), "npi": None,
            "state": state_of[principal["provider_id"]], "city": None, "exclusion_type": "1128a1",
            "excluded_on": utcnow().date() - timedelta(days=400), "reinstated_on": None, "raw": {},
        })
    for start in range(0, len(rows), BATCH):
        bulk_insert(ExclusionRecord.__table__, rows[start:start + BATCH])
    db.session.commit()
    return len(rows)


def build_chain(events: int, providers: int, actor_ids: list[int], rng: random.Random) -> None:
    """Append `events` valid events after the current head, hashing exactly as the product does."""
    seq, prev = db.session.execute(select(AuditChainLock.head_seq, AuditChainLock.head_hash)).one()
    start = utcnow() - timedelta(days=730)
    step = timedelta(days=729).total_seconds() / max(events, 1)
    actions, weights = list(AUDIT_ACTIONS), list(AUDIT_ACTIONS.values())
    batch = []
    for n in range(events):
        seq += 1
        action = rng.choices(actions, weights)[0]
        provider_id = rng.randint(1, providers)
        entity_type = action.split(".")[0]
        system = action in ("check_run.recorded", "finding.opened", "provider.imported")
        row = {
            "seq": seq, "occurred_at": start + timedelta(seconds=n * step),
            "actor": "system:recheck" if system else f"user:{rng.choice(actor_ids)}",
            "action": action, "entity_type": entity_type,
            "entity_id": str(provider_id if entity_type == "provider" else rng.randint(1, providers * 20)),
            "provider_id": provider_id, "before": {"status": "pending"}, "after": {"status": "met"},
            "reason": None, "request_id": None, "ip": None,
        }
        fields = {**row, "occurred_at": audit.jsonable(row["occurred_at"])}
        row["prev_hash"], row["hash"] = prev, compute_hash(prev, fields)
        prev = row["hash"]
        batch.append(row)
        if len(batch) == BATCH:
            bulk_insert(AuditEvent.__table__, batch)
            batch = []
    bulk_insert(AuditEvent.__table__, batch)
    db.session.execute(update(AuditChainLock).where(AuditChainLock.id == 1).values(head_seq=seq, head_hash=prev))
    db.session.commit()


def bench_app(**overrides):
    """The app as the benchmarks run it: testing settings on DATABASE_URL, no CSRF or rate limits in the way."""
    from backoffice import create_app

    return create_app("testing", {"WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False, **overrides})


@contextmanager
def scratch_database(name: str, folder: Path) -> Iterator[str]:
    """A new, empty database for one benchmark: a SQLite file in `folder`, or on DATABASE_URL's PostgreSQL
    server a database named after it with `_name` appended, dropped afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql")):
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    server = make_url(normalise_database_url(url))
    scratch = f"{server.database}_{name}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(db.text(f'DROP DATABASE IF EXISTS "{scratch}"'))
        conn.execute(db.text(f'CREATE DATABASE "{scratch}"'))
    try:
        yield server.set(database=scratch).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(db.text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        admin.dispose()


def analyse() -> None:
    """Statistics and a visibility map for the planner, as autovacuum would give a database in use; straight
    after a bulk load PostgreSQL has neither and plans as if every table were small."""
    if db.engine.dialect.name == "postgresql":
        db.session.remove()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(db.text("VACUUM ANALYZE"))


def with_second_factor(account) -> None:
    """Staff pages open only after the second factor: the bench account has an authenticator."""
    if not account.has_second_factor:
        account.totp_secret = mfa.new_secret()
        account.totp_enabled_at = utcnow()
        db.session.commit()


def sign_in(client, email: str = BENCH_EMAIL) -> None:
    """Sign a test client in through the pages, password then second-factor code, as staff do; refuses to go
    on unless the client ends up signed in (the sign-in itself is not part of any figure)."""
    from backoffice.models import Account
    from tests.conftest import login

    account = db.session.scalar(select(Account).where(Account.email == email))
    expect(account is not None, f"there is no account {email} in this database")
    with_second_factor(account)
    response = login(client, account, BENCH_PASSWORD)
    expect(response.status_code == 302 and not response.headers["Location"].startswith("/login"),
           f"signing in as {email} answered {response.status_code} "
           f"{response.headers.get('Location') or response.get_data(as_text=True)[:300]}, not a redirect to a staff page")


def ensure_built(scale: Scale, log=print) -> dict | None:
    """Migrate, and build the dataset unless this database already holds it; returns the build timings."""
    from flask_migrate import upgrade

    upgrade()
    if db.session.scalar(select(Provider.id).limit(1)) is not None:
        have = db.session.scalar(select(db.func.max(Provider.id)))
        if have != scale.providers:
            raise SystemExit(f"this database holds {have} providers, not {scale.providers}: use an empty one")
        return None
    started = time.perf_counter()
    log(f"building {scale.providers:,} providers on {db.engine.dialect.name}")
    timings = build(scale, log)
    analyse()
    timings["total"] = time.perf_counter() - started
    log(f"  built in {timings['total']:.1f} s")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", help="full (100k providers), medium, small, tiny, or a number")
    args = parser.parse_args()
    app = bench_app()
    with app.app_context():
        timings = ensure_built(parse_size(args.size))
        print(json.dumps({"engine": db.engine.dialect.name, "seconds": timings and
                          {k: round(v, 1) for k, v in timings.items()}}))


if __name__ == "__main__":
    main()
