"""The impact of a criteria catalogue draft on the providers listed now: who would no longer meet a required
criterion (by the assessments of the decision in force and the data on file), which required criteria are new
for whom, how many re-reviews it would open; kept with the version when it is published, and the re-reviews
scheduled from it (asked for with the publication, opened after it commits by work, in batches).

Every rule is one set-based query per criterion of the draft over all listed providers (a dozen or so queries
whatever their number), never a query per provider.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, exists, insert, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from backoffice import zones
from backoffice.models import (
    OPEN_STATES,
    Account,
    Accreditation,
    Assessment,
    AssessmentStatus,
    CatalogueImpact,
    CatalogueImpactProvider,
    CheckKind,
    CriteriaCatalogue,
    Criterion,
    Decision,
    Licence,
    ListingStatus,
    Provider,
    ProviderCode,
    Reverification,
    ReverificationCause,
    Submission,
    SubmissionState,
    VerificationStatus,
    Work,
    WorkKind,
)
from backoffice.services import audit, criteria, listing_requests, reverification, review, work
from backoffice.services.errors import DomainError

CHUNK = 5000
# Re-reviews opened per transaction by the work a publication asks for.
REREVIEW_BATCH = 200
# The deadline a research lead may give the re-reviews: from tomorrow up to this many days ahead.
DEADLINE_MAX_DAYS = 365
# Criteria whose automated check reads a credential on file: with none current, the criterion cannot be met.
CREDENTIAL_ON_FILE: dict[str, tuple[type[Licence] | type[Accreditation], str]] = {CheckKind.LICENCE_EXPIRY.value: (Licence, "no current licence on file"),
                      CheckKind.ACCREDITATION_EXPIRY.value: (Accreditation, "no current accreditation on file")}


@dataclass
class ProviderImpact:
    provider_id: int
    provider_name: str
    failing: list[dict] = field(default_factory=list)  # [{"code", "why"}]
    new: list[str] = field(default_factory=list)


@dataclass
class Report:
    listed: int
    rows: list[ProviderImpact]
    rereviews: int
    titles: dict[str, str]  # the draft's criteria in words, by code

    @property
    def failing(self) -> int:
        return sum(1 for row in self.rows if row.failing)

    @property
    def new(self) -> int:
        return sum(1 for row in self.rows if row.new)


def _listed(now: datetime):
    return and_(Provider.verification_status == VerificationStatus.VERIFIED,
                Provider.listing_status == ListingStatus.LISTED, Provider.verified_until >= now)


def _applies(criterion: Criterion):
    """The criterion applies to the provider by its levels of care, read from the provider_code index."""
    if not criterion.applies_to_levels:
        return None
    return exists().where(ProviderCode.provider_id == Provider.id, ProviderCode.kind == "level_of_care",
                          ProviderCode.code.in_(list(criterion.applies_to_levels)))


def _in_force(code: str, statuses: Sequence[AssessmentStatus]):
    """A confirmed assessment of this criterion, in one of these statuses, by the decision in force."""
    assessed = aliased(Criterion)
    return (exists().where(Decision.id == Provider.verified_decision_id,
                           Assessment.submission_id == Decision.submission_id,
                           Assessment.criterion_id == assessed.id, assessed.code == code,
                           Assessment.status.in_(list(statuses)), Assessment.assessed_at.is_not(None)))


def _ids(session: Session, *conditions) -> list[int]:
    return list(session.scalars(select(Provider.id).where(*[c for c in conditions if c is not None])))


def _stale(session: Session, criterion: Criterion, now: datetime, base) -> list[tuple[int, datetime]]:
    """Listed providers whose met assessment in force has evidence older than the draft's freshness limit. The
    evidence of a plain assessment is as old as its assessment; one from a check result (check_run_id, which
    comes with its snapshot) or carried over may be older, so those are dated from their rows, loaded in chunks."""
    assert criterion.freshness_days is not None
    cutoff = now - timedelta(days=criterion.freshness_days)
    assessed = aliased(Criterion)
    rows = session.execute(
        select(Provider.id, Assessment.id, Assessment.assessed_at,
               or_(Assessment.carried_from_id.is_not(None), Assessment.check_run_id.is_not(None)))
        .join(Decision, Decision.id == Provider.verified_decision_id)
        .join(Assessment, Assessment.submission_id == Decision.submission_id)
        .join(assessed, and_(assessed.id == Assessment.criterion_id, assessed.code == criterion.code))
        .where(*base, Assessment.status == AssessmentStatus.MET, Assessment.assessed_at.is_not(None),
               or_(Assessment.assessed_at < cutoff, Assessment.carried_from_id.is_not(None),
                   Assessment.check_run_id.is_not(None)))).all()
    found: list[tuple[int, datetime]] = [(provider_id, at) for provider_id, _, at, derived in rows
                                         if not derived and at is not None]
    derived_ids = {assessment_id: provider_id for provider_id, assessment_id, _, derived in rows if derived}
    ids = list(derived_ids)
    for start in range(0, len(ids), CHUNK):
        for assessment in session.scalars(select(Assessment).where(Assessment.id.in_(ids[start:start + CHUNK]))
                                          .options(selectinload(Assessment.carried_from))):
            moment = review.evidence_date(assessment)
            if moment is not None and moment < cutoff:
                found.append((derived_ids[assessment.id], moment))
    return found


def run(session: Session, draft: Sequence[Criterion], now: datetime) -> Report:
    """The impact report of a draft (criteria not yet published) on the providers in the directory at `now`."""
    base = [_listed(now)]
    listed = len(_ids(session, *base))
    in_force = criteria.current(session)
    was = {c.code: c for c in in_force.criteria} if in_force else {}
    today = now.date()
    failing: dict[int, list[dict]] = {}
    new: dict[int, list[str]] = {}
    for criterion in draft:
        if not criterion.required or criterion.advertisers_only:
            continue
        code, applies = criterion.code, _applies(criterion)
        scope = [*base, applies]
        for provider_id in _ids(session, *scope, ~_in_force(code, [AssessmentStatus.MET, AssessmentStatus.NOT_MET, AssessmentStatus.NOT_APPLICABLE])):
            new.setdefault(provider_id, []).append(code)
        for provider_id in _ids(session, *scope, _in_force(code, [AssessmentStatus.NOT_MET])):
            failing.setdefault(provider_id, []).append(
                {"code": code, "why": "assessed not met in the decision in force"})
        before = was.get(code)
        tightened = criterion.freshness_days is not None and (
            before is None or before.freshness_days is None or criterion.freshness_days < before.freshness_days)
        if tightened:
            for provider_id, moment in _stale(session, criterion, now, [c for c in scope if c is not None]):
                failing.setdefault(provider_id, []).append(
                    {"code": code, "why": f"evidence from {zones.day_text(moment.date())} is older than the new "
                                          f"{criterion.freshness_days}-day limit"})
        on_file = CREDENTIAL_ON_FILE.get(criterion.automated_check or "")
        newly_required = before is None or not before.required or before.advertisers_only
        if on_file is not None and newly_required:
            # Only where the draft makes it required: a criterion required already was found met by the decision
            # in force on its evidence, which the credentials we happen to hold on file do not overrule.
            model, why = on_file
            current = exists().where(model.provider_id == Provider.id,
                                     or_(model.expires_on.is_(None), model.expires_on >= today))
            for provider_id in _ids(session, *scope, ~current, ~_in_force(code, [AssessmentStatus.MET])):
                failing.setdefault(provider_id, []).append({"code": code, "why": why})
    affected = sorted(set(failing) | set(new))
    names: dict[int, str] = {}
    busy: set[int] = set()
    for start in range(0, len(affected), CHUNK):
        chunk = affected[start:start + CHUNK]
        names.update(session.execute(select(Provider.id, Provider.public_name).where(Provider.id.in_(chunk))).all())
        busy.update(session.scalars(select(Submission.provider_id).where(
            Submission.provider_id.in_(chunk), Submission.kind.in_(listing_requests.LISTING_KINDS),
            Submission.state.in_(OPEN_STATES | {SubmissionState.DRAFT}))))
    rows = [ProviderImpact(provider_id, names.get(provider_id, ""), failing.get(provider_id, []),
                           new.get(provider_id, [])) for provider_id in affected]
    rows.sort(key=lambda row: (row.provider_name.lower(), row.provider_id))
    return Report(listed=listed, rows=rows, rereviews=len(set(affected) - busy),
                  titles={c.code: c.title for c in draft})


def keep(session: Session, actor: audit.Actor, catalogue: CriteriaCatalogue, compared_with: CriteriaCatalogue | None,
         report: Report) -> CatalogueImpact:
    """Keep the report with the version just published from the same draft; audited with the version."""
    kept = CatalogueImpact(catalogue_id=catalogue.id, compared_with_id=compared_with.id if compared_with else None,
                           run_by=audit.actor_label(actor), listed_providers=report.listed,
                           affected_providers=len(report.rows), rereviews=report.rereviews)
    session.add(kept)
    session.flush()
    if report.rows:  # one multi-row insert, not an object per provider
        session.execute(insert(CatalogueImpactProvider), [
            {"catalogue_id": catalogue.id, "provider_id": row.provider_id, "provider_name": row.provider_name[:300],
             "failing": row.failing, "new": row.new} for row in report.rows])
    audit.record(session, actor, "criteria.impact_kept", "criteria_catalogue", catalogue.id,
                 after={"version": catalogue.version, "listed_providers": report.listed,
                        "affected_providers": len(report.rows), "would_no_longer_meet": report.failing,
                        "new_criteria_for": report.new, "rereviews": report.rereviews,
                        "compared_with": compared_with.version if compared_with else None})
    return kept


def deadline_from(day: date | None, today: date) -> datetime:
    """The re-reviews' deadline: the end of the chosen day (UTC), from tomorrow up to DEADLINE_MAX_DAYS ahead."""
    if day is None:
        raise DomainError("Give the day by which the providers must answer.", field="rereview_deadline")
    if day <= today:
        raise DomainError(f"The deadline must be after today; {zones.day_text(day)} is not.", field="rereview_deadline")
    if day > today + timedelta(days=DEADLINE_MAX_DAYS):
        raise DomainError(f"The deadline can be at most {DEADLINE_MAX_DAYS} days ahead; {zones.day_text(day)} is further.",
                          field="rereview_deadline")
    return datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc)


def reason_for(catalogue: CriteriaCatalogue, row: CatalogueImpactProvider, titles: dict[str, str]) -> str:
    """Why this provider is asked to re-verify, in words: what it would no longer meet, what is new for it."""
    parts = [f"The listing criteria changed: version {catalogue.version} is now in force."]
    if row.failing:
        parts.append("Your listing would no longer meet: " + "; ".join(
            f"{item['code']} ({titles.get(item['code'], item['code'])}): {item['why']}" for item in row.failing) + ".")
    if row.new:
        parts.append("New for you: " + "; ".join(f"{code} ({titles.get(code, code)})" for code in row.new) + ".")
    return " ".join(parts)


def rereviews_key(catalogue_id: int) -> str:
    return f"rereviews:catalogue:{catalogue_id}"


def rereviews_spec(catalogue_id: int, actor: audit.Actor) -> work.Spec:
    """The work a publication asks for to open its re-reviews: one per version, however often asked; the re-reviews
    are opened in the name of who asked."""
    return work.Spec(WorkKind.REREVIEWS, "criteria_catalogue", catalogue_id, rereviews_key(catalogue_id),
                     {"by": audit.actor_label(actor)})


def schedule(session: Session, actor: audit.Actor, catalogue: CriteriaCatalogue, respond_by: datetime,
             policy: work.Policy) -> Work | None:
    """Ask for the re-reviews of the providers the kept report names, to be answered by `respond_by`: recorded
    (audited) with the publication, opened after it commits by the work it queues (open_rereviews, in batches),
    so that publishing does not wait for tens of thousands of them. Returns the work row."""
    kept = session.get(CatalogueImpact, catalogue.id)
    if kept is None:
        raise DomainError(f"v{catalogue.version} has no impact report to schedule re-reviews from.")
    before = {"scheduled": kept.scheduled, "respond_by": kept.respond_by}
    kept.scheduled = kept.scheduled or 0
    kept.respond_by = respond_by
    audit.record(session, actor, "criteria.rereviews_scheduled", "criteria_catalogue", catalogue.id,
                 before=before, after={"scheduled": kept.scheduled, "respond_by": respond_by,
                                       "to_open": kept.rereviews})
    session.flush()
    return work.request(session, actor, rereviews_spec(catalogue.id, actor), policy)


def opening(session: Session, catalogue_id: int) -> Work | None:
    """The work opening this version's re-reviews while it is open or once it failed; None when it is done (or
    was never asked for). Read from the work table's partial indexes on those states, never from its done rows."""
    key = rereviews_key(catalogue_id)
    return (session.scalar(select(Work).where(Work.idempotency_key == key, work.OPEN))
            or session.scalar(select(Work).where(work.FAILED, Work.idempotency_key == key)
                              .order_by(Work.updated_at.desc()).limit(1)))


def _actor(session: Session, label: str) -> audit.Actor:
    """Who asked for the work, as it was recorded: an account, or a system job by its label."""
    if label.startswith("user:"):
        account = session.get(Account, int(label.removeprefix("user:")))
        if account is not None:
            return account
        raise DomainError(f"the account that asked for the re-reviews ({label}) no longer exists")
    return label


def open_rereviews(session: Session, catalogue_id: int, by: str, after_provider_id: int, now: datetime,
                   limit: int = REREVIEW_BATCH) -> int | None:
    """Open one batch of a version's re-reviews: for the next `limit` providers the kept report names after
    `after_provider_id`, one re-review (a re-verification request) each, told why, for those still verified
    and listed; a provider that already has one for this version, or another listing request open, gets none,
    so running it again opens nothing twice. Each opening is audited, as is the count kept with the report.
    Returns the last provider looked at, or None when none is left. The caller commits each batch."""
    # Held until the batch commits: another run of the same work waits here, then finds what this one opened.
    kept = session.scalar(select(CatalogueImpact).where(CatalogueImpact.catalogue_id == catalogue_id)
                          .with_for_update().execution_options(populate_existing=True))
    catalogue = session.get(CriteriaCatalogue, catalogue_id)
    if kept is None or catalogue is None or kept.respond_by is None:
        return None
    rows = session.scalars(select(CatalogueImpactProvider)
                           .where(CatalogueImpactProvider.catalogue_id == catalogue_id,
                                  CatalogueImpactProvider.provider_id > after_provider_id)
                           .order_by(CatalogueImpactProvider.provider_id).limit(limit)).all()
    if not rows:
        return None
    ids = [row.provider_id for row in rows]
    done = set(session.scalars(select(Reverification.provider_id).where(
        Reverification.catalogue_id == catalogue_id, Reverification.provider_id.in_(ids))))
    providers = {p.id: p for p in session.scalars(select(Provider).where(Provider.id.in_(ids)))}
    titles = {c.code: c.title for c in catalogue.criteria}
    actor, opened = _actor(session, by), 0
    for row in rows:
        provider = providers.get(row.provider_id)
        if row.provider_id in done or provider is None or not _listed_now(provider, now):
            continue
        opened += reverification.open_for(session, actor, provider, reason=reason_for(catalogue, row, titles),
                                          respond_by=kept.respond_by, cause=ReverificationCause.CRITERIA,
                                          catalogue_id=catalogue_id, now=now) is not None
    if opened:
        before = kept.scheduled
        kept.scheduled = (kept.scheduled or 0) + opened
        audit.record(session, actor, "criteria.rereviews_opened", "criteria_catalogue", catalogue_id,
                     before={"scheduled": before}, after={"scheduled": kept.scheduled, "opened_now": opened})
    session.flush()
    return ids[-1]


def _listed_now(provider: Provider, now: datetime) -> bool:
    return (provider.verification_status == VerificationStatus.VERIFIED
            and provider.listing_status == ListingStatus.LISTED
            and provider.verified_until is not None and provider.verified_until >= now)
