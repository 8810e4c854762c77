"""Findings acknowledged or dismissed in a batch from the worklist: one reason, each audited, all or none."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from backoffice.models import AuditEvent, CheckKind, Finding, FindingSeverity, FindingState, Role
from backoffice.services import findings
from tests.conftest import login
from tests.page_text import visible_text


@pytest.fixture
def open_findings(session, make_provider):
    provider = make_provider()
    made = []
    for n in range(3):
        finding, _ = findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, f"website:{n}",
                                             FindingSeverity.WARNING, f"Website problem {n}", {})
        made.append(finding)
    session.commit()
    return made


def events(session, action):
    session.rollback()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_a_researcher_dismisses_ticked_findings_with_one_reason_each_audited(client, session, make_account,
                                                                             open_findings):
    first, second, third = open_findings
    login(client, make_account(Role.RESEARCHER))
    page = client.get("/admin/finding-work/").get_data(as_text=True)
    assert 'id="bulk-findings"' in page and f'name="ids" value="{first.id}"' in page
    answer = client.post("/admin/finding-work/bulk", data={
        "ids": [str(first.id), str(third.id)], "action": "dismiss", "reason": "The site moved; both are stale"})
    assert answer.status_code == 302
    assert "2 findings dismissed." in visible_text(client.get(answer.headers["Location"]).get_data(as_text=True))
    dismissed = events(session, "finding.dismissed")
    assert [(e.entity_id, e.reason) for e in dismissed] == [
        (str(first.id), "The site moved; both are stale"), (str(third.id), "The site moved; both are stale")]
    states = {f.id: f.state for f in session.scalars(select(Finding))}
    assert states == {first.id: FindingState.DISMISSED, second.id: FindingState.OPEN, third.id: FindingState.DISMISSED}


def test_one_finding_that_cannot_be_acknowledged_leaves_every_one_as_it_was(client, session, make_account,
                                                                            open_findings):
    first, second, _ = open_findings
    findings.acknowledge(session, "system:test", second, "seen")  # already acknowledged
    session.commit()
    before = len(events(session, "finding.acknowledged"))
    login(client, make_account(Role.RESEARCHER))
    answer = client.post("/admin/finding-work/bulk", data={
        "ids": [str(first.id), str(second.id)], "action": "acknowledge", "reason": "Looking into these"})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    text = visible_text(page)
    assert "Nothing was acknowledged" in text and f"Finding #{second.id} (Website problem 1):" in text
    assert re.search(rf'value="{first.id}" form="bulk-findings" id="tick-{first.id}"\s+checked', page)
    assert "Looking into these" in page
    assert len(events(session, "finding.acknowledged")) == before
    assert session.get(Finding, first.id).state == FindingState.OPEN


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "dismiss", "reason": "A good reason"}, "Choose at least one finding."),
    ({"ids": ["x"], "action": "dismiss", "reason": "A good reason"}, "Those are not finding numbers"),
    ({"ids": ["987654"], "action": "dismiss", "reason": "A good reason"}, "Finding #987654 does not exist."),
    ({"ids": ["1"], "action": "delete", "reason": "A good reason"}, "Not a valid choice"),
    ({"ids": ["1"], "action": "dismiss", "reason": "no"}, "between 3 and 2000 characters"),
])
def test_bad_bulk_posts_say_why_and_change_nothing(client, session, make_account, open_findings, data, message):
    login(client, make_account(Role.RESEARCHER))
    answer = client.post("/admin/finding-work/bulk", data=data)
    assert answer.status_code == 400
    assert message in visible_text(answer.get_data(as_text=True))
    assert events(session, "finding.dismissed") == []
    assert {f.state for f in session.scalars(select(Finding))} == {FindingState.OPEN}


def test_auditors_see_no_bulk_form_and_cannot_post_one(client, session, make_account, open_findings):
    login(client, make_account(Role.AUDITOR))
    assert 'id="bulk-findings"' not in client.get("/admin/finding-work/").get_data(as_text=True)
    answer = client.post("/admin/finding-work/bulk", data={
        "ids": [str(open_findings[0].id)], "action": "dismiss", "reason": "not mine to do"})
    assert answer.status_code == 403 and events(session, "finding.dismissed") == []
