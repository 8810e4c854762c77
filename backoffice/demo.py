"""Demo data: staff and provider accounts, real facilities from the shipped SAMHSA files, work in progress."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice.importers.locator import read_file
from backoffice.models import (
    AdvertisingStatus, Provider, Role, SubmissionKind, SubmissionState, utcnow,
)
from backoffice.services import accounts, audit, criteria, imports, submissions, verification

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO_FILES = [
    DATA / "public" / "findtreatment_gov_api_listing_sample_2019.json",
    DATA / "public" / "findtreatment_gov_api_listing_sample_2019_b.json",
    DATA / "public" / "oeps_OpioidTreatmentProgram_Geocoded.csv",
]
ACTOR = "system:seed-demo"


@dataclass(frozen=True)
class DemoAccount:
    email: str
    name: str
    role: Role


DEMO_ACCOUNTS = [
    DemoAccount("researcher@demo.example", "Riley Researcher", Role.RESEARCHER),
    DemoAccount("lead@demo.example", "Lee Research-Lead", Role.RESEARCH_LEAD),
    DemoAccount("auditor@demo.example", "Avery Auditor", Role.AUDITOR),
    DemoAccount("admin@demo.example", "Ash Admin", Role.ADMIN),
    DemoAccount("provider@demo.example", "Pat Provider", Role.PROVIDER),
]


def is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(Provider))


def seed(session: Session, password: str) -> dict[str, int]:
    """Fill an empty database with demo data; the caller commits."""
    people = {
        a.role: accounts.create_account(session, ACTOR, email=a.email, name=a.name, password=password,
                                        roles=[a.role], email_confirmed=True)
        for a in DEMO_ACCOUNTS
    }
    catalogue = criteria.publish(session, ACTOR, criteria.load_definition(DATA / "criteria" / "catalogue-v1.json"))
    imported = 0
    for path in DEMO_FILES:
        source, rows = read_file(path)
        records, summary = imports.validate(rows, source)
        imports.apply(session, ACTOR, records, summary)
        imported += summary.created
    providers = session.scalars(select(Provider).order_by(Provider.id).limit(40)).all()
    now = utcnow()
    # Verified and listed: most current, a few lapsed so the expiry sweep has work on first start.
    for index, provider in enumerate(providers[:24]):
        lapsed = index % 8 == 7
        verified_at = now - timedelta(days=400 if lapsed else 30 + index * 7)
        verification.grant(session, ACTOR, provider, catalogue.id, verified_at,
                           verified_at + timedelta(days=365), "demo data: verified under catalogue v1")
        provider.recheck_due_at = now + timedelta(days=index - 8)
        if index % 6 == 0:
            provider.advertising_status = AdvertisingStatus.ACTIVE
            audit.record(session, ACTOR, "advertising.activated", "provider", provider.id,
                         before={"advertising_status": "none"}, after={"advertising_status": "active"},
                         reason="demo data", provider_id=provider.id)
    provider_account = people[Role.PROVIDER]
    plan = [
        SubmissionState.DRAFT, SubmissionState.SUBMITTED, SubmissionState.SUBMITTED,
        SubmissionState.IN_REVIEW, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO,
        SubmissionState.WITHDRAWN, SubmissionState.SUBMITTED,
    ]
    path_to = {
        SubmissionState.DRAFT: [],
        SubmissionState.SUBMITTED: [SubmissionState.SUBMITTED],
        SubmissionState.IN_REVIEW: [SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW],
        SubmissionState.NEEDS_INFO: [SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW, SubmissionState.NEEDS_INFO],
        SubmissionState.WITHDRAWN: [SubmissionState.SUBMITTED, SubmissionState.WITHDRAWN],
    }
    for provider, target in zip(providers[24:24 + len(plan)], plan):
        accounts.add_member(session, ACTOR, provider_account, provider)
        submission = submissions.create_draft(session, provider_account, provider, SubmissionKind.NEW_LISTING,
                                              {"public_name": provider.public_name, "website": provider.website})
        for step in path_to[target]:
            actor = provider_account if step in (SubmissionState.SUBMITTED, SubmissionState.WITHDRAWN) else people[Role.RESEARCHER]
            submissions.transition(session, actor, submission, step)
    session.flush()
    return {"accounts": len(people), "providers": imported, "submissions": len(plan)}
