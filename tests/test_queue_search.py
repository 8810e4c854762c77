"""The review queue as the research team uses it: search, saved filters, sorts, totals and why each row waits."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from backoffice.models import (
    Decision,
    DecisionOutcome,
    DecisionStatus,
    Role,
    SubmissionState,
    utcnow,
)
from backoffice.services import queue, review
from tests.conftest import BACKEND, login
from tests.page_text import visible_text
from tests.review_helpers import in_review, provider_member, publish_catalogue, submitted


@pytest.fixture
def world(session, make_account, make_provider):
    catalogue = publish_catalogue(session)
    researcher, other = make_account(Role.RESEARCHER), make_account(Role.RESEARCHER)
    researcher.name = "Rosa Researcher"
    lead = make_account(Role.RESEARCH_LEAD)
    session.commit()
    alpine = make_provider(public_name="Alpine Recovery", legal_name="Alpine Recovery Services LLC", npi="1234567893")
    alpine.locations[0].city, alpine.locations[0].state = "Boulder", "CO"
    bayside = make_provider(public_name="Bayside Counseling")
    newcomer = make_provider(public_name="Cedar Wellness")
    session.commit()
    member = provider_member(session, make_account, alpine)
    requests = {
        "alpine": submitted(session, member, alpine),
        "bayside": submitted(session, member, bayside),
        # A new listing's city is only in what it proposes.
        "cedar": submitted(session, member, newcomer, proposed={
            "public_name": "Cedar Wellness", "locations": [{"street1": "9 Elm St", "city": "Tacoma", "state": "WA",
                                                             "zip": "98402"}]}),
    }
    return {"catalogue": catalogue, "researcher": researcher, "other": other, "lead": lead, "member": member,
            "providers": {"alpine": alpine, "bayside": bayside, "cedar": newcomer}, "requests": requests}


def listed(client, query: str = "") -> list[int]:
    page = client.get(f"/admin/review/?{query}").get_data(as_text=True)
    body = re.search(r"<tbody>(.*?)</tbody>", page, re.S).group(1)
    return [int(i) for i in re.findall(r'/admin/review/case/(\d+)"', body)]


def ids(world, *names) -> set[int]:
    return {world["requests"][name].id for name in names}


def test_a_researcher_finds_a_request_by_name_npi_number_or_city(client, world):
    login(client, world["researcher"])
    assert set(listed(client, "q=alpine")) == ids(world, "alpine")          # public name, any case
    assert set(listed(client, "q=Services+LLC")) == ids(world, "alpine")    # legal name
    assert set(listed(client, "q=1234567893")) == ids(world, "alpine")      # NPI
    assert set(listed(client, f"q=%23{world['requests']['bayside'].id}")) == ids(world, "bayside")  # "#12"
    assert set(listed(client, f"q={world['requests']['bayside'].id}")) == ids(world, "bayside")
    assert set(listed(client, "q=boulder")) == ids(world, "alpine")         # a location's city
    assert set(listed(client, "q=Tacoma")) == ids(world, "cedar")           # a proposed location's city
    assert listed(client, "q=Nowhere+Town") == []
    page = client.get("/admin/review/?q=alpine")
    text = visible_text(page.get_data(as_text=True))
    assert "1 open request matching “alpine”" in text
    assert 'value="alpine"' in page.get_data(as_text=True)  # the search stays in its box


def test_search_characters_are_text_not_patterns(client, world):
    login(client, world["researcher"])
    assert listed(client, "q=%25") == []        # "%" is not "anything"
    assert listed(client, "q=_") == []
    assert listed(client, "q=%22%29+OR+1%3D1+--") == []
    assert listed(client, "q=99999999999") == []  # beyond any request number, not an NPI: nothing, no error


def test_a_search_too_long_is_ignored_with_a_message(client, world):
    login(client, world["researcher"])
    page = client.get("/admin/review/?q=" + "x" * 101)
    assert page.status_code == 200
    assert "The search is longer than 100 characters; it was ignored." in visible_text(page.get_data(as_text=True))
    assert set(listed(client, "q=" + "x" * 101)) == ids(world, "alpine", "bayside", "cedar")


def test_saved_filters_my_work_answered_and_overdue(client, session, world):
    alpine, bayside, cedar = (world["requests"][k] for k in ("alpine", "bayside", "cedar"))
    in_review(session, world["researcher"], alpine)
    in_review(session, world["researcher"], bayside)
    in_review(session, world["other"], cedar)
    review.request_info(session, world["researcher"], bayside, "Please send your licence.", None)
    session.commit()
    review.answer_info_request(session, world["member"], bayside, "Attached.")
    cedar.decision_due = utcnow() - timedelta(days=2)
    session.commit()
    login(client, world["researcher"])
    assert set(listed(client, "view=mine")) == {alpine.id, bayside.id}
    assert listed(client, "view=answered") == [bayside.id]
    assert listed(client, "view=overdue") == [cedar.id]
    page = client.get("/admin/review/?view=answered")
    assert 'aria-current="page">Answered by the provider' in page.get_data(as_text=True)
    # Leads only: a researcher is told, and sees every open request instead.
    refused = client.get("/admin/review/?view=signoff")
    assert "Only research leads sign off decisions; showing every open request." in visible_text(refused.get_data(as_text=True))
    assert set(listed(client, "view=signoff")) == {alpine.id, bayside.id, cedar.id}
    assert "Waiting for my sign-off" not in visible_text(client.get("/admin/review/").get_data(as_text=True))


def test_a_lead_finds_what_waits_for_their_sign_off_and_not_their_own(client, session, world):
    alpine, bayside = world["requests"]["alpine"], world["requests"]["bayside"]
    for submission, decider in ((alpine, world["researcher"]), (bayside, world["lead"])):
        in_review(session, decider, submission)
        session.add(Decision(submission_id=submission.id, outcome=DecisionOutcome.APPROVED,
                             status=DecisionStatus.AWAITING_SIGNOFF, catalogue_id=world["catalogue"].id,
                             decided_by_id=decider.id, reason_codes=[]))
    session.commit()
    login(client, world["lead"])
    assert listed(client, "view=signoff") == [alpine.id]
    text = visible_text(client.get("/admin/review/?view=signoff").get_data(as_text=True))
    assert "Decision by Rosa Researcher awaiting sign-off by someone else on the research team" in text
    assert "1 open request in Waiting for my sign-off" in text


def test_each_row_says_why_it_waits(client, session, world):
    alpine, bayside, cedar = (world["requests"][k] for k in ("alpine", "bayside", "cedar"))
    in_review(session, world["researcher"], bayside)
    in_review(session, world["researcher"], cedar)
    review.request_info(session, world["researcher"], cedar, "Which levels of care?", None)
    alpine.decision_due = utcnow() - timedelta(days=1)
    alpine.first_response_due = utcnow() + timedelta(days=1)
    session.commit()
    login(client, world["researcher"])
    page = client.get("/admin/review/").get_data(as_text=True)

    def row_of(submission) -> str:
        return re.search(rf'case/{submission.id}".*?</tr>', page, re.S).group(0)

    assert "New: nobody has taken it yet; Decision overdue" in row_of(alpine)
    assert "In review with Rosa Researcher" in row_of(bayside)
    assert "Waiting for the provider to answer a question" in row_of(cedar)


@pytest.mark.parametrize("sort", sorted(queue.SORTS))
def test_every_sort_pages_by_keyset_without_gaps_or_repeats(session, world, make_provider, sort):
    for n in range(7):
        submission = submitted(session, world["member"], make_provider())
        submission.decision_due = utcnow() + timedelta(days=n % 3)  # ties on the due date
        submission.submitted_at = utcnow() - timedelta(days=n % 2)
        if n % 3 == 0:
            in_review(session, world["researcher"], submission)
    session.commit()
    filters = queue.QueueFilters(sort=sort)
    everything = queue.page(session, filters, world["researcher"].id, utcnow(), limit=100)
    expected = [row.submission.id for row in everything.rows]
    seen, cursor = [], None
    while True:
        page = queue.page(session, filters, world["researcher"].id, utcnow(), cursor, limit=3)
        assert page.total == queue.totals.Total(len(expected)) and len(expected) == 10
        seen += [row.submission.id for row in page.rows]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_the_sorts_order_as_they_say(session, world):
    alpine, bayside, cedar = (world["requests"][k] for k in ("alpine", "bayside", "cedar"))
    now = utcnow()
    alpine.submitted_at, bayside.submitted_at, cedar.submitted_at = (now - timedelta(days=d) for d in (1, 5, 3))
    alpine.decision_due, bayside.decision_due, cedar.decision_due = (now + timedelta(days=d) for d in (9, 2, 5))
    session.commit()
    # The first one made: its activity is now the latest and it is in review, neither of which the ids say.
    in_review(session, world["researcher"], alpine)

    def order(sort):
        page = queue.page(session, queue.QueueFilters(sort=sort), world["researcher"].id, utcnow())
        return [row.submission.id for row in page.rows]

    assert order("due") == [bayside.id, cedar.id, alpine.id]
    assert order("age") == [bayside.id, cedar.id, alpine.id]
    assert order("activity")[0] == alpine.id
    assert order("state") == [bayside.id, cedar.id, alpine.id]  # new ones (by due) first, then those in review


def test_a_page_link_made_for_another_sort_or_altered_is_refused_and_the_first_page_shown(client, session, world,
                                                                                          make_provider):
    for _ in range(3):
        submitted(session, world["member"], make_provider())
    first = queue.page(session, queue.QueueFilters(sort="age"), world["researcher"].id, utcnow(), limit=2)
    login(client, world["researcher"])
    page = client.get(f"/admin/review/?sort=due&cursor={first.next_cursor}")
    assert "That page link is not valid. Showing the first page." in visible_text(page.get_data(as_text=True))
    assert "That page link is not valid." in visible_text(client.get("/admin/review/?cursor=" + "A" * 40).get_data(as_text=True))


def test_unknown_sorts_and_saved_filters_are_named_and_ignored(client, world):
    login(client, world["researcher"])
    text = visible_text(client.get("/admin/review/?sort=price&view=favourites").get_data(as_text=True))
    assert "'price' is not a way to sort the queue; sorted by decision due." in text
    assert "'favourites' is not a saved filter; showing every open request." in text
    assert "3 open requests" in text


def test_the_queue_total_counts_every_page(client, session, world, make_provider):
    for _ in range(queue.PAGE_SIZE):
        submitted(session, world["member"], make_provider())
    login(client, world["researcher"])
    text = visible_text(client.get("/admin/review/").get_data(as_text=True))
    assert f"{queue.PAGE_SIZE + 3} open requests" in text
    assert len(listed(client)) == queue.PAGE_SIZE


def test_the_my_work_link_opens_the_saved_filter(client, world):
    login(client, world["researcher"])
    page = client.get("/admin/review/").get_data(as_text=True)
    assert re.search(r'id="my-work" href="/admin/review/\?view=mine"', page)


def test_a_request_is_found_by_the_cities_it_proposes_now_not_those_it_proposed_before(session, world):
    from backoffice.services import submissions

    cedar = world["requests"]["cedar"]
    submissions.propose(cedar, {"public_name": "Cedar Wellness", "locations": [
        {"street1": "1 Bay Rd", "city": "  Olympia ", "state": "WA", "zip": "98501"},
        {"street1": "2 Bay Rd", "city": "OLYMPIA", "state": "WA", "zip": "98501"}]})
    session.commit()

    def found(term):
        page = queue.page(session, queue.QueueFilters(search=term), world["researcher"].id, utcnow())
        return [row.submission.id for row in page.rows]

    assert found("olympia") == [cedar.id] and found("Tacoma") == []
    assert sorted(row.city for row in cedar.proposed_cities) == ["olympia"]


# -- bulk assignment ---------------------------------------------------------------------------------------


def _assigned_events(session):
    from sqlalchemy import select

    from backoffice.models import AuditEvent

    session.rollback()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "submission.assigned")
                                .order_by(AuditEvent.seq)))


def test_a_lead_assigns_ticked_requests_at_once_each_audited_with_the_reason(client, session, world):
    alpine, bayside = world["requests"]["alpine"], world["requests"]["bayside"]
    login(client, world["lead"])
    queue_page = client.get("/admin/review/?q=a").get_data(as_text=True)
    assert 'id="bulk-assign"' in queue_page and f'name="ids" value="{alpine.id}"' in queue_page
    answer = client.post("/admin/review/bulk-assign?q=a", data={
        "ids": [str(alpine.id), str(bayside.id)], "assignee": str(world["researcher"].id),
        "reason": "Rosa covers the west this week"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/admin/review/?q=a")
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "2 requests assigned to Rosa Researcher." in visible_text(page)
    events = _assigned_events(session)
    assert [(e.entity_id, e.reason, e.after["assignee_id"]) for e in events] == [
        (str(alpine.id), "Rosa covers the west this week", world["researcher"].id),
        (str(bayside.id), "Rosa covers the west this week", world["researcher"].id)]
    assert {s.state for s in (session.get(type(alpine), alpine.id), session.get(type(alpine), bayside.id))} == {
        SubmissionState.IN_REVIEW}


def test_a_bulk_assignment_one_request_refuses_changes_none_and_keeps_the_ticks(client, session, world):
    alpine, bayside = world["requests"]["alpine"], world["requests"]["bayside"]
    bayside.state = SubmissionState.WITHDRAWN  # withdrawn by the provider while the lead was choosing
    session.commit()
    login(client, world["lead"])
    answer = client.post("/admin/review/bulk-assign", data={
        "ids": [str(alpine.id), str(bayside.id)], "assignee": str(world["researcher"].id),
        "reason": "Spreading the load"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    text = visible_text(page)
    assert "Nothing was assigned" in text and f"Request #{bayside.id}:" in text
    assert re.search(rf'value="{alpine.id}" form="bulk-assign" id="tick-{alpine.id}"\s+checked', page)
    assert "Spreading the load" in page  # the reason stays typed
    assert _assigned_events(session) == []
    assert session.get(type(alpine), alpine.id).assignee_id is None


@pytest.mark.parametrize(("data", "message"), [
    ({"ids": [], "reason": "A good reason"}, "Choose at least one request."),
    ({"ids": ["1", "x"], "reason": "A good reason"}, "Those are not request numbers"),
    ({"ids": ["999999"], "reason": "A good reason"}, "Request #999999 does not exist. Nothing was assigned."),
    ({"ids": ["1"], "reason": "  "}, "Give a reason"),
])
def test_a_bulk_assignment_with_bad_input_says_why_and_changes_nothing(client, session, world, data, message):
    login(client, world["lead"])
    answer = client.post("/admin/review/bulk-assign", data={"assignee": str(world["researcher"].id), **data})
    assert answer.status_code == 400
    assert message in visible_text(answer.get_data(as_text=True))
    assert _assigned_events(session) == []


def test_only_leads_assign_in_bulk(client, session, world):
    login(client, world["researcher"])
    assert 'id="bulk-assign"' not in client.get("/admin/review/").get_data(as_text=True)
    answer = client.post("/admin/review/bulk-assign", data={
        "ids": [str(world["requests"]["alpine"].id)], "assignee": str(world["researcher"].id), "reason": "mine now"})
    assert answer.status_code == 403 and _assigned_events(session) == []


def test_a_queue_beyond_the_exact_bound_says_more_than_or_about(client, session, world, monkeypatch):
    monkeypatch.setattr(queue, "EXACT_UP_TO", 2)
    login(client, world["researcher"])
    text = visible_text(client.get("/admin/review/").get_data(as_text=True))
    if BACKEND == "postgresql":  # the planner's estimate when it is above the bound, else "more than"
        assert re.search(r"(about [\d,]+|more than 2) open requests", text)
    else:
        assert "more than 2 open requests" in text
    assert "3 open requests" not in text
    assert "1 open request matching “alpine”" in visible_text(client.get("/admin/review/?q=alpine").get_data(as_text=True))
