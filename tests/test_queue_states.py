"""The review queue shows and finds a request under the states it proposes: a new provider's request has no
location of its own until approval, so its proposed locations are what the queue reads."""
from __future__ import annotations

import re

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, select

from backoffice.extensions import db
from backoffice.models import (
    Location,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionProposedState,
    SubmissionState,
    utcnow,
)
from backoffice.services import listing_requests, profile, queue, review, submissions
from tests.conftest import login
from tests.review_helpers import POLICY, provider_member, publish_catalogue, submitted

PORTLAND = {"street1": "1 SW Main St", "city": "Portland", "state": "OR", "zip": "97204"}
SEATTLE = {"street1": "2 Pike St", "city": "Seattle", "state": "WA", "zip": "98101"}


def queue_rows(client, query: str = "") -> dict[int, str]:
    """Each request on the queue page with the text of its State (US) cell."""
    page = client.get(f"/admin/review/?{query}").get_data(as_text=True)
    body = page[page.index("<tbody>"):page.index("</tbody>")]
    return {int(ident): states.strip() for ident, states in re.findall(
        r'/admin/review/case/(\d+)">\d+</a></td>\s*<td>[^<]*</td>\s*<td>[^<]*</td>\s*<td>([^<]*)</td>', body)}


@pytest.fixture(params=["from the state's requests", "from the open requests"])
def researcher(request, client, session, make_account, monkeypatch):
    """Signed in; the queue finds a state's requests from that state's side (few locations there) or by walking
    the open requests in due order (many), and both must give the same rows."""
    monkeypatch.setattr(queue, "FEW_LOCATIONS", 10**9 if request.param.startswith("from the state") else -1)
    publish_catalogue(session)
    account = make_account(Role.RESEARCHER)
    login(client, account)
    return account


def new_provider(session, name="Cascade Recovery") -> Provider:
    provider = Provider(legal_name=f"{name} LLC", public_name=name, levels_of_care=[], services=[],
                        populations=[], payment_accepted=[])
    session.add(provider)
    session.commit()
    return provider


def test_a_new_providers_request_is_found_and_shown_under_its_proposed_state(client, session, researcher,
                                                                            make_account, make_provider):
    provider = new_provider(session)
    assert provider.locations == []
    member = provider_member(session, make_account, provider)
    draft = submissions.create_draft(session, member, provider, SubmissionKind.NEW_LISTING,
                                     {"legal_name": provider.legal_name, "public_name": provider.public_name})
    session.commit()
    listing_requests.save_draft(session, member, draft, {**draft.proposed, "locations": [PORTLAND]})
    session.commit()
    review.submit(session, member, draft, POLICY)
    session.commit()
    listed_in_va = make_provider()
    virginia = submitted(session, member, listed_in_va, SubmissionKind.NEW_LISTING, profile.current(listed_in_va))

    assert queue_rows(client, "state=OR") == {draft.id: "OR"}
    assert queue_rows(client)[draft.id] == "OR"
    assert draft.id not in queue_rows(client, "state=VA") and virginia.id in queue_rows(client, "state=VA")


def test_an_update_is_found_under_its_proposed_and_its_current_states(client, session, researcher, make_account,
                                                                      make_provider):
    provider = make_provider()  # listed in VA
    member = provider_member(session, make_account, provider)
    update = submissions.create_draft(session, member, provider, SubmissionKind.UPDATE, {"locations": []})
    session.commit()
    listing_requests.save_draft(session, member, update, {"locations": [SEATTLE, PORTLAND]})
    session.commit()
    listing_requests.save_draft(session, member, update, {"locations": [SEATTLE]})  # Portland dropped again
    session.commit()
    review.submit(session, member, update, POLICY)
    session.commit()
    advertiser = submitted(session, member, make_provider(), SubmissionKind.ADVERTISER_APPLICATION, {})

    assert queue_rows(client)[update.id] == "VA, WA"
    assert update.id in queue_rows(client, "state=WA") and update.id in queue_rows(client, "state=VA")
    assert update.id not in queue_rows(client, "state=OR")
    assert queue_rows(client)[advertiser.id] == "VA" and advertiser.id in queue_rows(client, "state=VA")
    assert [row.state for row in session.scalars(select(SubmissionProposedState)
                                                 .where(SubmissionProposedState.submission_id == update.id))] == ["WA"]


def test_a_new_listing_that_moves_away_is_no_longer_found_under_its_old_state(client, session, researcher,
                                                                              make_account, make_provider):
    provider = make_provider()  # an unlisted provider with a VA location on file asks to be listed in OR
    member = provider_member(session, make_account, provider)
    request = submitted(session, member, provider, SubmissionKind.NEW_LISTING, {"locations": [PORTLAND]})
    assert queue_rows(client, "state=OR") == {request.id: "OR"}
    assert request.id not in queue_rows(client, "state=VA")


def test_the_migration_fills_the_proposed_states_of_existing_requests(app, session, make_provider):
    provider_id = make_provider().id
    db.session.remove()
    downgrade(revision="3d853b84431e")
    now = utcnow()
    rows = [{"provider_id": provider_id, "kind": SubmissionKind.NEW_LISTING.value, "state": state,
             "proposed": proposed, "created_at": now, "updated_at": now, "row_version": 1}
            for state, proposed in ((SubmissionState.SUBMITTED.value, {"locations": [PORTLAND, SEATTLE, PORTLAND]}),
                                    (SubmissionState.DRAFT.value, {"locations": [{"state": "zz"}, {"city": "x"}]}),
                                    (SubmissionState.IN_REVIEW.value, {}))]
    table = Submission.__table__
    with db.engine.begin() as conn:
        ids = [conn.execute(insert(table).values(**row)).inserted_primary_key[0] for row in rows]
    upgrade()
    found = db.session.execute(select(SubmissionProposedState.submission_id, SubmissionProposedState.state)
                               .order_by(SubmissionProposedState.submission_id, SubmissionProposedState.state)).all()
    assert [tuple(r) for r in found] == [(ids[0], "OR"), (ids[0], "WA")]
    assert db.session.scalar(select(Location.state).where(Location.provider_id == provider_id)) == "VA"


def test_a_state_filtered_queue_pages_without_gaps_or_repeats(session, researcher, make_account, make_provider):
    member = provider_member(session, make_account, make_provider())
    wanted = [submitted(session, member, new_provider(session, f"Rose City {n}"), SubmissionKind.NEW_LISTING,
                        {"locations": [PORTLAND]}).id for n in range(5)]
    submitted(session, member, new_provider(session, "Elsewhere"), SubmissionKind.NEW_LISTING, {"locations": [SEATTLE]})
    seen, cursor = [], None
    while True:
        found = queue.page(session, queue.QueueFilters(state="OR"), researcher.id, utcnow(), cursor, limit=2)
        seen += [row.submission.id for row in found.rows]
        if not found.next_cursor:
            break
        cursor = found.next_cursor
    assert seen == sorted(wanted, key=lambda i: (session.get(Submission, i).decision_due, i))
