"""The advertiser lifecycle: pending, active only through a signed-off review, suspended, resumed by review, ended."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from backoffice.models import (
    AdvertisingStatus,
    AuditEvent,
    CheckKind,
    DecisionOutcome,
    FindingSeverity,
    ListingStatus,
    Role,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.services import advertising, findings, listings, review
from backoffice.services.errors import DomainError, InvalidTransition, NotAllowed
from tests.conftest import login
from tests.review_helpers import POLICY, ad_copy, assess_all, in_review, provider_member, publish_catalogue


@pytest.fixture
def advertiser(session, make_account, make_provider):
    publish_catalogue(session)
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=200))
    member = provider_member(session, make_account, provider)
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)
    application = advertising.apply(session, member, provider, POLICY, ad_copy(provider))
    session.commit()
    assert provider.advertising_status == AdvertisingStatus.PENDING
    approve(session, researcher, lead, application)
    assert provider.advertising_status == AdvertisingStatus.ACTIVE
    return {"provider": provider, "member": member, "researcher": researcher, "lead": lead}


def approve(session, researcher, lead, application):
    in_review(session, researcher, application)
    assess_all(session, researcher, application)
    review.decide(session, researcher, application, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    review.sign_off(session, lead, application, POLICY, None)
    session.commit()


def feed_item(session, provider):
    page, _ = listings.page(session, listings.FeedQuery(), utcnow())
    copies = listings.advertisements(session, page, utcnow())
    return next((listings.listing(p, {}, copies) for p in page if p.id == provider.id), None)


def test_a_critical_finding_suspends_advertising_in_the_same_transaction(session, advertiser):
    provider = advertiser["provider"]
    assert feed_item(session, provider)["advertiser"] is True
    findings.open_or_update(session, "system:exclusion-check", provider, CheckKind.EXCLUSION, "leie:1",
                            FindingSeverity.CRITICAL, "Confirmed OIG exclusion", {})
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED  # before any commit
    session.commit()
    item = feed_item(session, provider)
    assert item is not None and item["advertiser"] is False
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.provider_id == provider.id)
                              .order_by(AuditEvent.seq.desc()).limit(2)).all()
    assert set(actions) == {"finding.opened", "advertising.suspended"}


def test_a_warning_escalated_to_critical_suspends_too(session, advertiser):
    provider = advertiser["provider"]
    findings.open_or_update(session, "system:website-check", provider, CheckKind.WEBSITE, "site",
                            FindingSeverity.WARNING, "Site slow", {})
    assert provider.advertising_status == AdvertisingStatus.ACTIVE
    findings.open_or_update(session, "system:website-check", provider, CheckKind.WEBSITE, "site",
                            FindingSeverity.CRITICAL, "Site gone", {})
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED


def test_resuming_after_a_suspension_needs_a_fresh_review(session, advertiser):
    provider, member = advertiser["provider"], advertiser["member"]
    advertising.suspend(session, advertiser["researcher"], provider, "claims in the advert are unproven")
    session.commit()
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED
    application = advertising.apply(session, member, provider, POLICY, ad_copy(provider))
    session.commit()
    assert provider.advertising_status == AdvertisingStatus.PENDING
    assert application.kind == SubmissionKind.ADVERTISER_APPLICATION
    assert "ADVERTISER_STANDARDS" in {c.code for c in review.applicable_criteria(session, application)}
    approve(session, advertiser["researcher"], advertiser["lead"], application)
    assert provider.advertising_status == AdvertisingStatus.ACTIVE


def test_manual_suspension_and_ending_need_a_reason_and_the_right_person(session, advertiser, make_account):
    provider = advertiser["provider"]
    with pytest.raises(DomainError, match="reason"):
        advertising.suspend(session, advertiser["researcher"], provider, "  ")
    with pytest.raises(NotAllowed):
        advertising.suspend(session, advertiser["member"], provider, "I want to")
    with pytest.raises(NotAllowed):
        advertising.end(session, make_account(Role.PROVIDER), provider, "not mine")
    advertising.end(session, advertiser["member"], provider, "we stop advertising")
    session.commit()
    assert provider.advertising_status == AdvertisingStatus.ENDED
    with pytest.raises(InvalidTransition):
        advertising.end(session, advertiser["member"], provider, "again")


def test_staff_suspend_advertising_from_the_provider_page(client, session, advertiser, make_account):
    provider = advertiser["provider"]
    login(client, make_account(Role.AUDITOR))
    assert client.post(f"/admin/review/provider/{provider.id}/advertising/suspend",
                       data={"reason": "x"}).status_code == 403
    client.post("/logout")
    login(client, advertiser["researcher"])
    missing = client.post(f"/admin/review/provider/{provider.id}/advertising/suspend", data={"reason": ""})
    assert missing.status_code == 400 and "Give a reason: it is kept in the audit trail." in missing.get_data(as_text=True)
    done = client.post(f"/admin/review/provider/{provider.id}/advertising/suspend", data={"reason": "complaint"})
    assert done.status_code == 302
    session.expire_all()
    assert provider.advertising_status == AdvertisingStatus.SUSPENDED
    assert client.get("/api/v1/listings").get_json()["listings"][0]["advertiser"] is False


def test_ending_advertising_on_a_stale_provider_is_a_conflict_not_a_crash(app, session, advertiser):
    from sqlalchemy.orm import Session as OrmSession

    from backoffice.extensions import db
    from backoffice.models import Account, Provider
    from backoffice.services.errors import Conflict

    provider_id = advertiser["provider"].id
    with OrmSession(db.engine) as one, OrmSession(db.engine) as two:
        first, second = one.get(Provider, provider_id), two.get(Provider, provider_id)
        review.suspend_listing(one, one.get(Account, advertiser["researcher"].id), first, "complaint")
        one.commit()
        with pytest.raises(Conflict):
            advertising.end(two, two.get(Account, advertiser["member"].id), second, "stop")
        two.rollback()
