"""The provider's whole journey through the pages: register, confirm, create, submit, answer, see the decision."""
import io
import re

from sqlalchemy import select

from backoffice.models import (
    AdvertisingStatus,
    AuditEvent,
    DecisionOutcome,
    Document,
    ListingStatus,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
)
from backoffice.services import review
from tests.conftest import PASSWORD
from tests.portal_helpers import (
    PDF,
    PNG,
    listed_and_verified,
    mailed_path,
    provider_with_draft,
    reload,
    submit_data,
)
from tests.review_helpers import POLICY, ad_form, assess_all, in_review, publish_catalogue

INTERNAL = "INTERNAL-ONLY: the owner sounded evasive on the phone"


def _register_and_sign_in(client, session, email="intake@harbor.example.org"):
    page = client.post("/register", data={"name": "Ada Byron", "email": email, "password": PASSWORD,
                                          "confirm": PASSWORD})
    assert page.status_code == 200 and "Check your e-mail" in page.get_data(as_text=True)
    early = client.post("/login", data={"email": email, "password": PASSWORD})
    assert "Confirm your e-mail address first" in early.get_data(as_text=True)
    assert client.get("/portal/").status_code == 302

    confirmed = client.get(mailed_path(session, email, "confirm_email"))
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == "/login"
    signed_in = client.post("/login", data={"email": email, "password": PASSWORD})
    assert signed_in.headers["Location"] == "/portal/"


def _create_and_submit(client, session) -> Submission:
    created = client.post("/portal/organisations/new", data={"legal_name": "Harbor Recovery Center LLC",
                                                               "public_name": "Harbor Recovery Center"})
    assert created.status_code == 302
    submission_id = int(re.search(r"/portal/requests/(\d+)/edit", created.headers["Location"]).group(1))
    edit = client.get(f"/portal/requests/{submission_id}/edit")
    assert edit.status_code == 200 and "Harbor Recovery Center LLC" in edit.get_data(as_text=True)

    uploaded = client.post(f"/portal/requests/{submission_id}/documents",
                           data={"files": [(io.BytesIO(PDF), "state-licence.pdf")]},
                           content_type="multipart/form-data")
    assert uploaded.status_code == 302
    submitted = client.post(f"/portal/requests/{submission_id}/edit", data=submit_data())
    assert submitted.status_code == 302, submitted.get_data(as_text=True)
    return session.get(Submission, submission_id)


def test_register_confirm_submit_answer_and_see_the_decision(client, session, make_account):
    publish_catalogue(session)
    _register_and_sign_in(client, session)
    submission = _create_and_submit(client, session)

    submission = reload(session, submission)
    assert submission.state == SubmissionState.SUBMITTED
    assert submission.proposed["npi"] == "1234567893"
    assert submission.proposed["phone"] == "+1 434-296-1234"
    assert set(submission.proposed["services"]) == {"substance_use_treatment", "naloxone", "moud"}
    assert submission.proposed["attestation"]["no_patient_brokering"] is True
    assert submission.first_response_due and submission.decision_due
    page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    assert "submitted" in page and "state-licence.pdf" in page and "Attestation" in page

    # The research team works the request through its own services, and sees what the portal produced.
    researcher = make_account(Role.RESEARCHER)
    in_review(session, researcher, submission)
    review.request_info(session, researcher, submission, "Please send the CARF accreditation letter.", None)
    session.commit()
    question_page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    assert "Please send the CARF accreditation letter." in question_page and 'id="answer-form"' in question_page

    answered = client.post(f"/portal/requests/{submission.id}/answer",
                           data={"message": "Attached.", "version": str(reload(session, submission).row_version),
                                 "files": [(io.BytesIO(PNG), "carf-letter.png")]},
                           content_type="multipart/form-data")
    assert answered.status_code == 302
    submission = reload(session, submission)
    assert submission.state == SubmissionState.IN_REVIEW
    assert [d.original_name for d in submission.documents] == ["state-licence.pdf", "carf-letter.png"]

    assess_all(session, researcher, submission)
    review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "Welcome to the directory.",
                  INTERNAL, POLICY, None)
    session.commit()

    page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    assert "Decision: approved" in page and "Welcome to the directory." in page
    assert INTERNAL not in page and "evasive" not in page
    timeline = re.search(r'<ol class="small" id="timeline">(.*?)</ol>', page, re.S).group(1)
    assert [s for s in ("draft", "submitted", "in review", "needs info", "approved") if s in timeline] == \
        ["draft", "submitted", "in review", "needs info", "approved"]
    assert "by you" in timeline and "by the research team" in timeline

    provider = session.get(Provider, submission.provider_id)
    assert provider.listing_status == ListingStatus.LISTED and provider.verification_status == VerificationStatus.VERIFIED
    assert provider.npi == "1234567893" and provider.licences[0].number == "L-123"

    # The researcher's case page renders the portal's request: proposed listing, documents, answer.
    from tests.conftest import login
    staff = client.application.test_client()
    login(staff, researcher)
    case = staff.get(f"/admin/review/case/{submission.id}").get_data(as_text=True)
    assert "carf-letter.png" in case and "Attached." in case and "1234567893" in case
    attestation = re.search(r'<div id="attestation"[^>]*>(.*?)</div>', case, re.S).group(1)
    assert "No patient brokering: attested" in attestation and "NOT attested" not in attestation


def test_a_rejection_shows_its_reason_codes_and_provider_note_but_never_the_internal_note(
        client, session, make_account):
    publish_catalogue(session)
    account, provider, draft = provider_with_draft(session, make_account, client)
    assert client.post(f"/portal/requests/{draft.id}/edit", data=submit_data()).status_code == 302
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, reload(session, draft))
    assess_all(session, researcher, submission, except_codes=("STATE_LICENCE",))
    from backoffice.models import AssessmentStatus
    from backoffice.services.review import Evidence

    review.record_assessment(session, researcher, submission, "STATE_LICENCE", AssessmentStatus.NOT_MET,
                             Evidence(note="licence lapsed"), None)
    review.decide(session, researcher, submission, DecisionOutcome.REJECTED, ["STATE_LICENCE"],
                  "Your state licence has lapsed; renew it and apply again.", INTERNAL, POLICY, None)
    session.commit()

    page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    assert "Decision: not approved" in page
    assert "STATE_LICENCE" in page and "Current state licence covering each level of care listed" in page
    assert "renew it and apply again" in page
    assert INTERNAL not in page
    mail = client.get("/portal/").get_data(as_text=True)
    assert INTERNAL not in mail


def test_save_draft_then_come_back_and_edit_it(client, session, make_account):
    from tests.portal_helpers import listing_data

    account, provider, draft = provider_with_draft(session, make_account, client)
    saved = client.post(f"/portal/requests/{draft.id}/edit", data=listing_data())
    assert saved.status_code == 302
    page = client.get(f"/portal/requests/{draft.id}/edit").get_data(as_text=True)
    assert 'value="1 Main Street"' in page and 'value="1234567893"' in page
    # The saved row plus one blank row to add another location, without JavaScript.
    assert 'name="locations-1-street1"' in page and 'name="locations-2-street1"' not in page
    second = listing_data(**{"locations-1-street1": "2 High Street", "locations-1-city": "Richmond",
                             "locations-1-state": "VA", "locations-1-zip": "232191234"})
    assert client.post(f"/portal/requests/{draft.id}/edit", data=second).status_code == 302
    proposed = reload(session, draft).proposed
    assert [loc["zip"] for loc in proposed["locations"]] == ["22902", "23219-1234"]
    assert proposed["locations"][1]["state"] == "VA"
    assert reload(session, draft).state == SubmissionState.DRAFT

    removed = listing_data(**{"locations-1-street1": "2 High Street", "locations-1-city": "Richmond",
                              "locations-1-state": "VA", "locations-1-zip": "23219", "locations-1-remove": "y"})
    client.post(f"/portal/requests/{draft.id}/edit", data=removed)
    assert len(reload(session, draft).proposed["locations"]) == 1
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_id == str(draft.id))).all()
    assert "submission.draft_saved" in actions


def test_submit_without_attestation_or_licence_saves_nothing_and_says_what_is_missing(client, session, make_account):
    from tests.portal_helpers import listing_data

    account, provider, draft = provider_with_draft(session, make_account, client)
    data = listing_data(save=None, submit_request="Submit for review", **{
        "licences-0-state": "", "licences-0-number": "", "licences-0-licence_type": "", "licences-0-levels_of_care": None,
        "licences-0-expires_on": ""})
    response = client.post(f"/portal/requests/{draft.id}/edit", data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Confirm this statement to submit." in page
    assert "Type your full name to sign the attestation." in page
    assert "Add the state licence that covers each level of care you list." in page
    draft = reload(session, draft)
    assert draft.state == SubmissionState.DRAFT and "npi" not in draft.proposed


def test_withdraw_an_open_request(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    client.post(f"/portal/requests/{draft.id}/edit", data=submit_data())
    submission = reload(session, draft)
    assert submission.state == SubmissionState.SUBMITTED
    response = client.post(f"/portal/requests/{draft.id}/withdraw",
                           data={"version": submission.row_version, "reason": "We merged with another centre.",
                                 "confirm": "y"})
    assert response.status_code == 302
    submission = reload(session, draft)
    assert submission.state == SubmissionState.WITHDRAWN
    page = client.get(f"/portal/requests/{draft.id}").get_data(as_text=True)
    assert "withdrawn" in page and 'id="withdraw-link"' not in page
    again = client.post(f"/portal/requests/{draft.id}/withdraw", data={"version": submission.row_version,
                                                                        "confirm": "y"})
    assert again.status_code == 400 and "already withdrawn" in again.get_data(as_text=True)


def test_a_stale_withdraw_is_a_conflict_and_changes_nothing(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    client.post(f"/portal/requests/{draft.id}/edit", data=submit_data())
    response = client.post(f"/portal/requests/{draft.id}/withdraw", data={"version": 1, "confirm": "y"})
    assert response.status_code == 400 and "Someone else changed this request" in response.get_data(as_text=True)
    assert reload(session, draft).state == SubmissionState.SUBMITTED


def test_propose_an_update_to_a_listed_profile(client, session, make_account):
    account, provider = listed_and_verified(session, make_account, client)
    started = client.post(f"/portal/organisations/{provider.id}/requests")
    assert started.status_code == 302
    update_id = int(re.search(r"/requests/(\d+)/edit", started.headers["Location"]).group(1))
    update = session.get(Submission, update_id)
    assert update.kind == SubmissionKind.UPDATE and update.proposed["npi"] == provider.npi
    form = client.get(f"/portal/requests/{update_id}/edit").get_data(as_text=True)
    assert 'value="Harbor Recovery Center"' in form
    client.post(f"/portal/requests/{update_id}/edit", data=submit_data(phone="434-296-9999"))
    page = client.get(f"/portal/requests/{update_id}").get_data(as_text=True)
    changes = re.search(r'id="proposed-changes">(.*?)</table>', page, re.S).group(1)
    assert "Phone" in changes and "+1 434-296-9999" in changes and "Legal name" not in changes
    twice = client.post(f"/portal/organisations/{provider.id}/requests")
    assert twice.status_code == 409 and "still submitted" in twice.get_data(as_text=True)


def test_apply_to_advertise_only_when_verified(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    page = client.get(f"/portal/organisations/{provider.id}/advertise").get_data(as_text=True)
    assert "Your verification is unverified" in page and "submit a listing request" in page
    refused = client.post(f"/portal/organisations/{provider.id}/advertise", data=ad_form(provider))
    assert refused.status_code == 409
    assert session.scalar(select(Submission).where(Submission.kind == SubmissionKind.ADVERTISER_APPLICATION)) is None

    client.post("/logout")
    account, provider = listed_and_verified(session, make_account, client)
    assert "Apply to advertise" in client.get(f"/portal/organisations/{provider.id}").get_data(as_text=True)
    applied = client.post(f"/portal/organisations/{provider.id}/advertise", data=ad_form(provider))
    assert applied.status_code == 302
    session.expire_all()
    provider = session.get(Provider, provider.id)
    application = session.scalar(select(Submission).where(Submission.kind == SubmissionKind.ADVERTISER_APPLICATION))
    assert provider.advertising_status == AdvertisingStatus.PENDING
    assert application.state == SubmissionState.SUBMITTED and application.provider_id == provider.id
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.provider_id == provider.id)).all()
    assert "advertising.pending" in actions
    again = client.get(f"/portal/organisations/{provider.id}/advertise").get_data(as_text=True)
    assert f"Your application #{application.id} is waiting" in again

    client.post(f"/portal/requests/{application.id}/withdraw", data={"version": application.row_version,
                                                                      "confirm": "y"})
    session.expire_all()
    assert session.get(Provider, provider.id).advertising_status == AdvertisingStatus.NONE


def test_every_portal_change_writes_its_audit_event(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    client.post(f"/portal/requests/{draft.id}/documents", data={"files": [(io.BytesIO(PDF), "a.pdf")]},
                content_type="multipart/form-data")
    client.post(f"/portal/requests/{draft.id}/edit", data=submit_data())
    document = session.scalar(select(Document))
    actions = set(session.scalars(select(AuditEvent.action).where(AuditEvent.provider_id == provider.id)))
    assert {"provider.created", "organisation.member_added", "submission.created", "document.uploaded",
            "submission.draft_saved", "submission.attested", "submission.transitioned"} <= actions
    uploaded = session.scalar(select(AuditEvent).where(AuditEvent.action == "document.uploaded"))
    assert uploaded.after["sha256"] == document.sha256
