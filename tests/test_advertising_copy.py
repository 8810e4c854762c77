"""An advertiser application's copy: asked for on the portal form, reviewed beside ADVERTISER_STANDARDS, which it
and ACCREDITATION stand in the way of, approved with the application, and described by the feed."""
from __future__ import annotations

import html
import re
from contextlib import contextmanager
from datetime import timedelta

import jsonschema
import pytest
from sqlalchemy import event, func, select

from backoffice.api.openapi import document
from backoffice.models import (
    AdvertisingCopy,
    AdvertisingStatus,
    Assessment,
    AssessmentStatus,
    AuditEvent,
    DecisionOutcome,
    ListingStatus,
    Role,
    Submission,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.services import advertising, advertising_copy, review, submissions
from backoffice.services.errors import DomainError
from backoffice.services.review import Evidence
from tests.conftest import login
from tests.portal_helpers import listed_and_verified, section_text
from tests.review_helpers import (
    POLICY,
    ad_copy,
    ad_form,
    assessment_post,
    in_review,
    provider_member,
    publish_catalogue,
)

STANDARDS_NO_COPY = "ADVERTISER_STANDARDS cannot be met: the application has no advertising copy."
STANDARDS_NO_ACCREDITATION = "ADVERTISER_STANDARDS cannot be met: ACCREDITATION is not yet assessed as met."
STANDARDS_ACCREDITATION_NOT_MET = "ADVERTISER_STANDARDS cannot be met: ACCREDITATION is assessed not met."


def counts(session) -> tuple[int, int, int]:
    session.expire_all()
    return (session.scalar(select(func.count()).select_from(Submission)
                           .where(Submission.kind == SubmissionKind.ADVERTISER_APPLICATION)),
            session.scalar(select(func.count()).select_from(AdvertisingCopy)),
            session.scalar(select(func.count()).select_from(AuditEvent)))


def field_errors(page: str) -> list[str]:
    return [html.unescape(m).strip() for m in re.findall(r'invalid-feedback d-block">([^<]+)<', page)]


def field_value(page: str, name: str) -> str:
    """What the form shows in a field: an input's value or a textarea's text."""
    textarea = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    if textarea:
        return html.unescape(textarea.group(1)).lstrip("\r\n")
    tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', page).group(0)
    value = re.search(r'value="([^"]*)"', tag)
    return html.unescape(value.group(1)) if value else ""


@pytest.fixture
def applicant(client, session, make_account):
    """A listed, verified provider signed in on the portal (its website https://harbor.example.org)."""
    account, provider = listed_and_verified(session, make_account, client)
    assert provider.website == "https://harbor.example.org"
    return {"account": account, "provider": provider, "url": f"/portal/organisations/{provider.id}/advertise"}


# -- the portal form ------------------------------------------------------------------------------


def test_the_application_form_sends_the_copy_with_the_application(client, session, applicant):
    provider = applicant["provider"]
    page = client.get(applicant["url"]).get_data(as_text=True)
    for label in ("Headline", "Text of the advertisement", "Claims the advertisement makes (one per line)",
                  "Landing page address"):
        assert f">{label}</label>" in page
    assert "on your own website as listed in the directory, harbor.example.org, or a subdomain of it" in \
        section_text(page, "landing-hint")
    data = ad_form(provider, claims="Accredited by CARF since 2019\n\n  Admissions open 24 hours  \n",
                   landing_url="https://intake.harbor.example.org/start?from=directory")
    applied = client.post(applicant["url"], data=data)
    assert applied.status_code == 302, field_errors(applied.get_data(as_text=True))
    session.expire_all()
    application = session.scalar(select(Submission).where(Submission.kind == SubmissionKind.ADVERTISER_APPLICATION))
    copy = session.get(AdvertisingCopy, application.id)
    assert (copy.provider_id, copy.headline, copy.body, copy.claims, copy.landing_url, copy.approved_at) == (
        provider.id, "Recovery close to home", "Residential and outpatient treatment; call admissions.",
        ["Accredited by CARF since 2019", "Admissions open 24 hours"],
        "https://intake.harbor.example.org/start?from=directory", None)
    event_row = session.scalar(select(AuditEvent).where(AuditEvent.action == "advertising.copy_submitted"))
    assert (event_row.entity_type, event_row.entity_id, event_row.provider_id) == (
        "submission", str(application.id), provider.id)
    assert event_row.after["claims"] == ["Accredited by CARF since 2019", "Admissions open 24 hours"]

    request_page = client.get(applied.headers["Location"]).get_data(as_text=True)
    shown = section_text(request_page, "advertisement-copy")
    assert "Headline Recovery close to home" in shown
    assert "Claims Accredited by CARF since 2019 Admissions open 24 hours" in shown
    assert "Landing page https://intake.harbor.example.org/start?from=directory" in shown
    assert "The research team checks this copy, and each claim in it" in request_page


LONG = "x" * 121
WRONG_INPUTS = [
    ("headline", "", "Write the headline of your advertisement."),
    ("headline", LONG, "Keep the headline to at most 120 characters (it has 121)."),
    ("text", "   ", "Write the text of your advertisement."),
    ("text", "y" * 1001, "Keep the text to at most 1,000 characters (it has 1,001)."),
    ("claims", "\n".join(f"Claim number {n}" for n in range(11)),
     "List at most 10 claims (you listed 11); keep the ones that matter most."),
    ("claims", "Fine claim\n" + "z" * 201, "Claim 2 is 201 characters; keep each claim to at most 200."),
    ("claims", "Open 24 hours\nopen 24 hours", "The same claim is listed twice; list each claim once."),
    ("landing_url", "", "Give the address of the page your advertisement links to."),
    ("landing_url", "javascript:alert(1)",
     "Enter the full address of the landing page, starting with https:// or http://."),
    ("landing_url", "ftp://harbor.example.org/offer",
     "Enter the full address of the landing page, starting with https:// or http://."),
    ("landing_url", "harbor.example.org/offer",
     "Enter the full address of the landing page, starting with https:// or http://."),
    ("landing_url", "https://admin:secret@harbor.example.org/",
     "The landing page address must not contain a user name or password."),
    ("landing_url", "https://harbor.example.org/" + "a" * 480,
     "Keep the landing page address to at most 500 characters."),
    ("landing_url", "https://harbor.example.org/our offer", "The landing page address must not contain spaces."),
    ("landing_url", "https://leads.example.com/harbor",
     "The landing page must be on your own website, harbor.example.org (or a subdomain of it), as listed in the "
     "directory; leads.example.com is not."),
    ("landing_url", "https://harbor.example.org.leads.example.com/",
     "The landing page must be on your own website, harbor.example.org (or a subdomain of it), as listed in the "
     "directory; harbor.example.org.leads.example.com is not."),
    ("landing_url", "https://notharbor.example.org/",
     "The landing page must be on your own website, harbor.example.org (or a subdomain of it), as listed in the "
     "directory; notharbor.example.org is not."),
]


@pytest.mark.parametrize(("name", "value", "message"), WRONG_INPUTS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG_INPUTS)])
def test_wrong_copy_is_refused_beside_its_field_keeping_what_was_typed(client, session, applicant, name, value,
                                                                       message):
    provider = applicant["provider"]
    before = counts(session)
    data = ad_form(provider, **{"headline": "Recovery <em>close</em> to home", name: value})
    response = client.post(applicant["url"], data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert field_errors(page) == [message]
    # The message sits under its own field.
    control = re.search(rf'name="{name}".*?(?=<div class="form-group">|</fieldset>)', page, re.S).group(0)
    assert html.escape(message, quote=False) in control or message in html.unescape(control)
    assert "Some fields need correcting; nothing was sent." in page
    for field in ("headline", "text", "claims", "landing_url"):
        typed = data[field]
        assert field_value(page, field) == typed, field
    assert "<em>close</em>" not in page
    assert counts(session) == before


def test_the_service_refuses_wrong_copy_itself_and_writes_nothing(session, make_account, make_provider):
    publish_catalogue(session)
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=200))
    member = provider_member(session, make_account, provider)
    before = counts(session)
    for copy, field in ((ad_copy(provider, headline=""), "headline"),
                        (ad_copy(provider, claims=("same", "Same")), "claims"),
                        (ad_copy(provider, landing_url="javascript:alert(1)//harbor1.example.org"), "landing_url")):
        with pytest.raises(DomainError) as refused:
            advertising.apply(session, member, provider, POLICY, copy)
        assert refused.value.field == field
        session.rollback()
    assert counts(session) == before
    provider.website = None
    session.commit()
    with pytest.raises(DomainError, match="Your listing has no website") as refused:
        advertising.apply(session, member, provider, POLICY, ad_copy(provider, landing_url="https://harbor1.example.org/"))
    assert refused.value.field == "landing_url"


def test_a_provider_that_cannot_apply_is_refused_whatever_the_form_holds(client, session, applicant):
    assert client.post(applicant["url"], data=ad_form(applicant["provider"])).status_code == 302
    before = counts(session)
    again = client.post(applicant["url"], data=ad_form(applicant["provider"]))
    assert again.status_code == 409
    assert "You cannot apply right now. Your application #" in again.get_data(as_text=True)
    assert counts(session) == before


# -- the research side ----------------------------------------------------------------------------


@pytest.fixture
def application(session, make_account, make_provider):
    """An advertiser application with copy, claimed by a researcher."""
    publish_catalogue(session)
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=200),
                             public_name="Harbor <b>Recovery</b>")
    member = provider_member(session, make_account, provider)
    researcher, lead = make_account(Role.RESEARCHER), make_account(Role.RESEARCH_LEAD)
    submission = advertising.apply(session, member, provider, POLICY, ad_copy(
        provider, claims=("Accredited by CARF since 2019", "Rated <script>alert(1)</script> best"),
        landing_url="https://harbor1.example.org/admissions"))
    session.commit()
    in_review(session, researcher, submission)
    return {"submission": submission, "provider": provider, "researcher": researcher, "lead": lead}


def case_page(client, submission) -> str:
    response = client.get(f"/admin/review/case/{submission.id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def version(page: str) -> str:
    return re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)


def assess(client, submission, code, status, note="checked"):
    """One criterion assessed through the case page's assessment form, the others posted as shown."""
    page = case_page(client, submission)
    return client.post(f"/admin/review/case/{submission.id}/assess", data=assessment_post(
        page, {code: {"status": status, "note": note, "source": "research team"}}))


def test_the_case_page_shows_the_copy_beside_the_standards_and_what_stands_in_the_way(client, session, application):
    submission = application["submission"]
    login(client, application["researcher"])
    page = case_page(client, submission)
    # Once, at the head of the criteria, before they are assessed.
    assert page.count('id="advertising-copy"') == 1
    assert page.index('id="criteria"') < page.index('id="advertising-copy"') < page.index('id="assess-form"')
    shown = section_text(page, "advertising-copy")
    assert "Headline Recovery close to home" in shown
    assert "Claims to check Accredited by CARF since 2019 Rated <script>alert(1)</script> best" in shown
    assert "<script>alert(1)</script>" not in page
    link = re.search(r'<a [^>]*>https://harbor1\.example\.org/admissions</a>', page).group(0)
    assert 'href="https://harbor1.example.org/admissions"' in link and 'rel="noopener noreferrer"' in link
    assert "every claim in the proposed advertising is accurate" in shown  # the criterion's guidance beside it
    assert section_text(page, "advertiser-standards-problems") == STANDARDS_NO_ACCREDITATION

    assert assess(client, submission, "ACCREDITATION", "not_met", "no accreditation found").status_code == 302
    assert section_text(case_page(client, submission), "advertiser-standards-problems") == \
        STANDARDS_ACCREDITATION_NOT_MET
    assert assess(client, submission, "ACCREDITATION", "met", "CARF record C-9").status_code == 302
    assert 'id="advertiser-standards-problems"' not in case_page(client, submission)


def test_a_listing_request_has_no_copy_section(client, session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    listing = submissions.create_draft(session, member, provider, SubmissionKind.NEW_LISTING, {"phone": "434-555-0100"})
    review.submit(session, member, listing, POLICY)
    session.commit()
    login(client, make_account(Role.RESEARCHER))
    page = case_page(client, listing)
    assert 'id="advertising-copy"' not in page and "ADVERTISER_STANDARDS cannot be met" not in page


def test_advertiser_standards_are_refused_as_met_while_accreditation_is_not_met(client, session, application):
    submission = application["submission"]
    login(client, application["researcher"])
    events = counts(session)[2]
    refused = assess(client, submission, "ADVERTISER_STANDARDS", "met", "copy checked")
    assert refused.status_code == 400
    assert STANDARDS_NO_ACCREDITATION in html.unescape(refused.get_data(as_text=True))
    assert session.scalar(select(func.count()).select_from(Assessment)
                          .where(Assessment.submission_id == submission.id)) == 0
    assert counts(session)[2] == events
    # Not met is a verdict the researcher may always record.
    assert assess(client, submission, "ADVERTISER_STANDARDS", "not_met", "claims unproven").status_code == 302
    assert assess(client, submission, "ACCREDITATION", "met", "CARF record C-9").status_code == 302
    assert assess(client, submission, "ADVERTISER_STANDARDS", "met", "every claim checked").status_code == 302


def test_advertiser_standards_are_refused_as_met_without_copy(client, session, make_account, make_provider):
    """An application without copy (one made before copy was asked for): the page says so, the rule refuses."""
    publish_catalogue(session)
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=200))
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    bare = submissions.create_draft(session, member, provider, SubmissionKind.ADVERTISER_APPLICATION, {})
    review.submit(session, member, bare, POLICY)
    session.commit()
    in_review(session, researcher, bare)
    review.record_assessment(session, researcher, bare, "ACCREDITATION", AssessmentStatus.MET,
                             Evidence(note="CARF"), None)
    session.commit()
    login(client, researcher)
    page = case_page(client, bare)
    assert section_text(page, "advertiser-standards-problems") == STANDARDS_NO_COPY
    assert "The application has no advertising copy." in section_text(page, "advertising-copy")
    with pytest.raises(DomainError, match=re.escape(STANDARDS_NO_COPY)) as refused:
        review.record_assessment(session, researcher, bare, "ADVERTISER_STANDARDS", AssessmentStatus.MET,
                                 Evidence(note="looks fine"), None)
    assert refused.value.field == "status"


def assess_all_met(session, researcher, submission):
    for criterion in review.applicable_criteria(session, submission):
        review.record_assessment(session, researcher, submission, criterion.code, AssessmentStatus.MET,
                                 Evidence(note=f"checked {criterion.code}", source="test"), None)
    session.commit()


def test_approval_is_refused_when_accreditation_changes_after_the_standards_were_met(session, application):
    submission, researcher = application["submission"], application["researcher"]
    assess_all_met(session, researcher, submission)
    review.record_assessment(session, researcher, submission, "ACCREDITATION", AssessmentStatus.NOT_MET,
                             Evidence(note="accreditation lapsed"), None)
    session.commit()
    with pytest.raises(DomainError, match=re.escape("Cannot approve: ")) as refused:
        review.require_approvable(session, submission)
    assert "ACCREDITATION" in str(refused.value)


def test_approval_sets_the_copy_in_force_and_the_feed_describes_it(client, session, application, make_provider):
    submission, provider = application["submission"], application["provider"]
    assess_all_met(session, application["researcher"], submission)
    review.decide(session, application["researcher"], submission, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    assert session.get(AdvertisingCopy, submission.id).approved_at is None  # waiting for the sign-off
    review.sign_off(session, application["lead"], submission, POLICY, None)
    session.commit()
    copy = session.get(AdvertisingCopy, submission.id)
    assert provider.advertising_status == AdvertisingStatus.ACTIVE and copy.approved_at is not None
    approved = session.scalar(select(AuditEvent).where(AuditEvent.action == "advertising.copy_approved"))
    assert (approved.entity_type, approved.entity_id, approved.actor) == (
        "submission", str(submission.id), f"user:{application['lead'].id}")
    plain = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                          verified_at=utcnow(), verified_until=utcnow() + timedelta(days=100))

    response = client.get("/api/v1/listings")
    items = {item["id"]: item for item in response.get_json()["listings"]}
    day = advertising_copy.approved_on(copy.approved_at)
    expected = (f"Advertiser: Harbor <b>Recovery</b> pays to advertise. Its approved advertisement, 'Recovery close "
                f"to home', links to https://harbor1.example.org/admissions; the research team verified this "
                f"provider and reviewed the advertisement on {day}. Advertising never affects order or verification.")
    assert items[provider.id]["advertiser"] is True
    assert items[provider.id]["advertiser_disclosure"] == expected
    advertisement = items[provider.id]["advertisement"]
    assert {k: v for k, v in advertisement.items() if k != "approved_at"} == {
        "headline": "Recovery close to home", "text": "Residential and outpatient treatment; call admissions.",
        "claims": ["Accredited by CARF since 2019", "Rated <script>alert(1)</script> best"],
        "landing_url": "https://harbor1.example.org/admissions"}
    assert advertisement["approved_at"].startswith(copy.approved_at.strftime("%Y-%m-%dT%H:%M"))
    assert b"<script>" not in response.data  # the feed's bytes stay inert in HTML
    assert items[plain.id]["advertiser"] is False
    assert items[plain.id]["advertiser_disclosure"] is None and items[plain.id]["advertisement"] is None
    jsonschema.validate(response.get_json(), {"$ref": "#/components/schemas/ListingPage",
                                              "components": document()["components"]},
                        cls=jsonschema.Draft202012Validator)

    receipt = client.get(f"/api/v1/listings/{provider.id}/verification").get_json()
    assert receipt["advertiser_disclosure"] == expected and receipt["advertisement"] == advertisement
    assert client.get(f"/api/v1/listings/{plain.id}/verification").get_json()["advertisement"] is None

    # Suspended, the provider is not an advertiser: no disclosure, no advertisement, though the copy stays approved.
    advertising.suspend(session, application["researcher"], provider, "claims under review")
    session.commit()
    item = next(i for i in client.get("/api/v1/listings").get_json()["listings"] if i["id"] == provider.id)
    assert (item["advertiser"], item["advertiser_disclosure"], item["advertisement"]) == (False, None, None)


@contextmanager
def statements_on(session, table: str):
    """The SQL statements that read `table` while the block runs."""
    seen: list[str] = []
    engine = session.get_bind()

    def note(conn, cursor, statement, parameters, context, executemany):
        if re.search(rf"\b{table}\b", statement):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def test_the_feed_reads_a_page_of_copies_in_one_query_and_shows_the_latest_approved(client, session, make_provider,
                                                                                      make_account):
    now = utcnow()
    advertisers = [make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                                 verified_at=now, verified_until=now + timedelta(days=100),
                                 advertising_status=AdvertisingStatus.ACTIVE) for _ in range(5)]
    author = make_account(Role.PROVIDER)
    for index, provider in enumerate(advertisers):
        for age, headline in ((40, "Old advert"), (3, f"Current advert {index}"), (0, "Still in review")):
            draft = submissions.create_draft(session, author, provider, SubmissionKind.ADVERTISER_APPLICATION, {})
            session.flush()
            session.add(AdvertisingCopy(
                submission_id=draft.id, provider_id=provider.id, headline=headline, body="text", claims=[],
                landing_url=f"https://{advertising_copy.website_host(provider.website)}/",
                approved_at=None if headline == "Still in review" else now - timedelta(days=age)))
    session.commit()
    with statements_on(session, "advertising_copy") as seen:
        items = {item["id"]: item for item in client.get("/api/v1/listings").get_json()["listings"]}
    assert len(seen) == 1
    for index, provider in enumerate(advertisers):
        assert items[provider.id]["advertisement"]["headline"] == f"Current advert {index}"
        assert f"'Current advert {index}'" in items[provider.id]["advertiser_disclosure"]
    # A page without advertisers asks nothing about copy.
    for provider in advertisers:
        provider.advertising_status = AdvertisingStatus.ENDED
    session.commit()
    with statements_on(session, "advertising_copy") as seen:
        assert client.get("/api/v1/listings").status_code == 200
    assert seen == []
