"""Random sequences of real service operations never break the listing promise.

After every step: no active advertiser without a current verification; the feed holds only listed,
currently verified providers; every advertiser in it is marked; its order is the same with the
advertising flags flipped; every rejection cites only required criteria assessed not met; each listed
provider's receipt (and the auditor's box) names the decision the audit trail says granted the
verification in force; the audit chain verifies.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from backoffice.models import (
    OPEN_FINDING_STATES,
    OPEN_STATES,
    AdvertisingStatus,
    AuditEvent,
    CheckKind,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    Finding,
    FindingSeverity,
    ListingStatus,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import (
    accounts,
    advertising,
    audit,
    expiry,
    findings,
    history,
    listings,
    review,
    submissions,
)
from backoffice.services.errors import DomainError
from tests.review_helpers import POLICY, ad_copy, publish_catalogue

OPERATIONS = ["list", "expire", "revoke", "reinstate", "apply_to_advertise", "mark_advertiser",
              "suspend_listing", "open_critical_finding", "resolve_findings", "suspend_advertising",
              "end_advertising", "open_update", "approve_update", "decide_reinstatement", "sign_off_reinstatement",
              "reject_citing_optional", "reject_citing_required"]
LISTING_KINDS = (SubmissionKind.NEW_LISTING, SubmissionKind.UPDATE, SubmissionKind.REINSTATEMENT)
# Weighted so that most sequences get a provider listed and advertising before things go wrong for it.
WEIGHTED = st.sampled_from(["list"] * 3 + ["apply_to_advertise"] * 2 + ["mark_advertiser"] * 3 + OPERATIONS)


class World:
    def __init__(self, session, researcher, lead, member):
        self.session, self.researcher, self.lead, self.member = session, researcher, lead, member

    def assess(self, submission):
        s = self.session
        review.claim(s, self.researcher, submission, None)
        for criterion in review.applicable_criteria(s, submission):
            review.record_assessment(s, self.researcher, submission, criterion.code,
                                     review.AssessmentStatus.MET, review.Evidence(note="checked"), None)

    def decide(self, submission):
        review.decide(self.session, self.researcher, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
        if review.pending_decision(submission):
            review.sign_off(self.session, self.lead, submission, POLICY, None)

    def approve(self, submission):
        self.assess(submission)
        self.decide(submission)

    def reject(self, provider, codes):
        """Reject the provider's open listing request (or a new one), assessing these criteria not met."""
        s = self.session
        submission = next((r for r in (self.open_request(provider, kind) for kind in LISTING_KINDS)
                           if r is not None and r.state == SubmissionState.IN_REVIEW
                           and review.pending_decision(r) is None), None)
        if submission is None and provider.verification_status == VerificationStatus.UNVERIFIED:
            submission = submissions.create_draft(s, self.member, provider, SubmissionKind.NEW_LISTING, {})
            review.submit(s, self.member, submission, POLICY)
            self.assess(submission)
        if submission is None:
            return
        for code in codes:
            review.record_assessment(s, self.researcher, submission, code, review.AssessmentStatus.NOT_MET,
                                     review.Evidence(note="not shown"), None)
        review.decide(s, self.researcher, submission, DecisionOutcome.REJECTED, codes, "", "", POLICY, None)
        if review.pending_decision(submission):
            review.sign_off(s, self.lead, submission, POLICY, None)

    def open_request(self, provider, kind):
        return self.session.scalar(select(Submission).where(
            Submission.provider_id == provider.id, Submission.kind == kind, Submission.state.in_(OPEN_STATES)))

    def run(self, operation: str, provider: Provider) -> None:
        s, now = self.session, utcnow()
        if operation == "list":
            if provider.verification_status == VerificationStatus.UNVERIFIED and not self.open_request(
                    provider, SubmissionKind.NEW_LISTING):
                submission = submissions.create_draft(s, self.member, provider, SubmissionKind.NEW_LISTING, {})
                review.submit(s, self.member, submission, POLICY)
                self.approve(submission)
        elif operation == "expire":
            if provider.verification_status == VerificationStatus.VERIFIED:
                provider.verified_until = now - timedelta(seconds=1)  # time passes
                expiry.expire_lapsed(s, "system:test", utcnow())
        elif operation == "revoke":
            action = review.request_revocation(s, self.researcher, provider, "test revocation")
            review.sign_off_revocation(s, self.lead, action)
        elif operation == "reinstate":
            self.approve(review.open_reinstatement(s, self.researcher, provider, POLICY, "test reinstatement"))
        elif operation == "decide_reinstatement":
            # Decided, awaiting its second sign-off; other decisions about the provider can come in between.
            submission = review.open_reinstatement(s, self.researcher, provider, POLICY, "test reinstatement")
            self.assess(submission)
            review.decide(s, self.researcher, submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
        elif operation == "sign_off_reinstatement":
            submission = self.open_request(provider, SubmissionKind.REINSTATEMENT)
            if submission is not None and review.pending_decision(submission) is not None:
                review.sign_off(s, self.lead, submission, POLICY, None)
        elif operation == "reject_citing_optional":
            self.reject(provider, ["ACCREDITATION"])  # always refused: an optional criterion is never the reason
        elif operation == "reject_citing_required":
            self.reject(provider, ["CONTACT_CONFIRMED"])
        elif operation == "apply_to_advertise":
            # Applied and assessed; the decision is a separate step, so things can happen in between.
            self.assess(advertising.apply(s, self.member, provider, POLICY, ad_copy(provider)))
        elif operation == "mark_advertiser":
            application = self.open_request(provider, SubmissionKind.ADVERTISER_APPLICATION)
            if application is not None:
                self.decide(application)
        elif operation == "open_update":
            update = submissions.create_draft(s, self.member, provider, SubmissionKind.UPDATE, {"phone": "434-555-0100"})
            review.submit(s, self.member, update, POLICY)
            self.assess(update)
        elif operation == "approve_update":
            update = self.open_request(provider, SubmissionKind.UPDATE)
            if update is not None:
                self.decide(update)
        elif operation == "suspend_listing":
            review.suspend_listing(s, self.researcher, provider, "test suspension")
        elif operation == "open_critical_finding":
            findings.open_or_update(s, "system:test", provider, CheckKind.EXCLUSION, f"test:{utcnow().timestamp()}",
                                    FindingSeverity.CRITICAL, "Confirmed exclusion", {})
        elif operation == "resolve_findings":
            for finding in s.scalars(select(Finding).where(Finding.provider_id == provider.id,
                                                            Finding.state.in_(OPEN_FINDING_STATES))):
                findings.resolve(s, self.researcher, finding, "dealt with")
        elif operation == "suspend_advertising":
            advertising.suspend(s, self.researcher, provider, "test")
        elif operation == "end_advertising":
            advertising.end(s, self.member, provider, "test")


def check_invariants(session, touched: list[Provider]) -> None:
    """The promise over the whole database; the receipts are read for the providers this sequence touched."""
    now = utcnow()
    for provider in session.scalars(select(Provider).where(Provider.advertising_status == AdvertisingStatus.ACTIVE)):
        assert provider.verification_status == VerificationStatus.VERIFIED, provider.id
        assert provider.verified_until is not None and provider.verified_until > now, provider.id
        assert provider.listing_status == ListingStatus.LISTED, provider.id
        critical = session.scalar(select(Finding.id).where(
            Finding.provider_id == provider.id, Finding.severity == FindingSeverity.CRITICAL,
            Finding.state.in_(OPEN_FINDING_STATES)))
        assert critical is None, provider.id
    for provider in session.scalars(select(Provider).where(Provider.verification_status == VerificationStatus.REVOKED)):
        assert provider.listing_status != ListingStatus.LISTED, provider.id
    check_revocations_end_only_by_signed_off_reinstatement(session)
    feed, _ = listings.page(session, listings.FeedQuery(limit=listings.MAX_LIMIT), now)
    versions = listings.catalogue_versions(session, feed)
    copies = listings.advertisements(session, feed, now)
    for provider in feed:
        assert provider.listing_status == ListingStatus.LISTED
        assert provider.verification_status == VerificationStatus.VERIFIED and provider.verified_until > now
        item = listings.listing(provider, versions, copies)
        assert item["advertiser"] is (provider.advertising_status == AdvertisingStatus.ACTIVE)
        assert (item["advertiser_disclosure"] is not None) is item["advertiser"]
        # Every advertiser here became one through an application with copy: the feed shows what was approved.
        assert (item["advertisement"] is not None) is item["advertiser"]
    check_rejections_cite_required_criteria(session)
    check_receipts_name_the_granting_decision(session, [p for p in feed if p in touched])
    order = [p.id for p in feed]
    assert order == sorted(order)
    # The same feed with every advertising flag flipped (never committed) keeps its order.
    with session.begin_nested() as flipped:
        for provider in session.scalars(select(Provider)):
            active = provider.advertising_status == AdvertisingStatus.ACTIVE
            provider.advertising_status = AdvertisingStatus.NONE if active else (
                AdvertisingStatus.ACTIVE if provider.verification_status == VerificationStatus.VERIFIED
                else AdvertisingStatus.NONE)
        session.flush()
        assert [p.id for p in listings.page(session, listings.FeedQuery(limit=listings.MAX_LIMIT), now)[0]] == order
        flipped.rollback()
    assert audit.verify_chain(session).ok


def check_rejections_cite_required_criteria(session) -> None:
    """Every rejection in force or awaiting sign-off cites only criteria required for its request and
    assessed not met on it: an optional criterion is never the reason to refuse a listing."""
    for decision in session.scalars(select(Decision).where(Decision.outcome == DecisionOutcome.REJECTED,
                                                           Decision.status != DecisionStatus.DECLINED)):
        submission = decision.submission
        assert decision.reason_codes, decision.id
        assessed = {a.criterion.code: a for a in submission.assessments}
        by_code = {c.code: c for c in decision.catalogue.criteria}
        for code in decision.reason_codes:
            criterion = by_code[code]
            assert criterion.required or (criterion.required_for_advertisers
                                          and submission.kind == SubmissionKind.ADVERTISER_APPLICATION), (decision.id, code)
            assert assessed[code].status == review.AssessmentStatus.NOT_MET, (decision.id, code)


def check_receipts_name_the_granting_decision(session, feed) -> None:
    """The trail says which request granted the verification in force (its last `verification.granted`);
    the receipt and the auditor's box both name that request's final decision."""
    granted_by = {}
    for event in session.scalars(select(AuditEvent).where(AuditEvent.action == "verification.granted",
                                                          AuditEvent.provider_id.in_([p.id for p in feed]))
                                 .order_by(AuditEvent.seq)):
        granted_by[event.provider_id] = int(event.reason.split("#")[1].split()[0])
    for provider in feed:
        decision = session.scalar(select(Decision).where(Decision.submission_id == granted_by[provider.id],
                                                         Decision.status == DecisionStatus.FINAL,
                                                         Decision.outcome == DecisionOutcome.APPROVED))
        named = listings.receipt(session, provider)["verification"]
        assert named["decision_id"] == decision.id, (provider.id, named, decision.id)
        assert named["decided_at"] == audit.jsonable(decision.decided_at), provider.id
        assert named["second_signoff"] is (decision.second_signoff_by_id is not None), provider.id
        assert named["verified_until"] == audit.jsonable(decision.verified_until), provider.id
        assert history.verification_basis(session, provider).decision.id == decision.id, provider.id


def check_revocations_end_only_by_signed_off_reinstatement(session) -> None:
    """After a revocation, verification returns only through a reinstatement decision with a second sign-off."""
    revoked: set[int] = set()
    for event in session.scalars(select(AuditEvent).where(
            AuditEvent.action.in_(("verification.revoked", "verification.granted"))).order_by(AuditEvent.seq)):
        if event.action == "verification.revoked":
            revoked.add(event.provider_id)
        elif event.provider_id in revoked:
            number = int(event.reason.split("#")[1].split()[0])
            submission = session.get(Submission, number)
            decision = session.scalar(select(Decision).where(Decision.submission_id == number,
                                                             Decision.status == DecisionStatus.FINAL))
            assert submission.kind == SubmissionKind.REINSTATEMENT, event.seq
            assert decision.second_signoff_by_id not in (None, decision.decided_by_id), event.seq
            revoked.discard(event.provider_id)


@pytest.fixture
def world(session, make_account):
    publish_catalogue(session)
    return World(session, make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD),
                 make_account(Role.PROVIDER))


TROUBLE = [  # sequences that always run, so the property is tested where it matters most
    [("list", 0), ("apply_to_advertise", 0), ("mark_advertiser", 0), ("expire", 0)],
    [("list", 0), ("apply_to_advertise", 0), ("mark_advertiser", 0), ("revoke", 0), ("reinstate", 0)],
    [("list", 0), ("apply_to_advertise", 0), ("mark_advertiser", 0), ("open_critical_finding", 0),
     ("resolve_findings", 0), ("apply_to_advertise", 0), ("mark_advertiser", 0)],
    [("list", 0), ("apply_to_advertise", 0), ("open_critical_finding", 0), ("mark_advertiser", 0)],
    [("list", 0), ("apply_to_advertise", 0), ("suspend_listing", 0), ("mark_advertiser", 0)],
    [("list", 0), ("open_update", 0), ("revoke", 0), ("approve_update", 0)],
    [("list", 1), ("open_update", 1), ("suspend_listing", 1), ("approve_update", 1)],
    [("list", 0), ("apply_to_advertise", 0), ("mark_advertiser", 0), ("end_advertising", 0),
     ("apply_to_advertise", 0), ("mark_advertiser", 0), ("suspend_advertising", 0)],
    # The receipt that named a later update instead of the reinstatement signed off after it.
    [("list", 0), ("expire", 0), ("decide_reinstatement", 0), ("open_update", 0), ("approve_update", 0),
     ("sign_off_reinstatement", 0)],
    [("reject_citing_optional", 0), ("list", 1), ("open_update", 1), ("reject_citing_optional", 1),
     ("reject_citing_required", 1), ("revoke", 1), ("decide_reinstatement", 1), ("reject_citing_optional", 1)],
]


def with_examples(test):
    for steps in TROUBLE:
        test = example(steps=steps)(test)
    return test


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@with_examples
@given(steps=st.lists(st.tuples(WEIGHTED, st.integers(0, 1)), min_size=3, max_size=16))
def test_random_operations_keep_the_listing_promise(world, make_provider, steps):
    session = world.session
    providers = [make_provider(levels_of_care=["outpatient"]) for _ in range(2)]
    for provider in providers:
        accounts.add_member(session, "system:test", world.member, provider)
    session.commit()
    for operation, which in steps:
        provider = providers[which]
        try:
            world.run(operation, provider)
            session.commit()
        except DomainError:
            session.rollback()  # a refused operation changes nothing; the invariants must still hold
        session.expire_all()
        check_invariants(session, providers)
