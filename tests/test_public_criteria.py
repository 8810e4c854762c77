"""The listing criteria, published for anyone: the page, the links to it, and the decision e-mail."""
from __future__ import annotations

import json
from datetime import timezone
from zoneinfo import ZoneInfo

from backoffice.models import AssessmentStatus, DecisionOutcome, Role
from backoffice.services import criteria, review
from backoffice.services.review import Evidence, ReviewPolicy
from tests.portal_helpers import (
    definitions,
    latest_mail,
    listed_and_verified,
    provider_with_draft,
    reload,
    section_text,
    submit_data,
)
from tests.review_helpers import CATALOGUE, assess_all, in_review, publish_catalogue

DEFINITION = json.loads(CATALOGUE.read_text(encoding="utf-8"))
BY_CODE = {item["code"]: item for item in DEFINITION["criteria"]}


def test_anyone_reads_the_current_catalogue_without_signing_in(client, session):
    catalogue = publish_catalogue(session)
    page = client.get("/criteria").get_data(as_text=True)
    # Signed out, a day is read in DISPLAY_TIME_ZONE (America/New_York by default), without a leading zero.
    published = catalogue.published_at
    local = (published if published.tzinfo else published.replace(tzinfo=timezone.utc)).astimezone(
        ZoneInfo("America/New_York"))
    assert section_text(page, "catalogue-version").startswith(
        f"Catalogue version 1, published {local.day} {local:%b %Y}.")
    for item in DEFINITION["criteria"]:
        shown = section_text(page, item["code"])
        assert shown.startswith(f"{item['title']} {item['code']}")
        described = definitions(page, item["code"])
        assert described["What is checked"] == item["guidance"]
        assert described["Evidence needed"] == item["evidence"]

    # Required or optional, for a listing and for advertisers, and the levels of care in words.
    assert definitions(page, "LEGAL_ENTITY") | {"What is checked": "", "Evidence needed": ""} == {
        "For a listing": "Required", "For advertisers": "Required", "Applies to": "Every provider",
        "What is checked": "", "Evidence needed": ""}
    assert definitions(page, "NPI_ACTIVE")["Evidence kept for"] == \
        "90 days: older evidence is checked again at a later review"
    assert definitions(page, "ACCREDITATION")["For a listing"] == "Optional"
    assert definitions(page, "ACCREDITATION")["For advertisers"] == "Required"
    assert definitions(page, "PRESCRIBING")["Applies to"] == "Providers offering Opioid treatment program (OTP / MOUD)"
    advertisers = definitions(page, "ADVERTISER_STANDARDS")
    assert advertisers["For a listing"] == "Does not apply: advertisers only"
    assert advertisers["For advertisers"] == "Required (advertisers only)"
    assert advertisers["Applies to"] == "Every provider that applies to advertise"
    assert "otp" not in section_text(page, "criteria").split()


def test_the_page_shows_the_newest_version(client, session):
    publish_catalogue(session)
    changed = {**DEFINITION, "criteria": [{**BY_CODE["LEGAL_ENTITY"], "title": "Registered and active legal entity"},
                                          *DEFINITION["criteria"][1:]]}
    criteria.publish(session, "system:test", changed)
    session.commit()
    page = client.get("/criteria").get_data(as_text=True)
    assert section_text(page, "catalogue-version").startswith("Catalogue version 2,")
    assert section_text(page, "LEGAL_ENTITY").startswith("Registered and active legal entity LEGAL_ENTITY")
    assert "Registered legal entity where it offers services" not in page


def test_with_no_catalogue_published_the_page_says_so(client):
    response = client.get("/criteria")
    assert response.status_code == 200
    assert section_text(response.get_data(as_text=True), "no-catalogue").startswith(
        "No listing criteria have been published yet")


def test_signed_out_visitors_and_providers_find_the_criteria_in_the_navigation(client, session, make_account):
    assert 'href="/criteria">Listing criteria</a>' in client.get("/login").get_data(as_text=True)
    account, provider, draft = provider_with_draft(session, make_account, client)
    assert 'href="/criteria">Listing criteria</a>' in client.get("/portal/").get_data(as_text=True)


def test_the_request_form_links_to_the_criteria(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    page = client.get(f"/portal/requests/{draft.id}/edit").get_data(as_text=True)
    assert section_text(page, "criteria-link").startswith(
        "The research team checks your request against the listing criteria")
    assert '<a href="/criteria">listing criteria</a>' in page


def _rejected(app, client, session, make_account):
    publish_catalogue(session)
    account, provider, draft = provider_with_draft(session, make_account, client)
    assert client.post(f"/portal/requests/{draft.id}/edit", data=submit_data()).status_code == 302
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    assess_all(session, researcher, submission, except_codes=("STATE_LICENCE", "CONTACT_CONFIRMED"))
    for code in ("STATE_LICENCE", "CONTACT_CONFIRMED"):
        review.record_assessment(session, researcher, submission, code, AssessmentStatus.NOT_MET,
                                 Evidence(note="not met"), None)
    review.decide(session, researcher, submission, DecisionOutcome.REJECTED, ["STATE_LICENCE", "CONTACT_CONFIRMED"],
                  "Renew the licence and give us a number that reaches you.", "internal",
                  ReviewPolicy.from_config(app.config), None)
    session.commit()
    return account, submission


def test_a_rejection_links_each_criterion_not_met_to_the_published_criteria(app, client, session, make_account):
    account, submission = _rejected(app, client, session, make_account)
    page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    assert '<a href="/criteria#STATE_LICENCE"><strong>STATE_LICENCE</strong></a>' in page
    assert section_text(page, "criteria-link") == \
        "What each criterion asks for and the evidence it needs: the listing criteria."
    assert 'href="/criteria">the listing criteria</a>' in page


def test_the_decision_mail_names_each_criterion_and_links_to_the_criteria_on_the_public_address(
        app, client, session, make_account):
    app.config["PUBLIC_BASE_URL"] = "https://directory.example.org/"
    account, submission = _rejected(app, client, session, make_account)
    body = latest_mail(session, account.email, "decided").body
    assert body == (
        f"Your request #{submission.id} (new listing) was not approved.\n\n"
        "Criteria not met:\n"
        f"- CONTACT_CONFIRMED: {BY_CODE['CONTACT_CONFIRMED']['title']}\n"
        f"- STATE_LICENCE: {BY_CODE['STATE_LICENCE']['title']}\n\n"
        "Renew the licence and give us a number that reaches you.\n\n"
        "What each criterion asks for and the evidence it needs: https://directory.example.org/criteria")
    assert client.get("/criteria").status_code == 200  # the address the mail gives is the page


def test_an_approval_mail_has_no_criteria_link(app, client, session, make_account):
    account, provider = listed_and_verified(session, make_account, client)
    body = latest_mail(session, account.email, "decided").body
    assert body.startswith("Your request #") and "was approved." in body and "/criteria" not in body
