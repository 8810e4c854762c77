"""The feed answers as its OpenAPI document says, for inputs Schemathesis draws from that document.

The app runs on this test's real database, filled with listed, verified providers (some advertisers, one
with a real approval behind its receipt) and some that must never leave. Generation is bounded and
derandomised, so a run is short and gives the same cases every time.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks

from backoffice import create_app
from backoffice.checks.result import CheckResult
from backoffice.models import (
    AdvertisingStatus,
    CheckKind,
    CheckOutcome,
    DataSource,
    DecisionOutcome,
    ListingStatus,
    Role,
    VerificationStatus,
    utcnow,
)
from backoffice.services import rechecks, review, sources
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted

# Per operation and phase; with derandomize the same cases run every time.
EXAMPLES = 25


@schemathesis.check
def no_markup_characters_in_the_bytes(ctx, response, case) -> bool | None:
    """Provider text and echoed parameters stay data even if a client drops the JSON into HTML."""
    raw = response.content
    if response.headers.get("content-type", [""])[0].startswith("application/json"):
        found = sorted({chr(c) for c in raw if c in b"<>&"})
        if found:
            raise AssertionError(f"raw {' '.join(found)} in the JSON of {case.method} {case.formatted_path}")
    return None


CHECKS = [
    no_markup_characters_in_the_bytes,
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
    checks.unsupported_method,
    checks.allow_header_conformance,
]


@pytest.fixture
def feed_data(app, session, make_account, make_provider):
    now = utcnow()
    verified = dict(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                    verified_at=now - timedelta(days=20), verified_until=now + timedelta(days=300),
                    last_rechecked_at=now - timedelta(days=2))
    publish_catalogue(session)
    approved = make_provider(public_name="Blue Ridge <Recovery> & Wellness", levels_of_care=["otp", "outpatient"],
                             services=["moud", "naloxone", "substance_use_treatment"],
                             populations=["adults", "veterans"], payment_accepted=["medicaid", "self_pay"])
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, submitted(session, provider_member(session, make_account, approved),
                                                          approved))
    assess_all(session, researcher, submission)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    # Its receipt names its checks' sources (one of them stale) and its feed entry the fields they confirmed.
    session.add(DataSource(name=sources.NPPES, last_refreshed_at=now - timedelta(days=30)))
    for check, result in ((CheckKind.WEBSITE, CheckResult(CheckOutcome.PASS, "ok", {
            "url": "https://blueridge.example.org", "names_provider": "Blue Ridge"})),
            (CheckKind.NPI, CheckResult.error("The NPI Registry could not be reached", {"error": "dns"}))):
        rechecks.record(session, "system:test", approved.id, check, rechecks.run_key(approved.id, check, "w"),
                        result, now, auto_suspend=False, cadence_days=30)
    session.commit()
    for n, (state, levels, services) in enumerate([
        ("TX", ["residential", "detox"], ["co_occurring", "fentanyl_test_strips"]),
        ("OR", ["iop"], ["mental_health_treatment", "peer_support"]),
        ("CA", ["telehealth", "php"], ["syringe_services"]),
        ("NY", ["recovery_residence"], ["substance_use_treatment"]),
    ]):
        provider = make_provider(levels_of_care=levels, services=services, populations=["adolescents"],
                                 payment_accepted=["private_insurance"], phone="+1 434-296-1234",
                                 advertising_status=AdvertisingStatus.ACTIVE if n % 2 else AdvertisingStatus.NONE,
                                 **verified)
        provider.locations[0].state = state
    make_provider(listing_status=ListingStatus.SUSPENDED)          # never leaves
    make_provider(**{**verified, "verified_until": now - timedelta(hours=1)})  # lapsed
    session.commit()


# The document comes from the app itself; serving it runs no query, so an app on an unused database will do
# at collection time. Each case is then sent to the app of the test, on its filled database.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", create_app("testing", {
    "SQLALCHEMY_DATABASE_URI": "sqlite://", "WTF_CSRF_ENABLED": False}))
schema.config.generation.update(max_examples=EXAMPLES, deterministic=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_feed_answers_as_its_openapi_document_says(case, app, feed_data):
    case.call_and_validate(checks=CHECKS, app=app)
