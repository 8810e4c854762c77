"""A refused action is shown where the person is looking: a banner at the top (role="alert") that names the
problem and links to the refused form or field, a page that lands on that form without script (the form posts
to an address ending in its #fragment), the first field in error focused, and what was typed kept."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backoffice.models import (
    Assessment,
    AssessmentStatus,
    AuditEvent,
    CheckKind,
    Decision,
    FindingSeverity,
    ListingStatus,
    Role,
    VerificationStatus,
    utcnow,
)
from backoffice.services import advertising, findings, review
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import (
    POLICY,
    ad_copy,
    assess_all,
    assessment_post,
    in_review,
    provider_member,
    publish_catalogue,
    submitted,
)


def banner(page: str) -> dict:
    """The refusal banner as a person reads it, where it sits, and where its link goes."""
    opening = re.search(r'<div class="alert alert-danger" role="alert" id="refusal">', page)
    assert opening, "no refusal banner on the page"
    body = page[opening.end():page.index("</a>", page.index('id="refusal-link"'))]
    return {"what": visible_text(re.search(r'id="refusal-what">(.*?)</div>', body, re.S).group(1)),
            "problems": [html.unescape(p) for p in re.findall(r'<li class="refusal-problem">(.*?)</li>', body)],
            "link": re.search(r'href="#([^"]+)" id="refusal-link"', body).group(1),
            "at": opening.start()}


def form_of(page: str, inner_id: str) -> str:
    """The whole form that holds the element with this id (or is it)."""
    start = page.rindex("<form", 0, page.index(f'id="{inner_id}"'))
    return page[start:page.index("</form>", start)]


def element(page: str, element_id: str) -> str:
    """The opening tag of the element with this id."""
    return re.search(rf'<[^>]*\bid="{re.escape(element_id)}"[^>]*>', page).group(0)


def assert_at_the_top(page: str, found: dict) -> None:
    heading = re.search(r"<h[1-4][^>]*>", page[page.index("</nav>"):]).start() + page.index("</nav>")
    assert found["at"] < heading, "the banner is not above the page heading"


@pytest.fixture
def case(session, make_account, make_provider):
    publish_catalogue(session)
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, submitted(session, member, provider))
    return {"submission": submission, "researcher": researcher, "provider": provider, "member": member,
            "url": f"/admin/review/case/{submission.id}"}


def version(page: str) -> str:
    return re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)


def test_an_assessment_without_its_note_names_the_field_lands_on_the_form_and_keeps_what_was_typed(
        client, session, case):
    login(client, case["researcher"])
    page = client.get(case["url"]).get_data(as_text=True)
    form = form_of(page, "assess-LEGAL_ENTITY-status")
    assert f'action="{case["url"]}/assess#criteria"' in form
    events = session.scalar(select(func.count()).select_from(AuditEvent))

    response = client.post(f"{case['url']}/assess", data=assessment_post(page, {
        "LEGAL_ENTITY": {"status": "not_applicable", "source": "Virginia SCC registry",
                         "url": "https://scc.virginia.gov/entity/123"},
        "STATE_LICENCE": {"status": "met", "note": "Licence L-123 current until 2027"}}))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "Nothing was assessed: LEGAL_ENTITY was refused."
    assert found["problems"] == ["LEGAL_ENTITY, Note: Say in the note why this criterion does not apply."]
    assert found["link"] == "assess-LEGAL_ENTITY-note"
    assert_at_the_top(page, found)
    note = element(page, "assess-LEGAL_ENTITY-note")
    assert "autofocus" in note and "is-invalid" in note
    assert page.count("autofocus") == 1
    assert 'value="Virginia SCC registry"' in element(page, "assess-LEGAL_ENTITY-source")
    assert 'value="https://scc.virginia.gov/entity/123"' in element(page, "assess-LEGAL_ENTITY-url")
    status = page[page.index('id="assess-LEGAL_ENTITY-status"'):page.index("</select>", page.index('id="assess-LEGAL_ENTITY-status"'))]
    assert re.search(r'<option selected value="not_applicable">|<option value="not_applicable" selected>', status)
    # The other criterion typed in the same post is kept too, and was not saved either.
    assert "Licence L-123 current until 2027</textarea>" in page
    assert f'action="{case["url"]}/assess#criteria"' in form_of(page, "assess-LEGAL_ENTITY-status")
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert session.scalar(select(func.count()).select_from(Assessment)) == 0


def test_a_rejection_citing_no_criterion_names_the_criteria_field_and_keeps_the_notes(client, session, case):
    login(client, case["researcher"])
    page = client.get(case["url"]).get_data(as_text=True)
    assert f'action="{case["url"]}/decide#decide-form"' in element(page, "decide-form")
    response = client.post(f"{case['url']}/decide", data={
        "version": version(page), "outcome": "rejected", "provider_note": "Your licence has lapsed.",
        "internal_note": "checked with the state board"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "The decision was not recorded."
    assert found["problems"] == [
        "Criteria not met (for a rejection): A rejection must cite at least one criterion assessed as not met."]
    assert found["link"] == "reason_codes" and element(page, "reason_codes")
    assert_at_the_top(page, found)
    form = form_of(page, "decide-form")
    assert "Your licence has lapsed.</textarea>" in form and "checked with the state board</textarea>" in form
    assert re.search(r'<input checked[^>]*value="rejected">', form)
    assert session.scalar(select(func.count()).select_from(Decision)) == 0


@pytest.mark.parametrize("levels", [["outpatient"], ["otp"]], ids=["outpatient", "otp"])
def test_the_case_page_never_offers_an_optional_criterion_as_a_reason_and_a_forged_post_is_refused(
        client, session, make_account, make_provider, levels):
    publish_catalogue(session)
    provider = make_provider(levels_of_care=levels)
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, submitted(session, provider_member(session, make_account, provider),
                                                          provider, proposed={"levels_of_care": levels}))
    assess_all(session, researcher, submission, except_codes={"ACCREDITATION", "CONTACT_CONFIRMED"})
    assess_all(session, researcher, submission, status=AssessmentStatus.NOT_MET,
               except_codes={c.code for c in review.applicable_criteria(session, submission)}
               - {"ACCREDITATION", "CONTACT_CONFIRMED"})
    url = f"/admin/review/case/{submission.id}"
    login(client, researcher)
    page = client.get(url).get_data(as_text=True)
    offered = re.findall(r'name="reason_codes" type="checkbox" value="([A-Z_]+)"', form_of(page, "decide-form"))
    assert offered == ["CONTACT_CONFIRMED"]
    assert ("Assessed not met but optional for a listing, so recorded and never a reason to refuse it: "
            "ACCREDITATION.") in visible_text(form_of(page, "decide-form"))
    events = session.scalar(select(func.count()).select_from(AuditEvent))

    response = client.post(f"{url}/decide", data={"version": version(page), "outcome": "rejected",
                                                  "reason_codes": ["ACCREDITATION"], "provider_note": "Get accredited."})
    assert response.status_code == 400
    found = banner(response.get_data(as_text=True))
    assert found["what"] == "The decision was not recorded."
    assert found["problems"] == [
        "Criteria not met (for a rejection): ACCREDITATION is optional for a listing: recorded and shown, but never "
        "the reason to refuse one. Cite a required criterion assessed as not met, or approve."]
    assert found["link"] == "reason_codes"
    assert session.scalar(select(func.count()).select_from(Decision)) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events

    response = client.post(f"{url}/decide", data={"version": version(page), "outcome": "rejected",
                                                  "reason_codes": ["CONTACT_CONFIRMED"]})
    assert response.status_code == 302
    assert session.scalar(select(Decision.reason_codes)) == ["CONTACT_CONFIRMED"]


def test_an_approval_refused_for_an_open_finding_says_so_at_the_top(client, session, make_account, make_provider):
    publish_catalogue(session)
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=200))
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    application = advertising.apply(session, member, provider, POLICY, ad_copy(provider))
    session.commit()
    in_review(session, researcher, application)
    assess_all(session, researcher, application)
    findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, "website:404",
                            FindingSeverity.WARNING, "Website answers 404", {})
    session.commit()
    login(client, researcher)
    url = f"/admin/review/case/{application.id}"
    page = client.get(url).get_data(as_text=True)
    response = client.post(f"{url}/decide", data={"version": version(page), "outcome": "approved",
                                                  "internal_note": "all met"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "The decision was not recorded."
    assert found["problems"] == ["This provider has an open warning or critical finding; ADVERTISER_STANDARDS "
                                 "cannot be met until it is resolved or dismissed."]
    assert found["link"] == "decide-form"
    assert_at_the_top(page, found)
    assert "all met</textarea>" in form_of(page, "decide-form")


def test_a_claim_of_a_request_someone_holds_is_refused_in_the_banner(client, session, case, make_account):
    login(client, make_account(Role.RESEARCHER))
    page = client.get(case["url"]).get_data(as_text=True)
    assert f'action="{case["url"]}/claim#claim-form"' in element(page, "claim-form")
    response = client.post(f"{case['url']}/claim", data={"version": version(page)})
    assert response.status_code == 409
    found = banner(response.get_data(as_text=True))
    assert found["what"] == "The request was not claimed." and found["link"] == "claim-form"
    assert found["problems"] == ["Another researcher has already claimed this request."]


def test_a_provider_page_refusal_names_the_reason_field_of_the_refused_form(client, session, make_account,
                                                                           make_provider):
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED)
    login(client, make_account(Role.RESEARCHER))
    url = f"/admin/review/provider/{provider.id}"
    page = client.get(url).get_data(as_text=True)
    assert f'action="{url}/revoke#revoke-form"' in element(page, "revoke-form")
    response = client.post(f"{url}/revoke", data={"reason": "   "})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "The revocation was not asked for."
    assert found["problems"] == ["Reason: Give a reason: it is kept in the audit trail."]
    assert found["link"] == "revoke-form-reason" and "autofocus" in element(page, "revoke-form-reason")
    assert "autofocus" not in element(page, "suspend-form-reason")
    assert_at_the_top(page, found)


def test_a_findings_page_refusal_keeps_the_reason_and_lands_on_the_actions(client, session, make_account,
                                                                          make_provider):
    provider = make_provider()
    finding, _ = findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, "website:404",
                                         FindingSeverity.WARNING, "Website answers 404", {})
    session.commit()
    login(client, make_account(Role.RESEARCHER))
    url = f"/admin/finding-work/{finding.id}"
    page = client.get(url).get_data(as_text=True)
    assert f'formaction="{url}/resolve#finding-actions"' in page
    response = client.post(f"{url}/resolve", data={"reason": "ok", "row_version": finding.row_version})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "The finding was not resolved."
    assert found["problems"] == ["Give a reason (at least 3 characters): it is kept in the audit trail."]
    assert found["link"] == "reason" and "autofocus" in element(page, "reason")
    assert re.search(r">\s*ok</textarea>", page)
    assert_at_the_top(page, found)

    stale = client.post(f"{url}/dismiss", data={"reason": "another site entirely", "row_version": "junk"})
    assert stale.status_code == 409
    page = stale.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "The finding was not dismissed." and found["link"] == "finding-actions"
    assert re.search(r">\s*another site entirely</textarea>", page)
    session.refresh(finding)
    assert finding.state.value == "open"


def test_publishing_an_unchanged_catalogue_is_refused_in_a_banner(client, session, make_account):
    from tests.test_catalogue_editor import editor_form

    publish_catalogue(session)
    login(client, make_account(Role.RESEARCH_LEAD))
    page = client.get("/admin/catalogue/next").get_data(as_text=True)
    fields = editor_form(page)
    assert 'formaction="/admin/catalogue/publish#catalogue-editor"' in element(page, "publish")
    fields["notes"] = "Nothing new"
    response = client.post("/admin/catalogue/publish", data=fields)
    page = response.get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "Nothing was published."
    assert found["problems"] == ["This is the same as v1: nothing to publish"]
    assert found["link"] == "catalogue-editor"
    assert_at_the_top(page, found)


def test_a_wrong_freshness_limit_is_named_in_the_banner_and_focused(client, session, make_account):
    from tests.test_catalogue_editor import editor_form

    publish_catalogue(session)
    login(client, make_account(Role.RESEARCH_LEAD))
    fields = editor_form(client.get("/admin/catalogue/next").get_data(as_text=True))
    fields["notes"] = "NPI looked up quarterly"
    fields["criteria-4-freshness_days"] = "ninety"
    page = client.post("/admin/catalogue/publish", data=fields).get_data(as_text=True)
    found = banner(page)
    assert found["what"] == "Nothing was published."
    assert found["problems"] == ["NPI_ACTIVE, Freshness limit in days (empty: no limit): The freshness limit must "
                                 "be a whole number of days, or empty for no limit."]
    assert found["link"] == "criteria-4-freshness_days" and "autofocus" in element(page, "criteria-4-freshness_days")
