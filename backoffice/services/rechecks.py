"""Scheduled re-checks: claim what is due, run one check for one provider, record the run and its findings.

A re-check of a provider is a *window* (its due time, an import, or a researcher's "re-check now") in
which each network check runs once: the run's idempotency key is check + provider + window, so a task
delivered twice finds its run already recorded and changes nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Callable

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from backoffice.checks import nppes, website
from backoffice.checks.http import GuardedClient, OutboundError, OutboundRefused
from backoffice.checks.result import CheckResult, FindingSpec
from backoffice.models import (
    CheckKind,
    CheckOutcome,
    CheckRun,
    FindingSeverity,
    ListingStatus,
    Location,
    Principal,
    Provider,
    Work,
    WorkKind,
    utcnow,
)
from backoffice.services import audit, exclusion_judgements, findings, provider_status, screening, sources, work

log = logging.getLogger(__name__)

NETWORK_CHECKS = (CheckKind.WEBSITE, CheckKind.NPI, CheckKind.EXCLUSION)
# How a run's summary names the check and the source it asks.
CHECK_NAMES = {CheckKind.WEBSITE: "website", CheckKind.NPI: "NPI", CheckKind.EXCLUSION: "exclusion screening"}
SOURCE_NAMES = {CheckKind.WEBSITE: "The website", CheckKind.NPI: "The NPI Registry",
                CheckKind.EXCLUSION: "The exclusion lists"}
# What each kind of network failure means, in words.
FAILURE_WORDS = {
    "dns": "its address could not be found",
    "connection_refused": "it refused the connection",
    "timeout": "it did not answer in time",
    "tls_certificate": "its HTTPS certificate is not valid",
    "tls": "the HTTPS connection failed",
    "http_status": "it answered with an error",
    "rate_limited": "it was asked too often",
    "network": "the connection failed",
}


def run_key(provider_id: int, check: CheckKind, window: str) -> str:
    return f"{check.value}:{provider_id}:{window}"


def window_for(due_at: datetime | None, now: datetime) -> str:
    return "due-" + (due_at or now).strftime("%Y%m%dT%H%M%S")


def _due(now: datetime):
    return and_(Provider.listing_status == ListingStatus.LISTED,
                or_(Provider.recheck_due_at.is_(None), Provider.recheck_due_at <= now))


def claim_due(session: Session, now: datetime, batch_size: int, lease_seconds: int,
              actor: audit.Actor = "system:recheck-sweep") -> list[tuple[int, str]]:
    """Claim up to batch_size listed providers whose re-check is due: (provider id, window) each.

    The claim moves recheck_due_at forward by a lease, so the next sweep does not enqueue them again;
    if their checks never complete (a lost message), the lease runs out and they are claimed again. Each
    claim is audited: the due date is shown to staff, and a lease that keeps running out is a window that
    never completes.

    The most overdue are chosen first, but their rows are locked in id order (PostgreSQL; SQLite's write lock
    serialises writers anyway), the order every writer of several provider rows takes, so two sweeps cannot
    deadlock. A row another claimer moved on while this one waited for it is no longer due and is left out:
    each due provider is claimed once.
    """
    chosen = session.scalars(
        select(Provider.id).where(_due(now))
        .order_by(Provider.recheck_due_at.is_(None).desc(), Provider.recheck_due_at, Provider.id)
        .limit(batch_size)
    ).all()
    if not chosen:
        return []
    rows = session.execute(
        select(Provider.id, Provider.recheck_due_at).where(Provider.id.in_(chosen), _due(now))
        .order_by(Provider.id).with_for_update()
    ).all()
    if not rows:
        return []
    # A plain UPDATE: scheduling is bookkeeping, not a change of the provider (no row_version bump).
    session.execute(
        update(Provider).where(Provider.id.in_([r.id for r in rows]))
        .values(recheck_due_at=now + timedelta(seconds=lease_seconds)),
        execution_options={"synchronize_session": False},
    )
    lease_until = now + timedelta(seconds=lease_seconds)
    claimed = [(r.id, window_for(r.recheck_due_at, now)) for r in rows]
    for row, (provider_id, window) in zip(rows, claimed, strict=True):
        audit.record(session, actor, "recheck.claimed", "provider", provider_id,
                     before={"recheck_due_at": row.recheck_due_at},
                     after={"recheck_due_at": lease_until, "window": window},
                     reason="due for re-check: its checks are sent; claimed again if they do not complete by then",
                     provider_id=provider_id)
    session.flush()
    return claimed


def listed_provider_ids(session: Session, after_id: int, limit: int) -> list[int]:
    return list(session.scalars(
        select(Provider.id).where(Provider.listing_status == ListingStatus.LISTED, Provider.id > after_id)
        .order_by(Provider.id).limit(limit)
    ))


def already_done(session: Session, key: str) -> bool:
    return session.scalar(select(CheckRun.id).where(CheckRun.idempotency_key == key)) is not None


@dataclass
class ProviderFacts:
    """Everything a check needs, read before any network call so no transaction stays open during one."""

    id: int
    legal_name: str
    public_name: str
    website: str | None
    npi: str | None
    locations: list[dict] = field(default_factory=list)
    principals: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(n for n in (self.public_name, self.legal_name) if n))


# What each check reads of the provider besides its names, NPI and website: the NPI check compares the
# registry's addresses with the locations, the exclusion screening its principals and places too.
NEEDS_PLACES_AND_PRINCIPALS = frozenset({CheckKind.NPI, CheckKind.EXCLUSION})


# Built once: a check reads them once per run, and building a statement costs more than running its cached form.
_FACTS = (select(Provider.id, Provider.legal_name, Provider.public_name, Provider.website, Provider.npi)
          .where(Provider.id.in_(bindparam("provider_ids", expanding=True))))
_PLACES = (select(Location.provider_id, Location.street1, Location.city, Location.state, Location.zip)
           .where(Location.provider_id.in_(bindparam("provider_ids", expanding=True))).order_by(Location.id))
_PRINCIPALS = (select(Principal.provider_id, Principal.name, Principal.npi)
               .where(Principal.provider_id.in_(bindparam("provider_ids", expanding=True))).order_by(Principal.id))


def facts(session: Session, provider_id: int, check: CheckKind | None = None) -> ProviderFacts | None:
    """What a check needs of the provider, read in as few statements as it needs (a website check: one row of
    five columns; the others add the locations and principals)."""
    return facts_many(session, [(provider_id, check)]).get(provider_id)


def facts_many(session: Session, wanted: list[tuple[int, CheckKind | None]]) -> dict[int, ProviderFacts]:
    """`facts` for the providers of several checks, by provider id, in as few statements as one (a provider gone
    is left out): the locations and principals are read only for the providers whose check needs them."""
    if not wanted:
        return {}
    ids = sorted({provider_id for provider_id, _ in wanted})
    found = {row.id: ProviderFacts(id=row.id, legal_name=row.legal_name, public_name=row.public_name,
                                   website=row.website, npi=row.npi)
             for row in session.execute(_FACTS, {"provider_ids": ids})}
    fuller = sorted({provider_id for provider_id, check in wanted
                     if provider_id in found and (check is None or check in NEEDS_PLACES_AND_PRINCIPALS)})
    if fuller:
        for provider_id, street1, city, state, zip_code in session.execute(_PLACES, {"provider_ids": fuller}):
            found[provider_id].locations.append({"street1": street1, "city": city, "state": state, "zip": zip_code})
        for provider_id, name, npi in session.execute(_PRINCIPALS, {"provider_ids": fuller}):
            found[provider_id].principals.append((name, npi))
    return found


def screening_subject(subject: ProviderFacts) -> screening.Subject:
    """Who and where exclusion screening looks for: the provider's names and principals, its states, cities and
    street addresses."""
    return screening.Subject(
        screening.parties(subject.legal_name, subject.public_name, subject.npi, subject.principals),
        {loc["state"] for loc in subject.locations}, {loc["city"] for loc in subject.locations},
        {loc["street1"] for loc in subject.locations if loc["street1"]})


@dataclass
class Sources:
    """The outbound clients a check may use, built by the caller from configuration."""

    http: GuardedClient
    nppes_url: str
    screening: screening.Thresholds = field(default_factory=screening.Thresholds)


def unreachable(check: CheckKind, exc: OutboundError | OutboundRefused, retries: int = 0) -> CheckResult:
    """An error run for a source that could not be asked: which source, why in words, and the detail.

    A source we depend on being down says nothing about the provider, so the run is inconclusive and
    raises no finding.
    """
    source = SOURCE_NAMES.get(check, f"The {check.label} source")
    if isinstance(exc, OutboundRefused):
        reason = f"{source} was not asked: the outbound guard refused the request ({exc})"
        evidence: dict[str, object] = {"error": "refused", "detail": str(exc)}
    else:
        words = FAILURE_WORDS.get(exc.kind, "the request failed")
        reason = f"{source} could not be reached, {words}: {exc.detail}"
        evidence = {"error": exc.kind, "detail": exc.detail, "transient": exc.transient}
    summary = f"Could not complete after {retries} retries: {reason}" if retries else reason
    return CheckResult.error(summary, {**evidence, "reason": reason, "retries": retries})


def failed_unexpectedly(check: CheckKind, exc: BaseException) -> CheckResult:
    """An error run for an exception no check foresaw; the task logs its traceback."""
    name = CHECK_NAMES.get(check, check.label)
    reason = f"{exc.__class__.__name__}: {exc}"
    return CheckResult.error(f"The {name} check failed unexpectedly: {reason}",
                             {"error": "unexpected", "exception": exc.__class__.__name__, "reason": reason})


def perform(session: Session, check: CheckKind, subject: ProviderFacts, sources: Sources, today: date) -> CheckResult:
    """Run one check. Transient network errors (OutboundError with .transient) propagate for a retry; a
    source that cannot be asked for any other reason gives an error run."""
    if check == CheckKind.WEBSITE:
        return website.check(sources.http, subject.website, subject.names)
    if check == CheckKind.NPI:
        if not subject.npi:
            return CheckResult(CheckOutcome.WARN, "No NPI on file", {},
                               [FindingSpec("npi:missing", FindingSeverity.INFO, "No organisation NPI on file")])
        try:
            answer = nppes.NppesClient(sources.http, sources.nppes_url).lookup(subject.npi)
        except nppes.NppesFormatError as exc:
            reason = f"NPPES answer not understood: {exc}"
            return CheckResult.error(reason, {"error": "format", "reason": reason})
        except OutboundRefused as exc:
            return unreachable(check, exc)
        except OutboundError as exc:
            if exc.transient:
                raise
            return unreachable(check, exc)
        return nppes.compare(nppes.ProviderFacts(subject.npi, subject.names, subject.locations), answer)
    if check == CheckKind.EXCLUSION:
        return screening.screen_many(session, [screening_subject(subject)], today, sources.screening)[0]
    raise ValueError(f"{check} is not a network re-check")


@dataclass
class Outcome:
    """One check's result on its way to the database: which run it is, what it found, when it started."""

    provider_id: int
    check: CheckKind
    key: str
    result: CheckResult
    started_at: datetime


def record(session: Session, actor: audit.Actor, provider_id: int, check: CheckKind, key: str,
           result: CheckResult, started_at: datetime, *, auto_suspend: bool, cadence_days: int,
           freshness: sources.Freshness = sources.DEFAULT_FRESHNESS) -> CheckRun:
    """Write one run, its findings and what follows from them (`record_many` of one); the caller commits once."""
    return record_many(session, actor, [Outcome(provider_id, check, key, result, started_at)],
                       auto_suspend=auto_suspend, cadence_days=cadence_days, freshness=freshness)[0]


def record_many(session: Session, actor: audit.Actor | Callable[[CheckKind], audit.Actor], outcomes: list[Outcome],
                *, auto_suspend: bool, cadence_days: int,
                freshness: sources.Freshness = sources.DEFAULT_FRESHNESS) -> list[CheckRun]:
    """Write the runs, open/update/clear their findings, apply auto-suspension, complete the windows whose last
    check this was; the caller commits once. A batch costs about as many statements as one run: the locks,
    the runs, the open findings and the windows are each one statement for all of them.

    `actor` may be a function of the check (the worker records several kinds in one batch).

    A second writer of the same key fails on the unique idempotency key when flushing: the caller
    rolls back and treats the check as done (for a batch: records its runs one by one to find which).

    The providers' rows are locked first, in id order (PostgreSQL; SQLite's write lock does the same), so the
    checks of one window that finish at the same moment record one after the other: the last of them then
    sees every run of the window and moves the provider's next due date. Without the lock each counted only
    the runs committed before it started, and a window whose last two checks finished together never completed.

    A clean result against a source older than its freshness is recorded as "source stale" (services/sources.py).
    """
    actor_of = actor if callable(actor) else (lambda _check, fixed=actor: fixed)
    provider_ids = sorted({o.provider_id for o in outcomes})
    session.execute(select(Provider.id).where(Provider.id.in_(provider_ids)).order_by(Provider.id)
                    .with_for_update())
    finished = utcnow()
    judged = sources.judge_many(session, [(o.check, o.result) for o in outcomes], finished, freshness)
    outcomes = [replace(o, result=result) for o, result in zip(outcomes, judged, strict=True)]
    runs = [CheckRun(provider_id=o.provider_id, check=o.check, outcome=o.result.outcome,
                     summary=o.result.summary[:500], evidence=audit.jsonable(o.result.evidence),
                     source_version=o.result.source_version, idempotency_key=o.key, started_at=o.started_at,
                     finished_at=finished, duration_ms=int((finished - o.started_at).total_seconds() * 1000))
            for o in outcomes]
    session.add_all(runs)
    session.flush()
    sources.recorded_many(session, [(actor_of(o.check), run, o.result) for o, run in zip(outcomes, runs, strict=True)],
                          freshness)

    def provider_of(provider_id: int) -> Provider:
        return session.get_one(Provider, provider_id)

    found = []
    for o, run in zip(outcomes, runs, strict=True):
        specs = o.result.findings
        if o.check == CheckKind.EXCLUSION and specs:
            # A researcher's dismissal or confirmation of a record that has not changed since is not asked again.
            specs = exclusion_judgements.weigh(session, o.provider_id, specs,
                                               findings.open_subject_keys(session, o.provider_id, o.check))
        found.append(findings.RunFindings(o.provider_id, o.check, run.id, specs, clears=not o.result.inconclusive,
                                          clear_reason=f"check run {run.id}: {o.check.label} no longer finds this"))
    # One batch may hold runs of several actors (check kinds): each group's findings are its actor's.
    for check in dict.fromkeys(o.check for o in outcomes):
        findings.apply_runs(session, actor_of(check), [f for f in found if f.check == check], provider_of)
    for o, run_found in zip(outcomes, found, strict=True):
        if auto_suspend and run_found.new_critical:
            first = run_found.new_critical[0]
            provider_status.suspend_listing(session, actor_of(o.check), provider_of(o.provider_id),
                                            f"critical finding #{first.id}: {first.title}", automatic=True)
    _complete_window(session, actor_of, outcomes, finished, cadence_days)
    session.flush()
    return runs


def _complete_window(session: Session, actor_of: Callable[[CheckKind], audit.Actor], outcomes: list[Outcome],
                     now: datetime, cadence_days: int) -> None:
    """When every network check of a window has run, the provider is due again after the cadence. The
    completion is audited: last_rechecked_at is published in the feed and the receipt. One read of the runs
    recorded for every window of the batch."""
    windows = {(o.provider_id, o.key.split(":", 2)[2]): o.check for o in outcomes}
    keys = {window: [run_key(window[0], check, window[1]) for check in NETWORK_CHECKS] for window in windows}
    recorded = dict(session.execute(select(CheckRun.idempotency_key, CheckRun.outcome).where(
        CheckRun.idempotency_key.in_([key for window_keys in keys.values() for key in window_keys]))).all())
    for (provider_id, window), window_keys in keys.items():
        if not all(key in recorded for key in window_keys):
            continue
        before = session.execute(select(Provider.last_rechecked_at, Provider.recheck_due_at)
                                 .where(Provider.id == provider_id)).one()
        due = now + timedelta(days=cadence_days)
        session.execute(
            update(Provider).where(Provider.id == provider_id)
            .values(last_rechecked_at=now, recheck_due_at=due),
            execution_options={"synchronize_session": False},
        )
        audit.record(session, actor_of(windows[(provider_id, window)]), "recheck.completed", "provider", provider_id,
                     before={"last_rechecked_at": before.last_rechecked_at, "recheck_due_at": before.recheck_due_at},
                     after={"last_rechecked_at": now, "recheck_due_at": due, "window": window,
                            "outcomes": {check.value: recorded[key].value
                                         for check, key in zip(NETWORK_CHECKS, window_keys, strict=True)}},
                     provider_id=provider_id)


def unrecorded(session: Session, provider_ids: list[int], check: CheckKind, window: str) -> list[int]:
    """The providers whose run of this check in this window is not recorded yet, in the order given."""
    keys = {run_key(provider_id, check, window): provider_id for provider_id in provider_ids}
    done = set(session.scalars(select(CheckRun.idempotency_key).where(CheckRun.idempotency_key.in_(list(keys)))))
    return [provider_id for key, provider_id in keys.items() if key not in done]


def screening_batch_spec(provider_ids: list[int], window: str) -> work.Spec:
    """The exclusion screening of a batch of providers in one window, as one piece of work. Its key names the
    batch's first and last id, so a sweep run again over the same providers asks for the same work."""
    span = f"{provider_ids[0]}-{provider_ids[-1]}"
    return work.Spec(WorkKind.SCREENING_BATCH, "provider_batch", span, f"screening-batch:{window}:{span}",
                     {"window": window, "provider_ids": provider_ids})


def request_screening(session: Session, actor: audit.Actor, provider_ids: list[int], window: str,
                      policy: work.Policy) -> Work | None:
    """Ask for the exclusion screening of a batch of providers in one window (one piece of work, sent after the
    caller commits); the providers whose run is recorded already are left out, and nothing is asked when none is
    left. The key is the whole batch's, so asking again while it is open gives nothing new."""
    if not provider_ids:
        return None
    todo = unrecorded(session, provider_ids, CheckKind.EXCLUSION, window)
    if not todo:
        return None
    spec = screening_batch_spec(provider_ids, window)
    rows = work.request_many(session, actor, [replace(spec, params={**(spec.params or {}), "provider_ids": todo})],
                             policy)
    return rows[0] if rows else None


def screen_batch(session: Session, provider_ids: list[int], window: str, thresholds: screening.Thresholds,
                 today: date, started_at: datetime,
                 passes_through: tuple[type[BaseException], ...] = ()) -> list[Outcome]:
    """The exclusion screening of the providers whose run in this window is not recorded yet, in one pass
    (screening.screen_many): one Outcome each, keyed as the one-provider check's run is; providers gone are left
    out. An error of the screening itself is each provider's error run, as for one provider's check; but not a
    database error or one of `passes_through` (the task's time limit): those say nothing of the providers, and
    recording 500 error runs for them would leave the batch screened for its window, so they reach the work row's
    lease and the reconciler instead."""
    todo = unrecorded(session, provider_ids, CheckKind.EXCLUSION, window)
    found = facts_many(session, [(provider_id, CheckKind.EXCLUSION) for provider_id in todo])
    subjects = [found[provider_id] for provider_id in todo if provider_id in found]
    try:
        results = screening.screen_many(session, [screening_subject(s) for s in subjects], today, thresholds)
    except Exception as exc:  # noqa: BLE001 - whatever else the screening does, each provider's run is recorded
        if isinstance(exc, (SQLAlchemyError, *passes_through)):
            raise
        log.exception("the exclusion screening of %s providers failed unexpectedly; recording error runs",
                      len(subjects))
        results = [failed_unexpectedly(CheckKind.EXCLUSION, exc) for _ in subjects]
    return [Outcome(s.id, CheckKind.EXCLUSION, run_key(s.id, CheckKind.EXCLUSION, window), result, started_at)
            for s, result in zip(subjects, results, strict=True)]


def request_now(session: Session, actor: audit.Actor, provider: Provider, policy: work.Policy) -> list[Work]:
    """A researcher asks for an immediate re-check: one piece of work per network check, recorded with the
    audit event in the caller's transaction (and sent after its commit)."""
    window = "manual-" + utcnow().strftime("%Y%m%dT%H%M%S%f")
    audit.record(session, actor, "recheck.requested", "provider", provider.id,
                 after={"window": window, "checks": [c.value for c in NETWORK_CHECKS]}, provider_id=provider.id)
    rows = work.request_many(session, actor, [work.check_spec(WorkKind.RECHECK_NOW, provider.id, check, window)
                                              for check in NETWORK_CHECKS], policy)
    session.flush()
    return rows


def latest_runs(session: Session, provider_id: int) -> dict[CheckKind, CheckRun]:
    """The most recent run of each check for one provider (for the case page and the findings page)."""
    latest: dict[CheckKind, CheckRun] = {}
    for check in CheckKind:
        run = session.scalar(
            select(CheckRun).where(CheckRun.provider_id == provider_id, CheckRun.check == check)
            .order_by(CheckRun.started_at.desc(), CheckRun.id.desc()).limit(1)
        )
        if run is not None:
            latest[check] = run
    return latest
