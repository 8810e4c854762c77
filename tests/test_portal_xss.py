"""Provider-supplied text is escaped on every portal page (and on the staff case page that shows it)."""
import io

from sqlalchemy import select

from backoffice.models import Document, Role
from backoffice.services import review
from tests.conftest import login
from tests.portal_helpers import PDF, provider_with_draft, reload, submit_data
from tests.review_helpers import in_review, publish_catalogue

SCRIPT = "<script>alert('xss')</script>"
IMG = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, IMG)


def _assert_inert(page: str, where: str):
    for payload in PAYLOADS:
        assert payload not in page, f"raw payload on {where}"
    assert "<script>alert" not in page and "<img src=x" not in page, where


def test_xss_payloads_in_provider_text_are_escaped_everywhere(client, session, make_account):
    publish_catalogue(session)
    owner, provider, draft = provider_with_draft(session, make_account, client, legal_name=f"Legal {SCRIPT}",
                                                 public_name=f"Public {IMG}")
    client.post(f"/portal/requests/{draft.id}/documents",
                data={"files": [(io.BytesIO(PDF), "<img src=x onerror=alert(1)>.pdf")]}, content_type="multipart/form-data")
    submitted = client.post(f"/portal/requests/{draft.id}/edit", data=submit_data(**{
        "legal_name": f"Legal {SCRIPT}", "public_name": f"Public {IMG}",
        "locations-0-street1": SCRIPT, "locations-0-city": IMG, "licences-0-licence_type": SCRIPT,
        "licences-0-number": IMG, "accreditations-0-body": SCRIPT, "principals-0-name": IMG, "signed_by": SCRIPT}))
    assert submitted.status_code == 302
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    review.request_info(session, researcher, submission, f"Question {SCRIPT}", None)
    session.commit()
    client.post(f"/portal/requests/{draft.id}/answer", data={"message": f"Answer {IMG}",
                                                             "version": reload(session, draft).row_version})

    pages = {"home": "/portal/", "organisation": f"/portal/organisations/{provider.id}",
             "request": f"/portal/requests/{draft.id}", "advertise": f"/portal/organisations/{provider.id}/advertise"}
    for where, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, where
        _assert_inert(response.get_data(as_text=True), where)
    request_page = client.get(pages["request"]).get_data(as_text=True)
    assert "&lt;script&gt;alert(" in request_page and "&#34;&gt;&lt;img src=x" in request_page

    # A form re-rendered with the payload (after a validation error) escapes it too.
    bad = client.post("/portal/organisations/new", data={"legal_name": SCRIPT, "public_name": ""})
    _assert_inert(bad.get_data(as_text=True), "new organisation form")

    # The download keeps the name as a header value only, and as an attachment.
    document = session.scalar(select(Document))
    download = client.get(f"/portal/documents/{document.id}")
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"

    staff = client.application.test_client()
    login(staff, researcher)
    _assert_inert(staff.get(f"/admin/review/case/{draft.id}").get_data(as_text=True), "staff case page")


def test_a_javascript_website_never_reaches_a_page_as_a_link(client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    response = client.post(f"/portal/requests/{draft.id}/edit", data=submit_data(website="javascript:alert(1)"))
    assert response.status_code == 400
    assert 'href="javascript:' not in response.get_data(as_text=True)
    assert "website" not in reload(session, draft).proposed
