"""Object-level access: a provider reaches only its own organisations, requests and documents."""
import io

import pytest
from flask import url_for
from sqlalchemy import func, select

from backoffice.models import AuditEvent, Document, Notification, Role, Submission, SubmissionState
from backoffice.services import documents as document_store
from tests.conftest import login
from tests.portal_helpers import PDF, provider_with_draft, reload, submit_data

# Every portal endpoint that takes an id, with how a request to it is made.
ID_ROUTES = {
    "portal.organisation": ("GET", "provider"),
    "portal.start_request": ("POST", "provider"),
    "portal.advertise": ("GET", "provider"),
    "portal.organisation_time_zone": ("POST", "provider"),
    "portal.request_page": ("GET", "submission"),
    "portal.edit_request": ("GET", "submission"),
    "portal.upload": ("POST", "submission"),
    "portal.answer": ("POST", "submission"),
    "portal.withdraw": ("POST", "submission"),
    "portal.document": ("GET", "document"),
}


def _victim_and_intruder(session, make_account, client):
    victim, victim_provider, victim_draft = provider_with_draft(session, make_account, legal_name="Victim LLC",
                                                               public_name="Victim Centre")
    victim_client = client.application.test_client()
    login(victim_client, victim)
    victim_client.post(f"/portal/requests/{victim_draft.id}/documents",
                       data={"files": [(io.BytesIO(PDF), "victim-licence.pdf")]}, content_type="multipart/form-data")
    intruder, intruder_provider, _ = provider_with_draft(session, make_account, client, legal_name="Intruder LLC",
                                                         public_name="Intruder Centre")
    document = session.scalar(select(Document).where(Document.provider_id == victim_provider.id))
    return {"provider": victim_provider.id, "submission": victim_draft.id, "document": document.id}


def _posts():
    """Plausible bodies for each POST, as the victim's own forms would send them."""
    return {
        "portal.start_request": {},
        "portal.organisation_time_zone": {"time_zone": "Asia/Tokyo"},
        "portal.upload": {"files": [(io.BytesIO(PDF), "mine.pdf")]},
        "portal.answer": {"message": "hijacked", "version": "", "files": [(io.BytesIO(PDF), "mine.pdf")]},
        "portal.withdraw": {"reason": "hijacked", "confirm": "y"},
    }


def test_the_matrix_covers_every_portal_route_with_an_id(app):
    with_ids = {rule.endpoint for rule in app.url_map.iter_rules()
                if rule.endpoint.startswith("portal.") and rule.arguments}
    assert with_ids == set(ID_ROUTES)


def test_a_provider_gets_404_on_every_url_of_another_provider_and_changes_nothing(app, client, session,
                                                                                   make_account):
    ids = _victim_and_intruder(session, make_account, client)
    events_before = session.scalar(select(func.count()).select_from(AuditEvent))
    bodies = _posts()
    for endpoint, (method, kind) in ID_ROUTES.items():
        arg = {"provider": "provider_id", "submission": "submission_id", "document": "document_id"}[kind]
        with app.test_request_context():
            url = url_for(endpoint, **{arg: ids[kind]})
        if method == "GET":
            response = client.get(url)
        else:
            response = client.post(url, data=bodies[endpoint], content_type="multipart/form-data")
        assert response.status_code == 404, f"{method} {url}: {response.status_code}"
        assert b"victim" not in response.data.lower(), url
        if endpoint == "portal.advertise":
            assert client.post(url).status_code == 404
        if endpoint == "portal.edit_request":
            assert client.post(url, data=submit_data()).status_code == 404
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events_before
    victim_draft = session.get(Submission, ids["submission"])
    assert victim_draft.state == SubmissionState.DRAFT and "npi" not in victim_draft.proposed
    assert session.scalar(select(func.count()).select_from(Document)) == 1


def test_another_providers_organisations_do_not_appear_on_my_pages(client, session, make_account):
    _victim_and_intruder(session, make_account, client)
    for url in ("/portal/", "/portal/organisations/new"):
        page = client.get(url).get_data(as_text=True)
        assert "Victim" not in page
    assert "Intruder Centre" in client.get("/portal/").get_data(as_text=True)


def test_services_refuse_a_non_member_even_if_a_view_forgot_to_check(session, make_account):
    from backoffice.services import advertising, listing_requests
    from backoffice.services.errors import NotAllowed
    from tests.review_helpers import POLICY, ad_copy

    victim, provider, draft = provider_with_draft(session, make_account)
    intruder = make_account(Role.PROVIDER)
    attempts = [
        lambda: listing_requests.save_draft(session, intruder, draft, {"legal_name": "X", "public_name": "Y"}),
        lambda: listing_requests.submit(session, intruder, draft, listing_requests.Attestation(True, True, True, "X"), POLICY),
        lambda: listing_requests.withdraw(session, intruder, draft),
        lambda: listing_requests.answer(session, intruder, draft, "x"),
        lambda: listing_requests.start_listing_request(session, intruder, provider),
        lambda: advertising.apply(session, intruder, provider, POLICY, ad_copy(provider)),
        lambda: document_store.store(session, intruder, draft, io.BytesIO(PDF), "a.pdf", "/tmp/never", 10_000),
    ]
    for attempt in attempts:
        with pytest.raises(NotAllowed):
            attempt()
        session.rollback()
    assert reload(session, draft).state == SubmissionState.DRAFT


@pytest.mark.parametrize("role,allowed", [(Role.RESEARCHER, True), (Role.RESEARCH_LEAD, True), (Role.AUDITOR, True),
                                          (Role.ADMIN, False)])
def test_staff_who_review_evidence_can_download_it(client, session, make_account, role, allowed):
    owner, provider, draft = provider_with_draft(session, make_account, client)
    client.post(f"/portal/requests/{draft.id}/documents", data={"files": [(io.BytesIO(PDF), "licence.pdf")]},
                content_type="multipart/form-data")
    document = session.scalar(select(Document))
    assert client.get(f"/portal/documents/{document.id}").data == PDF
    client.post("/logout")
    staff = make_account(role)
    login(client, staff)
    response = client.get(f"/portal/documents/{document.id}")
    assert response.status_code == (200 if allowed else 403)
    if allowed:
        assert response.data == PDF


def test_signed_out_visitors_are_sent_to_sign_in(client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account)
    for url in (f"/portal/organisations/{provider.id}", f"/portal/requests/{draft.id}", "/portal/documents/1"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    assert client.post(f"/portal/requests/{draft.id}/withdraw").status_code == 302
    assert reload(session, draft).state == SubmissionState.DRAFT


def test_mail_goes_only_to_the_organisations_own_members(client, session, make_account):
    from backoffice.services import review
    from tests.review_helpers import in_review, publish_catalogue

    publish_catalogue(session)
    owner, provider, draft = provider_with_draft(session, make_account, client)
    _other, _, _ = provider_with_draft(session, make_account, legal_name="Other LLC", public_name="Other")
    client.post(f"/portal/requests/{draft.id}/edit", data=submit_data())
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    review.request_info(session, researcher, submission, "Which licence covers IOP?", None)
    session.commit()
    recipients = session.scalars(select(Notification.recipient_email).where(Notification.kind == "info_requested")).all()
    assert recipients == [owner.email]
