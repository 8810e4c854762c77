"""The review workflow through the pages alone: queue, case page, forms, errors, paging."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from backoffice.models import (
    AuditEvent,
    CriteriaCatalogue,
    Decision,
    Location,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit
from tests.conftest import login
from tests.review_helpers import assessment_post, provider_member, publish_catalogue, submitted


def version(page: str) -> str:
    return re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)


def errors(response) -> list[str]:
    """The error messages on a page: beside a form or field, and in the refusal banner at the top."""
    return re.findall(r'(?:alert-danger[^>]*>|invalid-feedback d-block">|<li class="refusal-problem">)\s*([^<]+?)\s*<',
                      response.get_data(as_text=True))


@pytest.fixture
def world(session, make_account, make_provider):
    catalogue = publish_catalogue(session)
    provider = make_provider(public_name="Blue Ridge Recovery <script>alert(1)</script>")
    member = provider_member(session, make_account, provider)
    return {"catalogue": catalogue, "provider": provider, "member": member,
            "researcher": make_account(Role.RESEARCHER), "lead": make_account(Role.RESEARCH_LEAD)}


def test_a_researcher_takes_a_request_from_the_queue_to_a_decision(client, session, world):
    submission = submitted(session, world["member"], world["provider"],
                           proposed={"public_name": "Blue Ridge Recovery", "levels_of_care": ["outpatient"]})
    login(client, world["researcher"])
    queue_page = client.get("/admin/review/?assignee=unassigned").get_data(as_text=True)
    assert f"/admin/review/case/{submission.id}" in queue_page
    assert "<script>alert(1)</script>" not in queue_page

    case_url = f"/admin/review/case/{submission.id}"
    page = client.get(case_url).get_data(as_text=True)
    assert client.post(f"{case_url}/claim", data={"version": version(page)}).status_code == 302

    page = client.get(case_url).get_data(as_text=True)
    codes = re.findall(r'id="criterion-([A-Z_]+)"', page)
    assert "LEGAL_ENTITY" in codes and "ADVERTISER_STANDARDS" not in codes and "PRESCRIBING" not in codes
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    response = client.post(f"{case_url}/assess", data=assessment_post(page, {
        code: {"status": "met", "note": f"{code} checked against the source", "source": "research team"}
        for code in codes}))
    assert response.status_code == 302, errors(response)
    recorded = session.scalars(select(AuditEvent.reason).where(AuditEvent.action == "assessment.recorded")).all()
    assert sorted(recorded) == sorted(codes)  # one post, one event per criterion
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events + len(codes)

    page = client.get(case_url).get_data(as_text=True)
    assert "Every required criterion is met." in page
    response = client.post(f"{case_url}/decide", data={
        "version": version(page), "outcome": "approved", "provider_note": "Listed: welcome.",
        "internal_note": "clean"})
    assert response.status_code == 302, errors(response)
    page = client.get(case_url).get_data(as_text=True)
    assert 'id="final-decision"' in page and "catalogue v1" in page
    session.expire_all()
    provider = session.get(Provider, world["provider"].id)
    assert provider.verification_status == VerificationStatus.VERIFIED
    assert provider.public_name == "Blue Ridge Recovery"
    assert audit.verify_chain(session).ok


def test_bad_input_is_shown_beside_the_form_and_changes_nothing(client, session, world):
    submission = submitted(session, world["member"], world["provider"])
    login(client, world["researcher"])
    case_url = f"/admin/review/case/{submission.id}"
    client.post(f"{case_url}/claim", data={"version": version(client.get(case_url).get_data(as_text=True))})
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    page = client.get(case_url).get_data(as_text=True)
    cases = [
        ({"status": "met"}, "Record the evidence"),
        ({"status": "met", "note": "x", "url": "javascript:alert(1)"}, "http or https"),
        ({"status": "exploded", "note": "x"}, "Not a valid choice"),
    ]
    for data, message in cases:
        response = client.post(f"{case_url}/assess", data=assessment_post(page, {"LEGAL_ENTITY": data}))
        assert response.status_code == 400
        assert any(message in e for e in errors(response)), (data, errors(response))
    response = client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "approved"})
    assert response.status_code == 400 and any("Cannot approve" in e for e in errors(response))
    response = client.post(f"{case_url}/decide", data={"version": version(page), "outcome": "rejected"})
    assert any("at least one criterion" in e for e in errors(response))
    response = client.post(f"{case_url}/request-info", data={"version": version(page), "message": ""})
    assert any("Write the question" in e for e in errors(response))
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert session.scalar(select(func.count()).select_from(Decision)) == 0


def test_a_stale_page_gets_the_conflict_message(client, session, world):
    submission = submitted(session, world["member"], world["provider"])
    login(client, world["researcher"])
    case_url = f"/admin/review/case/{submission.id}"
    client.post(f"{case_url}/claim", data={"version": version(client.get(case_url).get_data(as_text=True))})
    stale = client.get(case_url).get_data(as_text=True)
    client.post(f"{case_url}/assess", data=assessment_post(stale, {"LEGAL_ENTITY": {"status": "met", "note": "ok"}}))
    response = client.post(f"{case_url}/assess",
                           data=assessment_post(stale, {"STATE_LICENCE": {"status": "met", "note": "ok"}}))
    assert response.status_code == 409
    assert any("Someone else changed this request" in e for e in errors(response))


def test_auditors_read_the_case_but_every_action_is_refused(client, session, world, make_account):
    submission = submitted(session, world["member"], world["provider"])
    login(client, make_account(Role.AUDITOR))
    case_url = f"/admin/review/case/{submission.id}"
    page = client.get(case_url)
    assert page.status_code == 200 and "Claim this request" not in page.get_data(as_text=True)
    for action in ("claim", "assign", "assess", "request-info", "decide", "sign-off", "decline-signoff"):
        assert client.post(f"{case_url}/{action}", data={"version": "1"}).status_code == 403, action
    for url in (f"/admin/review/provider/{world['provider'].id}/suspend",
                f"/admin/review/provider/{world['provider'].id}/revoke",
                f"/admin/review/provider/{world['provider'].id}/reinstate",
                "/admin/review/revocations/1/sign-off", "/admin/catalogue/publish"):
        assert client.post(url, data={"reason": "x"}).status_code == 403, url
    session.expire_all()
    assert session.get(Submission, submission.id).state == SubmissionState.SUBMITTED


def test_queue_filters_and_flags(client, session, world, make_provider):
    texas = make_provider(public_name="Lone Star Treatment")
    texas.locations[0].state = "TX"
    session.commit()
    ours = submitted(session, world["member"], world["provider"])
    theirs = submitted(session, world["member"], texas, SubmissionKind.UPDATE)
    theirs.decision_due = utcnow() - timedelta(days=1)
    session.commit()
    login(client, world["researcher"])

    def listed(query: str) -> set[int]:
        page = client.get(f"/admin/review/?{query}").get_data(as_text=True)
        return {int(i) for i in re.findall(r'/admin/review/case/(\d+)"', page)}

    assert listed("") == {ours.id, theirs.id}
    assert listed("state=TX") == {theirs.id}
    assert listed("kind=update") == {theirs.id}
    assert listed("overdue=1") == {theirs.id}
    assert listed("assignee=mine") == set()
    page = client.get("/admin/review/?state=ZZ&kind=nonsense&cursor=%%%").get_data(as_text=True)
    assert "not a US state code" in page and "not a kind of request" in page and "page link is not valid" in page
    first_row = re.search(r'<tbody>.*?/admin/review/case/(\d+)"', page, re.S).group(1)
    assert int(first_row) == theirs.id  # soonest decision due first


def test_queue_pages_by_keyset_without_gaps_or_repeats(client, session, world, make_provider):
    from backoffice.services import queue as queue_service

    ids = []
    for n in range(7):
        provider = make_provider()
        s = submitted(session, world["member"], provider)
        s.decision_due = utcnow() + timedelta(days=n % 3)  # ties on the due date
        ids.append(s.id)
    session.commit()
    seen, cursor = [], None
    while True:
        page = queue_service.page(session, queue_service.QueueFilters(), world["researcher"].id, utcnow(),
                                  cursor, limit=3)
        seen += [row.submission.id for row in page.rows]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_only_a_lead_publishes_a_catalogue_and_bad_drafts_are_explained(client, session, world):
    from tests.test_catalogue_editor import editor_form

    login(client, world["researcher"])
    assert client.post("/admin/catalogue/publish", data={"notes": "mine"}).status_code == 403
    client.post("/logout")
    login(client, world["lead"])
    page = client.get("/admin/catalogue/next").get_data(as_text=True)
    fields = editor_form(page)
    fields["notes"] = "Assumed names too."
    bad = client.post("/admin/catalogue/publish", data={**fields.to_dict(flat=False), "criteria-0-code": "not a code"})
    assert bad.status_code == 400 and any("must be UPPER_SNAKE_CASE" in e for e in errors(bad))
    empty = client.post("/admin/catalogue/publish", data={"notes": "none left", "based_on": "1"})
    assert any("A catalogue needs at least one criterion." in e for e in errors(empty))
    assert [c.version for c in session.scalars(select(CriteriaCatalogue))] == [1]
    fields["criteria-0-guidance"] += " Also check the assumed-name register."
    ok = client.post("/admin/catalogue/publish", data=fields)
    assert ok.status_code == 302
    assert [c.version for c in session.scalars(select(CriteriaCatalogue).order_by(CriteriaCatalogue.version))] == [1, 2]


def test_a_decision_keeps_the_catalogue_version_it_was_made_under(client, session, world):
    from backoffice.models import DecisionOutcome
    from backoffice.services import criteria, review
    from tests.review_helpers import POLICY, assess_all, in_review

    submission = in_review(session, world["researcher"], submitted(session, world["member"], world["provider"]))
    criteria.publish(session, world["lead"], {"criteria": [
        {"code": "LEGAL_ENTITY", "title": "t", "guidance": "g", "required": True, "evidence": "e"}]})
    session.commit()
    assess_all(session, world["researcher"], submission)
    decision = review.decide(session, world["researcher"], submission, DecisionOutcome.APPROVED, [], "", "",
                             POLICY, None)
    session.commit()
    assert decision.catalogue.version == 1
    assert session.get(Provider, world["provider"].id).verified_catalogue_id == world["catalogue"].id


def test_provider_page_suspends_with_a_reason(client, session, world):
    provider = world["provider"]
    provider.verification_status = VerificationStatus.VERIFIED
    from backoffice.models import ListingStatus
    provider.listing_status = ListingStatus.LISTED
    session.commit()
    login(client, world["researcher"])
    url = f"/admin/review/provider/{provider.id}"
    missing = client.post(f"{url}/suspend", data={"reason": ""})
    assert missing.status_code == 400 and any("Give a reason: it is kept in the audit trail." in e for e in errors(missing))
    assert client.post(f"{url}/suspend", data={"reason": "critical finding"}).status_code == 302
    session.expire_all()
    assert session.get(Provider, provider.id).listing_status == ListingStatus.SUSPENDED
    assert session.scalar(select(Location.state).where(Location.provider_id == provider.id)) == "VA"


def test_the_case_page_shows_lists_and_locations_as_readable_lines_not_json(client, session, world):
    proposed = {"levels_of_care": ["outpatient", "iop", "not_a_code"],
                "principals": [{"name": "Dr. Ada Byron", "role": "medical_director", "npi": None}],
                "locations": [{"street1": "12 Main St", "street2": None, "city": "Charlottesville <b>x</b>",
                               "state": "VA", "zip": "22902"}],
                "services": []}
    submission = submitted(session, world["member"], world["provider"], proposed=proposed)
    login(client, world["researcher"])
    page = client.get(f"/admin/review/case/{submission.id}").get_data(as_text=True)
    table = page[page.index('id="proposed-vs-current"'):]
    table = table[:table.index("</table>")]
    rows = {label: re.findall(r'<td class="small profile-value">(.*?)</td>', cells, re.S)[1]  # the proposed column
            for label, cells in re.findall(r'<th class="small">([^<]+)</th>(.*?)</tr>', table, re.S)}

    levels = rows["Levels of care"]
    # Codes in the words the provider chose them by; anything else as it was given.
    assert re.findall(r"<li>([^<]+)</li>", levels) == ["Outpatient", "Intensive outpatient (IOP)", "not_a_code"]
    location = rows["Locations"]
    assert re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", location) == [
        ("Street", "12 Main St"), ("City", "Charlottesville &lt;b&gt;x&lt;/b&gt;"), ("State", "VA"),
        ("ZIP code", "22902")]
    assert "Street (line 2)" not in location  # an empty part of an address is left out, not shown as null
    assert re.findall(r"<dt>([^<]+)</dt><dd>([^<]*)</dd>", rows["Principals"]) == [
        ("Name", "Dr. Ada Byron"), ("Role", "Medical director")]
    assert '<span class="text-muted">none</span>' in rows["Services"]
    for raw in ('{"', "&#34;street1&#34;", "[&#34;", "null", "<pre"):
        assert raw not in table, raw


def test_publishing_the_current_criteria_again_is_refused_on_the_page_and_changes_nothing(client, session, world):
    from tests.test_catalogue_editor import editor_form

    login(client, world["lead"])
    unchanged = editor_form(client.get("/admin/catalogue/next").get_data(as_text=True))
    events = session.scalar(select(func.count()).select_from(AuditEvent))
    for notes in ("", "same criteria, new words about them"):
        unchanged["notes"] = notes or "First try"
        refused = client.post("/admin/catalogue/publish", data=unchanged)
        assert refused.status_code == 400
        assert "This is the same as v1: nothing to publish" in errors(refused)
    assert [c.version for c in session.scalars(select(CriteriaCatalogue))] == [1]
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == events


def test_the_cli_refuses_to_publish_the_same_file_twice(app, session):
    from tests.review_helpers import CATALOGUE

    runner = app.test_cli_runner()
    first = runner.invoke(args=["criteria", "publish", str(CATALOGUE)])
    assert first.exit_code == 0 and "Published criteria catalogue v1" in first.output
    again = runner.invoke(args=["criteria", "publish", str(CATALOGUE)])
    assert again.exit_code == 1
    assert "This is the same as v1: nothing to publish. Nothing was published." in again.output
    assert [c.version for c in session.scalars(select(CriteriaCatalogue))] == [1]
