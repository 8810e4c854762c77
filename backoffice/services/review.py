"""The research review: claim, assess against the criteria, ask, decide, sign off, revoke.

Every function takes the acting account, refuses what the rules forbid with a DomainError (and then
changes nothing), audits what it changes and flushes; the caller commits once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice.models import (
    OPEN_FINDING_STATES,
    OPEN_STATES,
    RESEARCH_ROLES,
    Account,
    Assessment,
    AssessmentStatus,
    CheckOutcome,
    CheckRun,
    CriteriaCatalogue,
    Criterion,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    Document,
    Finding,
    FindingSeverity,
    ListingStatus,
    MessageKind,
    OrganisationMember,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionMessage,
    SubmissionState,
    VerificationAction,
    VerificationActionKind,
    VerificationActionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import (
    advertising_copy,
    audit,
    audit_publish,
    concurrency,
    criteria,
    guards,
    outbox,
    profile,
    provider_status,
    rechecks,
    sla,
    sources,
    staff_notices,
    submissions,
    work,
)
from backoffice.services.errors import Conflict, DomainError, InvalidTransition, NotAllowed
from backoffice.services.reasons import require_reason

S = SubmissionState
NEEDS_SECOND_SIGNOFF = frozenset({SubmissionKind.ADVERTISER_APPLICATION, SubmissionKind.REINSTATEMENT})
# Requests about a provider already listed: their review starts from the assessments of the decision in force.
CARRIES_OVER = frozenset({SubmissionKind.ADVERTISER_APPLICATION, SubmissionKind.UPDATE,
                          SubmissionKind.REVERIFICATION})
# Requests that change a listed provider's listing and renew its verification when approved.
CHANGES_LISTING = frozenset({SubmissionKind.UPDATE, SubmissionKind.REVERIFICATION})


@dataclass(frozen=True)
class ReviewPolicy:
    first_response_business_days: int = 2
    decision_business_days: int = 10
    verification_validity_days: int = 365
    # The public criteria page a decision e-mail links to (absolute when PUBLIC_BASE_URL is set).
    criteria_url: str = criteria.PAGE_PATH
    # How the work a decision asks for (the signed checkpoint after a grant) is sent and retried.
    work_policy: work.Policy = field(default_factory=work.Policy)

    @classmethod
    def from_config(cls, config) -> ReviewPolicy:
        return cls(config["SLA_FIRST_RESPONSE_BUSINESS_DAYS"], config["SLA_DECISION_BUSINESS_DAYS"],
                   config["VERIFICATION_VALIDITY_DAYS"], criteria.page_url(config.get("PUBLIC_BASE_URL")),
                   work.Policy.from_config(config))


@dataclass(frozen=True)
class Evidence:
    note: str | None = None
    source: str | None = None
    url: str | None = None
    document_id: int | None = None
    check_run_id: int | None = None

    def is_empty(self) -> bool:
        return not any((self.note, self.source, self.url, self.document_id, self.check_run_id))


# -- guards ---------------------------------------------------------------------------------------


def _require_state(submission: Submission, *states: SubmissionState) -> None:
    if submission.state not in states:
        allowed = " or ".join(s.label for s in states)
        raise InvalidTransition(f"This request is {submission.state.label}; that needs it to be {allowed}.")


def pending_decision(submission: Submission) -> Decision | None:
    return next((d for d in submission.decisions if d.status == DecisionStatus.AWAITING_SIGNOFF), None)


def final_decision(submission: Submission) -> Decision | None:
    return next((d for d in submission.decisions if d.status == DecisionStatus.FINAL), None)


def _require_no_pending_decision(submission: Submission) -> None:
    if pending_decision(submission) is not None:
        raise InvalidTransition("A decision on this request is awaiting its second sign-off; "
                                "sign it off or decline it first.")


def _require_reviewer(actor: Account, submission: Submission) -> None:
    guards.require_researcher(actor)
    if submission.assignee_id != actor.id and not actor.has_role(Role.RESEARCH_LEAD):
        raise NotAllowed("Claim this request first: only its assignee or a research lead can work on it.")


# -- submission and SLA ---------------------------------------------------------------------------


def submit(session: Session, actor: Account, submission: Submission, policy: ReviewPolicy) -> None:
    """The provider sends its request to the research team; the SLA clock starts."""
    submissions.transition(session, actor, submission, S.SUBMITTED)
    now = submission.submitted_at
    assert now is not None  # set by the transition to submitted
    submission.first_response_due = sla.add_business_days(now, policy.first_response_business_days)
    submission.decision_due = sla.add_business_days(now, policy.decision_business_days)
    concurrency.flush(session)
    staff_notices.request_submitted(session, submission)


def open_reinstatement(session: Session, actor: Account, provider: Provider, policy: ReviewPolicy,
                       reason: str) -> Submission:
    """Staff open a new review to reinstate a revoked, expired or suspended provider."""
    guards.require_researcher(actor)
    reason = require_reason(reason, "Give the reason for the reinstatement.")
    if provider.is_in_directory(utcnow()):
        raise InvalidTransition("This provider is verified and listed; there is nothing to reinstate.")
    open_ = session.scalar(select(Submission.id).where(
        Submission.provider_id == provider.id, Submission.kind == SubmissionKind.REINSTATEMENT,
        Submission.state.in_(OPEN_STATES)))
    if open_:
        raise InvalidTransition(f"Reinstatement request #{open_} is already open for this provider.")
    submission = submissions.create_draft(session, actor, provider, SubmissionKind.REINSTATEMENT,
                                          profile.current(provider))
    submit(session, actor, submission, policy)
    audit.record(session, actor, "reinstatement.opened", "submission", submission.id, reason=reason,
                 provider_id=provider.id)
    return submission


# -- queue work -----------------------------------------------------------------------------------


def claim(session: Session, actor: Account, submission: Submission, expected_version: int | None) -> None:
    """Take a request: it becomes the actor's, and a submitted one goes into review."""
    guards.require_researcher(actor)
    _require_state(submission, S.SUBMITTED, S.IN_REVIEW, S.NEEDS_INFO)
    if submission.assignee_id not in (None, actor.id) and not actor.has_role(Role.RESEARCH_LEAD):
        raise Conflict("Another researcher has already claimed this request.")
    concurrency.lock(session, submission, expected_version)
    _set_assignee(session, actor, submission, actor)
    if submission.state == S.SUBMITTED:
        _start_review(session, actor, submission)


def assign(session: Session, actor: Account, submission: Submission, assignee: Account,
           expected_version: int | None, reason: str | None = None) -> None:
    guards.require_lead(actor)
    if not assignee.is_active or not assignee.has_role(*RESEARCH_ROLES):
        raise DomainError(f"{assignee.email} is not an active researcher.")
    _require_state(submission, S.SUBMITTED, S.IN_REVIEW, S.NEEDS_INFO)
    concurrency.lock(session, submission, expected_version)
    _set_assignee(session, actor, submission, assignee, reason)
    if submission.state == S.SUBMITTED:
        _start_review(session, actor, submission)


def _set_assignee(session: Session, actor: Account, submission: Submission, assignee: Account,
                  reason: str | None = None) -> None:
    if submission.assignee_id == assignee.id:
        return
    before = submission.assignee_id
    submission.assignee_id = assignee.id
    audit.record(session, actor, "submission.assigned", "submission", submission.id,
                 before={"assignee_id": before}, after={"assignee_id": assignee.id}, reason=reason,
                 provider_id=submission.provider_id)


def assign_many(session: Session, actor: Account, submissions: list[Submission], assignee: Account,
                reason: str) -> int:
    """A lead hands several requests to one researcher at once: each assignment audited with the reason, all
    of them or none (a request that cannot be assigned refuses the batch, named, and the caller's unit of
    work rolls back the others). Returns how many changed hands."""
    reason = require_reason(reason)
    if not submissions:
        raise DomainError("Choose at least one request.", field="ids")
    changed = 0
    for submission in sorted(submissions, key=lambda s: s.id):  # one lock order for every batch
        before = submission.assignee_id
        try:
            assign(session, actor, submission, assignee, None, reason)
        except DomainError as refused:
            raise type(refused)(f"Request #{submission.id}: {refused} Nothing was assigned.",
                                field=refused.field) from refused
        changed += before != assignee.id
    return changed


def _start_review(session: Session, actor: Account, submission: Submission) -> None:
    catalogue = criteria.current(session)
    if catalogue is None:
        raise DomainError("No criteria catalogue is published yet; a research lead must publish one first.")
    before = submission.catalogue_id
    submission.catalogue_id = catalogue.id
    submissions.transition(session, actor, submission, S.IN_REVIEW)
    audit.record(session, actor, "submission.catalogue_fixed", "submission", submission.id,
                 before={"catalogue_id": before}, after={"catalogue_id": catalogue.id, "version": catalogue.version},
                 reason="the review works under the criteria published when it starts",
                 provider_id=submission.provider_id)
    if submission.kind in CARRIES_OVER:
        _carry_over(session, actor, submission, catalogue)


EVIDENCE_FIELDS = ("note", "source", "url", "document_id", "check_run_id", "check_snapshot")


def decision_in_force(session: Session, provider: Provider) -> Decision | None:
    return session.get(Decision, provider.verified_decision_id) if provider.verified_decision_id else None


def _carry_over(session: Session, actor: Account, submission: Submission, catalogue: CriteriaCatalogue) -> None:
    """Start the review from the assessments of the listing decision in force: each applicable criterion of the
    new catalogue that decision assessed gets the same status and evidence, marked as carried over and unconfirmed
    (no assessor, no date), so it counts for nothing until a researcher confirms or changes it."""
    decision = decision_in_force(session, submission.provider)
    if decision is None:
        return
    earlier = {a.criterion.code: a for a in decision.submission.assessments
               if a.assessed_at is not None and a.status != AssessmentStatus.PENDING}
    carried = []
    for criterion in catalogue.criteria:
        source = earlier.get(criterion.code)
        if source is None or not applies(criterion, submission):
            continue
        assessment = Assessment(criterion=criterion, status=source.status, carried_from_id=source.id,
                                **{name: getattr(source, name) for name in EVIDENCE_FIELDS})
        submission.assessments.append(assessment)
        carried.append(assessment)
    concurrency.flush(session)
    for assessment in carried:
        audit.record(session, actor, "assessment.carried_over", "assessment", assessment.id,
                     after={"submission_id": submission.id, "criterion_id": assessment.criterion_id,
                            "status": assessment.status.value, "carried_from_id": assessment.carried_from_id,
                            **{name: getattr(assessment, name) for name in EVIDENCE_FIELDS}},
                     reason=f"{assessment.criterion.code} from decision #{decision.id}; to be confirmed or changed",
                     provider_id=submission.provider_id)


# -- criteria and assessments ---------------------------------------------------------------------


def levels_of_care(submission: Submission) -> set[str]:
    proposed = submission.proposed.get("levels_of_care") if submission.proposed else None
    return set(proposed if proposed is not None else submission.provider.levels_of_care or [])


def is_advertiser_review(submission: Submission) -> bool:
    return submission.kind == SubmissionKind.ADVERTISER_APPLICATION


def applies(criterion: Criterion, submission: Submission) -> bool:
    if criterion.advertisers_only and not is_advertiser_review(submission):
        return False
    if criterion.applies_to_levels and not set(criterion.applies_to_levels) & levels_of_care(submission):
        return False
    return True


def is_required(criterion: Criterion, submission: Submission) -> bool:
    return criterion.required or (criterion.required_for_advertisers and is_advertiser_review(submission))


def applicable_criteria(session: Session, submission: Submission) -> list[Criterion]:
    catalogue = submission.catalogue or criteria.current(session)
    if catalogue is None:
        return []
    return [c for c in catalogue.criteria if applies(c, submission)]


def assessments_by_code(submission: Submission) -> dict[str, Assessment]:
    return {a.criterion.code: a for a in submission.assessments}


def _validated_evidence(session: Session, submission: Submission, evidence: Evidence) -> dict:
    if evidence.url:
        parts = urlsplit(evidence.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DomainError("The evidence URL must be an http or https address.", field="url")
    values: dict[str, object] = {
        "note": evidence.note or None, "source": evidence.source or None, "url": evidence.url or None,
        "document_id": None, "check_run_id": None, "check_snapshot": None}
    if evidence.document_id:
        document = session.get(Document, evidence.document_id)
        if document is None or document.provider_id != submission.provider_id:
            raise DomainError("That document does not belong to this provider.", field="document_id")
        values["document_id"] = document.id
    if evidence.check_run_id:
        run = session.get(CheckRun, evidence.check_run_id)
        if run is None or run.provider_id != submission.provider_id:
            raise DomainError("That check result does not belong to this provider.", field="check_run_id")
        values["check_run_id"] = run.id
        values["check_snapshot"] = audit.jsonable({
            "check": run.check, "outcome": run.outcome, "summary": run.summary, "evidence": run.evidence,
            "source_version": run.source_version, "started_at": run.started_at,
        })
    return values


def record_assessment(session: Session, actor: Account, submission: Submission, criterion_code: str,
                      status: AssessmentStatus, evidence: Evidence, expected_version: int | None) -> Assessment:
    """Assess one criterion with its evidence; met and not met need evidence, not applicable a note."""
    _require_reviewer(actor, submission)
    _require_state(submission, S.IN_REVIEW)
    _require_no_pending_decision(submission)
    criterion = next((c for c in applicable_criteria(session, submission) if c.code == criterion_code), None)
    if criterion is None:
        raise DomainError(f"{criterion_code} is not a criterion that applies to this request.")
    advertising_copy.require_standards_can_be_met(session, submission, criterion.code, status)
    if status in (AssessmentStatus.MET, AssessmentStatus.NOT_MET) and evidence.is_empty():
        raise DomainError("Record the evidence: a note, a source, a URL, a document or a check result.",
                          field="note")
    if status == AssessmentStatus.NOT_APPLICABLE and not evidence.note:
        raise DomainError("Say in the note why this criterion does not apply.", field="note")
    values = _validated_evidence(session, submission, evidence)
    checked_at = _snapshot_time(values["check_snapshot"])
    if checked_at is not None and _too_old(criterion, checked_at, utcnow()):
        raise DomainError(f"That check result is from {checked_at:%d %b %Y}, older than the {criterion.freshness_days} "
                          "days this criterion allows: run the check again or give other evidence.",
                          field="check_run_id")
    concurrency.lock(session, submission, expected_version)
    assessment = session.scalar(select(Assessment).where(
        Assessment.submission_id == submission.id, Assessment.criterion_id == criterion.id))
    # A change of a carried-over assessment makes it the researcher's own: it no longer comes from the old one.
    fields = ("status", "note", "source", "url", "document_id", "check_run_id", "carried_from_id")
    before = audit.snapshot(assessment, fields) if assessment else {}
    if assessment is None:
        assessment = Assessment(criterion=criterion)
        submission.assessments.append(assessment)
    assessment.status = status
    for name, value in values.items():
        setattr(assessment, name, value)
    assessment.carried_from_id = None
    assessment.assessed_by_id = actor.id
    assessment.assessed_at = utcnow()
    concurrency.flush(session)
    old, new = audit.changed(before, audit.snapshot(assessment, fields))
    audit.record(session, actor, "assessment.recorded", "assessment", assessment.id, before=old, after=new,
                 reason=criterion.code, provider_id=submission.provider_id)
    return assessment


def is_unconfirmed(assessment: Assessment | None) -> bool:
    """Carried over from the decision in force and not yet confirmed or changed: it counts for nothing."""
    return assessment is not None and assessment.carried_from_id is not None and assessment.assessed_at is None


def _snapshot_time(snapshot: dict | None) -> datetime | None:
    started = (snapshot or {}).get("started_at")
    if not started:
        return None
    moment = datetime.fromisoformat(started)
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def evidence_date(assessment: Assessment) -> datetime | None:
    """When the evidence of an assessment was gathered: the check run's start for a check result, else when it
    was assessed; a carried-over or confirmed one keeps the date of the assessment it came from."""
    checked = _snapshot_time(assessment.check_snapshot)
    if checked is not None:
        return checked
    if assessment.carried_from is not None:
        return evidence_date(assessment.carried_from)
    return assessment.assessed_at


def _too_old(criterion: Criterion, moment: datetime, now: datetime) -> bool:
    return criterion.freshness_days is not None and moment < now - timedelta(days=criterion.freshness_days)


def is_stale(assessment: Assessment, now: datetime) -> bool:
    """A carried-over assessment whose evidence is older than its criterion's freshness limit: assess it again."""
    moment = evidence_date(assessment)
    return is_unconfirmed(assessment) and moment is not None and _too_old(assessment.criterion, moment, now)


def confirm_assessment(session: Session, actor: Account, submission: Submission, criterion_code: str,
                       expected_version: int | None) -> Assessment:
    """Make a carried-over assessment the researcher's own, as it stands; refused when its evidence is too old."""
    _require_reviewer(actor, submission)
    _require_state(submission, S.IN_REVIEW)
    _require_no_pending_decision(submission)
    assessment = assessments_by_code(submission).get(criterion_code)
    if assessment is None or not is_unconfirmed(assessment):
        raise DomainError(f"{criterion_code} has no carried-over assessment to confirm.", field="confirm")
    now = utcnow()
    if is_stale(assessment, now):
        moment = evidence_date(assessment)
        assert moment is not None  # is_stale needs a date
        raise DomainError(f"The evidence is from {moment:%d %b %Y}, older than the "
                          f"{assessment.criterion.freshness_days} days this criterion allows: assess it again.",
                          field="confirm")
    concurrency.lock(session, submission, expected_version)
    assessment.assessed_by_id = actor.id
    assessment.assessed_at = now
    concurrency.flush(session)
    audit.record(session, actor, "assessment.confirmed", "assessment", assessment.id,
                 before={"assessed_by_id": None, "assessed_at": None},
                 after={"assessed_by_id": actor.id, "assessed_at": now, "status": assessment.status.value,
                        "carried_from_id": assessment.carried_from_id},
                 reason=criterion_code, provider_id=submission.provider_id)
    return assessment


@dataclass(frozen=True)
class AssessmentInput:
    """One criterion's part of the assessment form as the researcher left it."""

    code: str
    status: AssessmentStatus
    evidence: Evidence
    confirm: bool = False


class AssessmentRefused(DomainError):
    """One item of an assessment form is refused; `code` names its criterion (and refuses the whole form)."""

    def __init__(self, message: str = "", *, field: str | None = None, code: str = ""):
        super().__init__(message, field=field)
        self.code = code


def _unchanged(current: Assessment | None, item: AssessmentInput) -> bool:
    shown = (current.status if current else AssessmentStatus.PENDING,
             *(getattr(current, name) if current else None for name in EVIDENCE_FIELDS[:-1]))
    typed = (item.status, item.evidence.note or None, item.evidence.source or None, item.evidence.url or None,
             item.evidence.document_id or None, item.evidence.check_run_id or None)
    return shown == typed


def record_assessments(session: Session, actor: Account, submission: Submission, items: list[AssessmentInput],
                       expected_version: int | None) -> list[str]:
    """Several criteria assessed in one form: each changed item recorded (one audit event each), a ticked
    carried-over one confirmed, the untouched left alone. One refused item refuses them all (the caller's unit
    of work rolls back), named by its criterion. Returns the codes recorded or confirmed."""
    _require_reviewer(actor, submission)
    _require_state(submission, S.IN_REVIEW)
    _require_no_pending_decision(submission)
    if expected_version is not None and expected_version != submission.row_version:
        raise Conflict(concurrency.CONFLICT_MESSAGE)
    assessed = assessments_by_code(submission)
    done = []
    for item in items:
        current = assessed.get(item.code)
        try:
            if _unchanged(current, item):
                if not item.confirm or not is_unconfirmed(current):
                    continue
                confirm_assessment(session, actor, submission, item.code, None)
            else:
                record_assessment(session, actor, submission, item.code, item.status, item.evidence, None)
        except (Conflict, NotAllowed, InvalidTransition):
            raise
        except DomainError as refused:
            raise AssessmentRefused(str(refused), field=refused.field, code=item.code) from refused
        done.append(item.code)
    return done


@dataclass(frozen=True)
class Blocker:
    """What stands between a request and its approval, in words, for one criterion. `since` is the date the
    reason is about (a finding opened, evidence gathered); `blocks` is False for a warning to read that the
    approval itself does not refuse."""

    code: str
    label: str
    reason: str
    blocks: bool = True
    since: datetime | None = None
    limit_days: int | None = None

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


# The short names the research team uses for the criteria of the starting catalogue; others by their title.
SHORT_LABELS = {
    "LEGAL_ENTITY": "Legal entity", "STATE_LICENCE": "Licence", "PRESCRIBING": "Prescribing",
    "ACCREDITATION": "Accreditation", "NPI_ACTIVE": "NPI active", "NOT_EXCLUDED": "Not excluded",
    "CLINICAL_LEADERSHIP": "Clinical leadership", "PHYSICAL_SITE": "Physical site",
    "WEBSITE_TRANSPARENT": "Website", "SERVICES_ACCURATE": "Services accurate",
    "NO_PATIENT_BROKERING": "No patient brokering", "CONTACT_CONFIRMED": "Admissions contact",
    "ADVERTISER_STANDARDS": "Advertiser standards",
}


def short_label(criterion: Criterion) -> str:
    return SHORT_LABELS.get(criterion.code, criterion.title)


def blockers_in_words(session: Session, submission: Submission) -> list[Blocker]:
    """Each required criterion that holds the approval back and why (not assessed, not met, carried over and
    not confirmed, evidence too old), then each criterion whose automated check has an open warning or critical
    finding or failed last time: what the summary of the case page says before anyone decides."""
    criteria_list = applicable_criteria(session, submission) if submission.catalogue_id else []
    assessed = assessments_by_code(submission)
    now = utcnow()
    blocking = {c.code for c in approval_blockers(session, submission)}
    found: list[Blocker] = []
    for criterion in criteria_list:
        if criterion.code not in blocking:
            continue
        current = assessed.get(criterion.code)
        label = short_label(criterion)
        if current is not None and is_stale(current, now):
            found.append(Blocker(criterion.code, label, "evidence is too old: assess again",
                                 since=evidence_date(current), limit_days=criterion.freshness_days))
        elif is_unconfirmed(current):
            found.append(Blocker(criterion.code, label, "carried over, not confirmed"))
        elif current is None or current.status == AssessmentStatus.PENDING:
            found.append(Blocker(criterion.code, label, "not assessed"))
        else:
            found.append(Blocker(criterion.code, label, current.status.label))
    checked = [c for c in criteria_list if c.automated_check]
    if checked:
        findings = session.scalars(select(Finding).where(
            Finding.provider_id == submission.provider_id, Finding.state.in_(OPEN_FINDING_STATES),
            Finding.severity.in_((FindingSeverity.WARNING, FindingSeverity.CRITICAL)))
            .order_by(Finding.opened_at, Finding.id)).all()
        runs = {check.value: run for check, run in rechecks.latest_runs(session, submission.provider_id).items()}
        severities = list(FindingSeverity)
        for criterion in checked:
            label = short_label(criterion)
            worst = max((f for f in findings if f.check.value == criterion.automated_check),
                        key=lambda f: severities.index(f.severity), default=None)
            run = runs.get(criterion.automated_check or "")
            if worst is not None:
                words = "open critical finding" if worst.severity == FindingSeverity.CRITICAL else "open warning"
                found.append(Blocker(criterion.code, label, words, blocks=False, since=worst.opened_at))
            elif run is not None and run.outcome in (CheckOutcome.FAIL, CheckOutcome.ERROR):
                found.append(Blocker(criterion.code, label, f"last check: {run.outcome.label.lower()}", blocks=False,
                                     since=run.started_at))
    return found


# -- questions ------------------------------------------------------------------------------------


def _provider_recipients(session: Session, submission: Submission) -> list[Account]:
    members = session.scalars(select(Account).join(OrganisationMember, OrganisationMember.account_id == Account.id)
                              .where(OrganisationMember.provider_id == submission.provider_id,
                                     Account.is_active.is_(True))).all()
    if not members and submission.created_by is not None and submission.created_by.has_role(Role.PROVIDER):
        members = [submission.created_by]
    return list(members)


def notify_provider(session: Session, submission: Submission, kind: str, subject: str, body: str) -> None:
    """Mail the provider's people about a request, under the organisation's name, linking to the request's page
    in the portal (made absolute on PUBLIC_BASE_URL when the message is sent)."""
    name = submission.provider.public_name or submission.provider.legal_name
    for account in _provider_recipients(session, submission):
        outbox.enqueue(session, kind=kind, subject=f"{name}: {subject}" if name else subject[:1].upper() + subject[1:],
                       body=body, account=account, link=f"/portal/requests/{submission.id}")


def request_info(session: Session, actor: Account, submission: Submission, message: str,
                 expected_version: int | None) -> SubmissionMessage:
    """Ask the provider a question; the request waits in needs_info until it answers."""
    _require_reviewer(actor, submission)
    _require_state(submission, S.IN_REVIEW)
    _require_no_pending_decision(submission)
    message = (message or "").strip()
    if not message:
        raise DomainError("Write the question the provider should answer.", field="message")
    concurrency.lock(session, submission, expected_version)
    note = SubmissionMessage(kind=MessageKind.INFO_REQUEST, author_id=actor.id, body=message)
    submission.messages.append(note)
    submissions.transition(session, actor, submission, S.NEEDS_INFO, reason=message)
    notify_provider(session, submission, "info_requested",
                     f"the research team has a question about request #{submission.id}",
                     f"The research team asks:\n\n{message}\n\nAnswer it on the request's page in your provider "
                     "portal; the review goes on once you have answered.")
    concurrency.flush(session)
    return note


def answer_info_request(session: Session, actor: Account, submission: Submission, message: str,
                        expected_version: int | None = None) -> SubmissionMessage:
    """The provider answers; the request goes back into review."""
    _require_state(submission, S.NEEDS_INFO)
    message = (message or "").strip()
    if not message:
        raise DomainError("Write your answer.")
    concurrency.lock(session, submission, expected_version)
    answer = SubmissionMessage(kind=MessageKind.PROVIDER_ANSWER, author_id=actor.id, body=message)
    submission.messages.append(answer)
    submissions.transition(session, actor, submission, S.IN_REVIEW, reason="provider answered")
    concurrency.flush(session)
    staff_notices.provider_answered(session, submission)
    return answer


# -- decisions ------------------------------------------------------------------------------------


def approval_blockers(session: Session, submission: Submission) -> list[Criterion]:
    """Applicable required criteria not assessed `met`: approval waits until this is empty."""
    assessed = assessments_by_code(submission)
    return [c for c in applicable_criteria(session, submission)
            if is_required(c, submission)
            and (c.code not in assessed or assessed[c.code].status != AssessmentStatus.MET
                 or is_unconfirmed(assessed[c.code]))]


def unconfirmed_codes(submission: Submission) -> list[str]:
    return sorted(a.criterion.code for a in submission.assessments if is_unconfirmed(a))


def not_met_codes(submission: Submission) -> set[str]:
    """Criteria assessed not met by this review (a carried-over assessment not yet confirmed is not one)."""
    return {a.criterion.code for a in submission.assessments
            if a.status == AssessmentStatus.NOT_MET and not is_unconfirmed(a)}


def rejection_reason_codes(session: Session, submission: Submission) -> list[str]:
    """The criteria a rejection may cite: applicable, required for this request and assessed not met.

    An optional criterion (ACCREDITATION for a listing) is recorded and shown, but any centre that meets the
    required criteria can be listed, so it is never the reason to refuse one; an advertiser application,
    for which ACCREDITATION is required, may cite it.
    """
    not_met = not_met_codes(submission)
    return [c.code for c in applicable_criteria(session, submission)
            if c.code in not_met and is_required(c, submission)]


def optional_not_met_codes(session: Session, submission: Submission) -> list[str]:
    """Applicable criteria assessed not met that are optional for this request: shown, never a reason."""
    not_met = not_met_codes(submission)
    return [c.code for c in applicable_criteria(session, submission)
            if c.code in not_met and not is_required(c, submission)]


def _require_citable(session: Session, submission: Submission, reason_codes: list[str]) -> None:
    if not reason_codes:
        raise DomainError("A rejection must cite at least one criterion assessed as not met.", field="reason_codes")
    uncited = set(reason_codes) - not_met_codes(submission)
    if uncited:
        raise DomainError("A rejection can only cite criteria assessed as not met; these are not: "
                          + ", ".join(sorted(uncited)) + ".", field="reason_codes")
    optional = [code for code in reason_codes if code not in rejection_reason_codes(session, submission)]
    if optional:
        raise DomainError(
            f"{', '.join(optional)} {'is' if len(optional) == 1 else 'are'} optional for a listing: recorded and "
            "shown, but never the reason to refuse one. Cite a required criterion assessed as not met, or approve.",
            field="reason_codes")


def decide(session: Session, actor: Account, submission: Submission, outcome: DecisionOutcome,
           reason_codes: list[str], provider_note: str, internal_note: str, policy: ReviewPolicy,
           expected_version: int | None) -> Decision:
    """Approve or reject. Approval needs every applicable required criterion met; a rejection cites only
    required criteria assessed not met. Advertiser applications and reinstatements wait for a second sign-off."""
    _require_reviewer(actor, submission)
    _require_state(submission, S.IN_REVIEW)
    _require_no_pending_decision(submission)
    unconfirmed = unconfirmed_codes(submission)
    if unconfirmed:
        raise DomainError("Confirm or change each assessment carried over from the decision in force first: "
                          + ", ".join(unconfirmed) + ".")
    reason_codes = sorted(set(reason_codes or []))
    if outcome == DecisionOutcome.APPROVED:
        require_approvable(session, submission)
    else:
        _require_citable(session, submission, reason_codes)
    concurrency.lock(session, submission, expected_version)
    needs_signoff = submission.kind in NEEDS_SECOND_SIGNOFF
    decision = Decision(
        outcome=outcome, reason_codes=reason_codes,
        status=DecisionStatus.AWAITING_SIGNOFF if needs_signoff else DecisionStatus.FINAL,
        provider_note=(provider_note or "").strip() or None, internal_note=(internal_note or "").strip() or None,
        catalogue_id=submission.catalogue_id, decided_by_id=actor.id, decided_at=utcnow(),
    )
    submission.decisions.append(decision)
    concurrency.flush(session)
    audit.record(session, actor, "decision.recorded", "decision", decision.id,
                 after={"submission_id": submission.id, "outcome": outcome.value, "reason_codes": reason_codes,
                        "status": decision.status.value, "catalogue_id": decision.catalogue_id},
                 reason=decision.internal_note, provider_id=submission.provider_id)
    if needs_signoff:
        staff_notices.signoff_waiting(session, submission, actor)
    else:
        _apply_decision(session, actor, submission, decision, policy)
    return decision


def sign_off(session: Session, actor: Account, submission: Submission, policy: ReviewPolicy,
             expected_version: int | None) -> Decision:
    """A second researcher confirms a decision; it then takes effect."""
    decision = _awaiting_second_person(actor, submission,
                                       "Nobody signs off their own decision: another researcher or research lead must.")
    if decision.outcome == DecisionOutcome.APPROVED:
        require_approvable(session, submission)
    concurrency.lock(session, submission, expected_version)
    decision.status = DecisionStatus.FINAL
    decision.second_signoff_by_id = actor.id
    decision.second_signoff_at = utcnow()
    audit.record(session, actor, "decision.signed_off", "decision", decision.id,
                 before={"status": DecisionStatus.AWAITING_SIGNOFF.value}, after={"status": DecisionStatus.FINAL.value},
                 provider_id=submission.provider_id)
    _apply_decision(session, actor, submission, decision, policy)
    return decision


def _awaiting_second_person(actor: Account, submission: Submission, own_decision_message: str) -> Decision:
    """The decision awaiting sign-off, if the actor is a researcher other than the one who made it."""
    guards.require_researcher(actor)
    decision = pending_decision(submission)
    if decision is None:
        raise InvalidTransition("No decision on this request is awaiting sign-off.")
    if decision.decided_by_id == actor.id:
        raise NotAllowed(own_decision_message)
    return decision


def decline_signoff(session: Session, actor: Account, submission: Submission, reason: str,
                    expected_version: int | None) -> Decision:
    """The second researcher does not confirm; the request stays in review for another decision."""
    decision = _awaiting_second_person(actor, submission,
                                       "Withdraw your own decision by asking another researcher to decline it.")
    reason = require_reason(reason, "Say why you decline to sign off.")
    concurrency.lock(session, submission, expected_version)
    decision.status = DecisionStatus.DECLINED
    decision.declined_by_id = actor.id
    decision.declined_at = utcnow()
    decision.decline_reason = reason
    audit.record(session, actor, "decision.signoff_declined", "decision", decision.id,
                 before={"status": DecisionStatus.AWAITING_SIGNOFF.value}, after={"status": DecisionStatus.DECLINED.value},
                 reason=reason, provider_id=submission.provider_id)
    concurrency.flush(session)
    return decision


def require_approvable(session: Session, submission: Submission) -> None:
    """Everything an approval needs, checked when it is decided and again when it is signed off, since the
    provider may have changed in between (a revocation, a suspension, a critical finding)."""
    blockers = approval_blockers(session, submission)
    if blockers:
        raise DomainError("Cannot approve: these required criteria are not assessed as met: "
                          + ", ".join(c.code for c in blockers) + ".")
    provider = submission.provider
    if submission.kind == SubmissionKind.ADVERTISER_APPLICATION:
        standing = advertising_copy.standards_problems(session, submission)
        if standing:
            raise DomainError("Cannot approve: " + " ".join(standing))
        provider_status.require_currently_verified(provider)
        if provider.listing_status != ListingStatus.LISTED:
            raise DomainError(f"Only a listed provider can advertise; this listing is {provider.listing_status.label}.")
        if provider_status.refusal(provider, advertising="approve") is not None:
            raise DomainError(f"Advertising is {provider.advertising_status.label}; it resumes only through "
                              "the provider's new application.")
        open_findings = session.scalar(select(Finding.id).where(
            Finding.provider_id == provider.id, Finding.state.in_(OPEN_FINDING_STATES),
            Finding.severity.in_((FindingSeverity.WARNING, FindingSeverity.CRITICAL))).limit(1))
        if open_findings is not None:
            raise DomainError("This provider has an open warning or critical finding; ADVERTISER_STANDARDS "
                              "cannot be met until it is resolved or dismissed.")
    elif submission.kind == SubmissionKind.NEW_LISTING or submission.kind in CHANGES_LISTING:
        if provider_status.needs_reinstatement(provider):
            raise DomainError(provider_status.reinstatement_only(provider))
        if submission.kind in CHANGES_LISTING and provider.listing_status != ListingStatus.LISTED:
            raise DomainError(f"{'An update' if submission.kind == SubmissionKind.UPDATE else 'A re-verification'} "
                              "applies to a listed provider; this one is not listed.")


def _apply_decision(session: Session, actor: Account, submission: Submission, decision: Decision,
                    policy: ReviewPolicy) -> None:
    provider = submission.provider
    now = utcnow()
    if decision.outcome == DecisionOutcome.APPROVED:
        submissions.transition(session, actor, submission, S.APPROVED)
        if submission.kind == SubmissionKind.ADVERTISER_APPLICATION:
            provider_status.approve_advertising(session, actor, provider, submission)
            advertising_copy.approve(session, actor, submission)
        else:
            profile.apply(session, actor, provider, submission.proposed or {}, f"request #{submission.id} approved")
            decision.verified_until = now + timedelta(days=policy.verification_validity_days)
            provider_status.grant(session, actor, provider, decision, now, f"request #{submission.id} approved")
            sources.confirm(session, actor, provider.id, sources.confirmed_by_decision(provider, submission.id, now.date()),
                            now)
            # The grant's light signed checkpoint, published by a task once this commits (services/audit_publish).
            work.request(session, actor, audit_publish.grant_spec(decision.id), policy.work_policy)
    else:
        submissions.transition(session, actor, submission, S.REJECTED)
        if submission.kind == SubmissionKind.ADVERTISER_APPLICATION:
            provider_status.reject_advertising(session, actor, provider, submission)
    notify_provider(session, submission, "decided", f"decision on request #{submission.id}",
                     _decision_text(session, submission, decision, policy))
    concurrency.flush(session)


def _decision_text(session: Session, submission: Submission, decision: Decision, policy: ReviewPolicy) -> str:
    """The decision e-mail: the outcome, each criterion not met by code and title, the note to the provider
    and, for a rejection, where the criteria are published."""
    approved = decision.outcome == DecisionOutcome.APPROVED
    lines = [f"Your request #{submission.id} ({submission.kind.label}) was {'approved' if approved else 'not approved'}."]
    if decision.reason_codes:
        titles = criteria.titles(session, decision.catalogue_id, decision.reason_codes)
        lines.append("Criteria not met:\n" + "\n".join(
            f"- {code}: {titles[code]}" if code in titles else f"- {code}" for code in decision.reason_codes))
    if decision.provider_note:
        lines.append(decision.provider_note)
    if not approved:
        lines.append(f"What each criterion asks for and the evidence it needs: {policy.criteria_url}")
    return "\n\n".join(lines)


# -- suspension and revocation --------------------------------------------------------------------


def suspend_listing(session: Session, actor: Account, provider: Provider, reason: str) -> None:
    """Take a listed provider out of the directory at once, pending review; advertising stops with it."""
    guards.require_researcher(actor)
    reason = require_reason(reason, "Give the reason for the suspension.")
    provider_status.suspend_listing(session, actor, provider, reason)
    concurrency.flush(session)


def request_revocation(session: Session, actor: Account, provider: Provider, reason: str) -> VerificationAction:
    guards.require_researcher(actor)
    reason = require_reason(reason, "Give the reason for the revocation.")
    if provider.verification_status != VerificationStatus.VERIFIED:
        raise InvalidTransition(f"Only a verified provider can be revoked; this one is {provider.verification_status.label}.")
    waiting = session.scalar(select(VerificationAction.id).where(
        VerificationAction.provider_id == provider.id,
        VerificationAction.state == VerificationActionState.AWAITING_SIGNOFF))
    if waiting:
        raise InvalidTransition("A revocation of this provider is already awaiting sign-off.")
    action = VerificationAction(provider_id=provider.id, kind=VerificationActionKind.REVOKE, reason=reason,
                                requested_by_id=actor.id)
    session.add(action)
    concurrency.flush(session)
    audit.record(session, actor, "revocation.requested", "verification_action", action.id,
                 after={"kind": "revoke", "state": action.state.value}, reason=reason, provider_id=provider.id)
    return action


def sign_off_revocation(session: Session, actor: Account, action: VerificationAction) -> None:
    """A second researcher confirms: verification is revoked, the listing and its advertising end."""
    guards.require_researcher(actor)
    _require_awaiting(action)
    if action.requested_by_id == actor.id:
        raise NotAllowed("Nobody signs off their own revocation: another researcher or research lead must.")
    provider = action.provider
    action.state = VerificationActionState.APPLIED
    concurrency.flush(session)  # the versioned UPDATE: a concurrent sign-off or decline gets a conflict
    action.signed_off_by_id = actor.id
    action.signed_off_at = utcnow()
    provider_status.revoke(session, actor, provider, action.reason)
    concurrency.flush(session)


def decline_revocation(session: Session, actor: Account, action: VerificationAction, reason: str) -> None:
    guards.require_researcher(actor)
    _require_awaiting(action)
    if action.requested_by_id == actor.id:
        raise NotAllowed("Another researcher must decline a revocation you asked for.")
    reason = require_reason(reason, "Say why you decline the revocation.")
    action.state = VerificationActionState.DECLINED
    concurrency.flush(session)  # the versioned UPDATE: a concurrent sign-off or decline gets a conflict
    action.declined_by_id = actor.id
    action.declined_at = utcnow()
    action.decline_reason = reason
    audit.record(session, actor, "revocation.declined", "verification_action", action.id,
                 after={"state": action.state.value}, reason=reason, provider_id=action.provider_id)
    concurrency.flush(session)


def _require_awaiting(action: VerificationAction) -> None:
    if action.state != VerificationActionState.AWAITING_SIGNOFF:
        raise InvalidTransition(f"This revocation is already {action.state.label}.")
