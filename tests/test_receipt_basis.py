"""The receipt names the decision that granted the verification in force, read as the auditor's box reads it."""
from __future__ import annotations

import re
from datetime import timedelta

from flask_migrate import downgrade, upgrade
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.models import DecisionOutcome, ListingStatus, Provider, Role, SubmissionKind, VerificationStatus, utcnow
from backoffice.services import audit, expiry, review
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted


def lapsed_then_reinstated_around_an_update(session, make_account, make_provider):
    """A provider lapses but stays listed; a reinstatement is decided (awaiting sign-off); an update of the
    provider is approved; then the reinstatement is signed off. Returns the people and both decisions."""
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)
    listing = in_review(session, researcher, submitted(session, member, provider))
    assess_all(session, researcher, listing)
    review.decide(session, researcher, listing, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    provider.verified_until = utcnow() - timedelta(seconds=1)  # time passes
    expiry.expire_lapsed(session, "system:test", utcnow())
    session.commit()
    assert (provider.listing_status, provider.verification_status) == (ListingStatus.LISTED, VerificationStatus.EXPIRED)

    reinstatement = in_review(session, researcher, review.open_reinstatement(session, researcher, provider, POLICY,
                                                                             "licence renewed"))
    assess_all(session, researcher, reinstatement)
    granting = review.decide(session, researcher, reinstatement, DecisionOutcome.APPROVED, [], "", "renewed licence",
                             POLICY, None)
    session.commit()
    update = in_review(session, researcher, submitted(session, member, provider, SubmissionKind.UPDATE,
                                                      {"phone": "434-555-0100"}))
    assess_all(session, researcher, update)
    later = review.decide(session, researcher, update, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    review.sign_off(session, lead, reinstatement, POLICY, None)
    session.commit()
    return {"provider": provider, "researcher": researcher, "lead": lead, "reinstatement": reinstatement,
            "granting": granting, "update_decision": later}


def test_a_reinstatement_signed_off_after_an_update_is_what_the_receipt_and_the_auditor_name(
        app, client, session, make_account, make_provider):
    publish_catalogue(session)
    story = lapsed_then_reinstated_around_an_update(session, make_account, make_provider)
    provider, researcher, lead = story["provider"], story["researcher"], story["lead"]
    granting, reinstatement = story["granting"], story["reinstatement"]
    auditor = make_account(Role.AUDITOR)

    body = client.get(f"/api/v1/listings/{provider.id}/verification").get_json()
    assert body["verification"]["second_signoff"] is True
    assert body["verification"]["decided_at"] == audit.jsonable(granting.decided_at)
    assert body["verification"]["decision_id"] == granting.id
    assert body["verification"]["decided_by"] == researcher.name
    assert body["verification"]["signed_off_by"] == lead.name
    assert body["verification"]["verified_until"] == audit.jsonable(granting.verified_until)
    assert {c["code"] for c in body["criteria"]} >= {"LEGAL_ENTITY", "CONTACT_CONFIRMED"}

    login(client, auditor)
    page = client.get(f"/admin/audit/provider/{provider.id}").get_data(as_text=True)
    box = " ".join(visible_text(re.search(r'id="verification-basis">(.*?)</div></div>', page, re.S).group(1)).split())
    assert f"Approved request #{reinstatement.id} (reinstatement)" in box
    assert f"by {researcher.name}" in box and f"signed off by {lead.name} on" in box
    assert session.get(Provider, provider.id).verified_decision_id == granting.id


def test_the_migration_fills_the_granting_decision_from_the_audit_trail(app, session, make_account, make_provider):
    publish_catalogue(session)
    story = lapsed_then_reinstated_around_an_update(session, make_account, make_provider)
    plain = make_provider()
    researcher = story["researcher"]
    listing = in_review(session, researcher, submitted(session, provider_member(session, make_account, plain), plain))
    assess_all(session, researcher, listing)
    first = review.decide(session, researcher, listing, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    untraced = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=utcnow(), verified_until=utcnow() + timedelta(days=30))
    session.commit()
    ids = {"story": story["provider"].id, "plain": plain.id, "untraced": untraced.id}
    granting, update_decision, first = story["granting"].id, story["update_decision"].id, first.id
    db.session.remove()
    downgrade(revision="1aa26a253f06")
    upgrade()
    filled = dict(db.session.execute(select(Provider.id, Provider.verified_decision_id)).all())
    assert filled[ids["story"]] == granting != update_decision
    assert filled[ids["plain"]] == first
    assert filled[ids["untraced"]] is None
    assert audit.verify_chain(db.session).ok
