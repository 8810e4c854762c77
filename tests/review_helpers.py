"""Builders for review tests: a published catalogue and a submission taken to a given point."""
from __future__ import annotations

from pathlib import Path

from backoffice.models import AssessmentStatus, Role, SubmissionKind
from backoffice.services import accounts, advertising_copy, criteria, review, submissions
from backoffice.services.advertising_copy import Copy, website_host
from backoffice.services.review import Evidence, ReviewPolicy

CATALOGUE = Path(__file__).resolve().parent.parent / "data" / "criteria" / "catalogue-v1.json"
POLICY = ReviewPolicy()


def publish_catalogue(session):
    catalogue = criteria.publish(session, "system:test", criteria.load_definition(CATALOGUE))
    session.commit()
    return catalogue


def provider_member(session, make_account, provider):
    account = make_account(Role.PROVIDER)
    accounts.add_member(session, "system:test", account, provider)
    session.commit()
    return account


def submitted(session, provider_account, provider, kind=SubmissionKind.NEW_LISTING, proposed=None):
    """A submitted request; an advertiser application carries its copy, as every application does."""
    submission = submissions.create_draft(session, provider_account, provider, kind,
                                          proposed if proposed is not None else {"public_name": provider.public_name})
    if kind == SubmissionKind.ADVERTISER_APPLICATION:
        advertising_copy.attach(session, provider_account, submission, ad_copy(provider))
    review.submit(session, provider_account, submission, POLICY)
    session.commit()
    return submission


def in_review(session, researcher, submission):
    review.claim(session, researcher, submission, None)
    session.commit()
    return submission


def assess_all(session, researcher, submission, status=AssessmentStatus.MET, except_codes=()):
    for criterion in review.applicable_criteria(session, submission):
        if criterion.code in except_codes:
            continue
        review.record_assessment(session, researcher, submission, criterion.code, status,
                                 Evidence(note=f"checked {criterion.code}", source="test"), None)
    session.commit()


def ad_copy(provider, **changes) -> Copy:
    """Advertising copy an advertiser application can carry: its landing page on the provider's own website."""
    values = {"headline": "Recovery close to home", "text": "Residential and outpatient treatment; call admissions.",
              "claims": ("Accredited by CARF since 2019", "Admissions open 24 hours"),
              "landing_url": f"https://{website_host(provider.website)}/admissions"}
    return Copy(**{**values, **changes})


def ad_form(provider, **changes) -> dict:
    """The portal's application form filled with `ad_copy`, claims one per line."""
    copy = ad_copy(provider)
    return {"headline": copy.headline, "text": copy.text, "claims": "\n".join(copy.claims),
            "landing_url": copy.landing_url, **changes}
