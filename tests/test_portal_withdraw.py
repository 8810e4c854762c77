"""Withdrawing is two steps, without JavaScript: a page that says what it means, then a confirming post."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from backoffice.models import AdvertisingStatus, AuditEvent, Provider, Submission, SubmissionKind, SubmissionState
from tests.portal_helpers import (
    listed_and_verified,
    provider_with_draft,
    reload,
    section_text,
    submit_data,
)
from tests.review_helpers import ad_form


def _events(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(AuditEvent))


def _submitted(session, make_account, client):
    account, provider, draft = provider_with_draft(session, make_account, client)
    assert client.post(f"/portal/requests/{draft.id}/edit", data=submit_data()).status_code == 302
    return reload(session, draft)


def test_the_request_page_leads_to_a_confirmation_that_says_what_withdrawing_means(client, session, make_account):
    submission = _submitted(session, make_account, client)
    page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    link = re.search(r'<a [^>]*id="withdraw-link" href="([^"]+)">([^<]+)</a>', page)
    assert link.groups() == (f"/portal/requests/{submission.id}/withdraw", "Withdraw this request…")
    # Nothing on the request page withdraws in one press.
    assert f'action="/portal/requests/{submission.id}/withdraw"' not in page

    events = _events(session)
    confirm = client.get(link.group(1))
    assert confirm.status_code == 200
    shown = confirm.get_data(as_text=True)
    assert section_text(shown, "withdraw-meaning") == (
        f"Request #{submission.id} for Harbor Recovery Center is submitted. If you withdraw it: "
        "It cannot be undone: the request closes for good. To ask again later, start a new request. "
        "The research team stops working on it: nobody reviews or decides it.")
    form = section_text(shown, "withdraw-form")
    assert form.startswith("Why are you withdrawing? (optional)")
    assert 'name="confirm" type="submit" value="Yes, withdraw this request"' in shown
    assert f'name="version" type="hidden" value="{submission.row_version}"' in shown
    assert reload(session, submission).state == SubmissionState.SUBMITTED and _events(session) == events


def test_a_post_without_the_confirmation_shows_the_confirmation_and_changes_nothing(client, session, make_account):
    submission = _submitted(session, make_account, client)
    events = _events(session)
    response = client.post(f"/portal/requests/{submission.id}/withdraw",
                           data={"version": submission.row_version, "reason": "We merged with another centre."})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert section_text(page, "withdraw-meaning").startswith(f"Request #{submission.id} for Harbor Recovery Center "
                                                             "is submitted. If you withdraw it:")
    assert "We merged with another centre.</textarea>" in page  # what was typed waits for the confirmation
    assert reload(session, submission).state == SubmissionState.SUBMITTED and _events(session) == events

    confirmed = client.post(f"/portal/requests/{submission.id}/withdraw",
                            data={"version": submission.row_version, "reason": "We merged with another centre.",
                                  "confirm": "Yes, withdraw this request"})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == f"/portal/requests/{submission.id}"
    submission = reload(session, submission)
    assert submission.state == SubmissionState.WITHDRAWN
    withdrawn = session.scalars(select(AuditEvent).where(AuditEvent.action == "submission.transitioned",
                                                         AuditEvent.entity_id == str(submission.id))).all()[-1]
    assert withdrawn.after["state"] == "withdrawn" and withdrawn.reason == "We merged with another centre."
    page = client.get(f"/portal/requests/{submission.id}").get_data(as_text=True)
    assert f"Request #{submission.id} is withdrawn." in page and 'id="withdraw-link"' not in page


def test_a_withdrawn_request_offers_no_confirmation(client, session, make_account):
    submission = _submitted(session, make_account, client)
    client.post(f"/portal/requests/{submission.id}/withdraw", data={"version": submission.row_version, "confirm": "y"})
    page = client.get(f"/portal/requests/{submission.id}/withdraw").get_data(as_text=True)
    assert section_text(page, "withdraw-blocked") == "This request is already withdrawn. Nothing was changed."
    assert 'name="confirm"' not in page


def test_a_draft_is_withdrawn_knowing_nothing_reached_the_research_team(client, session, make_account):
    account, provider, draft = provider_with_draft(session, make_account, client)
    page = client.get(f"/portal/requests/{draft.id}/withdraw").get_data(as_text=True)
    assert "Nothing has been sent to the research team: this draft was only ever seen by you." in \
        section_text(page, "withdraw-meaning")
    assert "research team stops" not in page


def test_withdrawing_an_advertiser_application_says_it_stops_pending(client, session, make_account):
    account, provider = listed_and_verified(session, make_account, client)
    assert client.post(f"/portal/organisations/{provider.id}/advertise", data=ad_form(provider)).status_code == 302
    application = session.scalar(select(Submission).where(Submission.kind == SubmissionKind.ADVERTISER_APPLICATION))
    page = client.get(f"/portal/requests/{application.id}/withdraw").get_data(as_text=True)
    assert section_text(page, "withdraw-meaning").endswith(
        "Your application to advertise stops pending: your advertising status goes back to none. "
        "To advertise later, apply again.")
    client.post(f"/portal/requests/{application.id}/withdraw", data={"version": application.row_version})
    session.expire_all()
    assert session.get(Provider, provider.id).advertising_status == AdvertisingStatus.PENDING

    client.post(f"/portal/requests/{application.id}/withdraw", data={"version": application.row_version,
                                                                      "confirm": "y"})
    session.expire_all()
    assert session.get(Provider, provider.id).advertising_status == AdvertisingStatus.NONE
    assert reload(session, application).state == SubmissionState.WITHDRAWN


def test_a_stale_confirmation_is_refused_on_the_confirmation_page_with_the_current_version(
        client, session, make_account):
    submission = _submitted(session, make_account, client)
    response = client.post(f"/portal/requests/{submission.id}/withdraw", data={"version": 1, "confirm": "y"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert section_text(page, "withdraw-error").startswith("Someone else changed this request")
    assert f'name="version" type="hidden" value="{submission.row_version}"' in page
    assert reload(session, submission).state == SubmissionState.SUBMITTED


def test_another_providers_request_has_no_confirmation_page(client, session, make_account):
    owner, provider, draft = provider_with_draft(session, make_account)
    provider_with_draft(session, make_account, client, legal_name="Other LLC", public_name="Other Centre")
    assert client.get(f"/portal/requests/{draft.id}/withdraw").status_code == 404
