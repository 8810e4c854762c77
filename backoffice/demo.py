"""Demo data: staff and provider accounts, real facilities from the shipped SAMHSA files, work in progress."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice.importers.locator import read_file
from backoffice.models import (
    AssessmentStatus,
    DecisionOutcome,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    utcnow,
)
from backoffice.services import accounts, advertising_copy, criteria, imports, mfa, profile, review, submissions
from backoffice.services.review import ReviewPolicy

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO_FILES = [
    DATA / "public" / "findtreatment_gov_api_listing_sample_2019.json",
    DATA / "public" / "findtreatment_gov_api_listing_sample_2019_b.json",
    DATA / "public" / "oeps_OpioidTreatmentProgram_Geocoded.csv",
]
ACTOR = "system:seed-demo"
POLICY = ReviewPolicy()


@dataclass(frozen=True)
class DemoAccount:
    email: str
    name: str
    role: Role


DEMO_ACCOUNTS = [
    DemoAccount("researcher@demo.example", "Riley Researcher", Role.RESEARCHER),
    DemoAccount("lead@demo.example", "Lee Research-Lead", Role.RESEARCH_LEAD),
    DemoAccount("auditor@demo.example", "Avery Auditor", Role.AUDITOR),
    # Two admins: a role one admin asks for starts only when another approves it (separation of duties).
    DemoAccount("admin@demo.example", "Ash Admin", Role.ADMIN),
    DemoAccount("admin2@demo.example", "Sam Second-Admin", Role.ADMIN),
    DemoAccount("provider@demo.example", "Pat Provider", Role.PROVIDER),
]


def is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Provider))


def seed(session: Session, password: str) -> dict[str, int]:
    """Fill an empty database with demo data; the caller commits."""
    people = [accounts.create_account(session, ACTOR, email=a.email, name=a.name, password=password,
                                      roles=[a.role], email_confirmed=True) for a in DEMO_ACCOUNTS]
    first = {}  # the first demo account of each role does the demo's work
    for demo_account, person in zip(DEMO_ACCOUNTS, people, strict=True):
        first.setdefault(demo_account.role, person)
    for person in people:
        if person.is_staff:
            # Demo staff come with an authenticator already set up, so the demo opens without a phone:
            # `.venv/bin/flask --app backoffice demo-code EMAIL` prints the current code (never in production).
            person.totp_secret = mfa.new_secret()
            person.totp_enabled_at = utcnow()
    criteria.publish(session, ACTOR, criteria.load_definition(DATA / "criteria" / "catalogue-v1.json"))
    imported = 0
    for path in DEMO_FILES:
        source, rows = read_file(path)
        records, summary = imports.validate(rows, source)
        imports.apply(session, ACTOR, records, summary)
        imported += summary.created
    providers = session.scalars(select(Provider).order_by(Provider.id).limit(40)).all()
    now = utcnow()
    researcher, lead = first[Role.RESEARCHER], first[Role.RESEARCH_LEAD]
    # Verified and listed as the research team verifies anyone: a new-listing review of the imported listing,
    # every criterion assessed with its evidence, a decision. Every receipt then names its decision and criteria.
    for index, provider in enumerate(providers[:24]):
        listing = submissions.create_draft(session, researcher, provider, SubmissionKind.NEW_LISTING,
                                           profile.current(provider))
        _review_to_decision(session, researcher, lead, listing, DecisionOutcome.APPROVED)
        provider.recheck_due_at = now + timedelta(days=index - 8)
    # Advertisers become active only through a reviewed, signed-off advertiser application with its copy; one
    # more application waits in review, so the case page shows copy still to check.
    with_website = [p for p in providers[:24] if advertising_copy.website_host(p.website)]
    for provider in with_website[0:8:2]:
        application = _advertiser_application(session, researcher, provider)
        _review_to_decision(session, researcher, lead, application, DecisionOutcome.APPROVED)
    if len(with_website) > 9:
        waiting = _advertiser_application(session, researcher, with_website[9])
        review.submit(session, researcher, waiting, POLICY)
        review.claim(session, researcher, waiting, None)
    provider_account = first[Role.PROVIDER]
    plan = [
        SubmissionState.DRAFT, SubmissionState.SUBMITTED, SubmissionState.SUBMITTED,
        SubmissionState.IN_REVIEW, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO,
        SubmissionState.WITHDRAWN, SubmissionState.APPROVED, SubmissionState.REJECTED,
    ]
    for provider, target in zip(providers[24:24 + len(plan)], plan, strict=False):
        accounts.add_member(session, ACTOR, provider_account, provider)
        # As the portal starts one: the listing as the directory has it (its locations, so the queue shows the state).
        submission = submissions.create_draft(session, provider_account, provider, SubmissionKind.NEW_LISTING,
                                              profile.current(provider))
        if target == SubmissionState.DRAFT:
            continue
        review.submit(session, provider_account, submission, POLICY)
        if target == SubmissionState.WITHDRAWN:
            submissions.transition(session, provider_account, submission, SubmissionState.WITHDRAWN)
        elif target == SubmissionState.NEEDS_INFO:
            review.claim(session, researcher, submission, None)
            review.request_info(session, researcher, submission,
                                "Please upload your current state licence for every level of care you list.", None)
        elif target == SubmissionState.IN_REVIEW:
            review.claim(session, researcher, submission, None)
        elif target in (SubmissionState.APPROVED, SubmissionState.REJECTED):
            outcome = DecisionOutcome.APPROVED if target == SubmissionState.APPROVED else DecisionOutcome.REJECTED
            _review_to_decision(session, researcher, lead, submission, outcome)
    session.flush()
    return {"accounts": len(people), "providers": imported,
            "submissions": session.scalar(select(func.count()).select_from(Submission))}


def _advertiser_application(session: Session, researcher, provider: Provider) -> Submission:
    """A demo advertiser application with the copy it asks to run (its landing page on the provider's site)."""
    application = submissions.create_draft(session, researcher, provider, SubmissionKind.ADVERTISER_APPLICATION, {})
    website = (provider.website or "").strip()
    landing = website if website.lower().startswith(("http://", "https://")) else f"https://{website}"
    advertising_copy.attach(session, ACTOR, application, advertising_copy.Copy(
        headline="Help with addiction, close to home",
        text=(f"{provider.public_name} offers assessment and treatment for substance use. Call to talk to our "
              "admissions team about what fits you; we will tell you plainly what we can and cannot offer."),
        claims=("Admissions answered by our own staff, not a call centre",
                "State-licensed for every level of care we list"),
        landing_url=landing))
    return application


def _review_to_decision(session: Session, researcher, lead, submission, outcome: DecisionOutcome) -> None:
    """Take a demo request through the real review: claim, assess every criterion, decide, sign off."""
    if submission.state == SubmissionState.DRAFT:
        review.submit(session, researcher, submission, POLICY)
    review.claim(session, researcher, submission, None)
    failing = "CONTACT_CONFIRMED" if outcome == DecisionOutcome.REJECTED else None
    for criterion in review.applicable_criteria(session, submission):
        status = AssessmentStatus.NOT_MET if criterion.code == failing else AssessmentStatus.MET
        note = ("demo: the admissions number reached a referral call centre, not the provider"
                if status == AssessmentStatus.NOT_MET else f"demo: {criterion.evidence}")
        review.record_assessment(session, researcher, submission, criterion.code, status,
                                 review.Evidence(note=note, source="demo data"), None)
    review.decide(session, researcher, submission, outcome, [failing] if failing else [],
                  "Thank you; see the criteria for what to change." if failing else "Welcome to the directory.",
                  "demo decision", POLICY, None)
    if review.pending_decision(submission):
        review.sign_off(session, lead, submission, POLICY, None)
