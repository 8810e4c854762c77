"""Finding workflow pages: researchers act with a reason (audited), auditors read only, CSRF is required."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from backoffice.models import (
    AuditEvent,
    CheckKind,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    FindingSeverity,
    FindingState,
    Role,
)
from backoffice.services import findings
from tests.conftest import login


@pytest.fixture
def finding(session, make_provider):
    provider = make_provider(public_name="Harbor <script>alert(1)</script> Center")
    source = ExclusionSource(list_name="oig_leie", file_name="2001EXCL.csv", sha256="a" * 64, row_count=1,
                             imported_by="system:test")
    session.add(source)
    session.flush()
    record = ExclusionRecord(source_id=source.id, list_name="oig_leie", kind=ExclusionRecordKind.EXCLUSION,
                             row_key="b" * 64, business_name="HARBOR CENTER", name_key="HARBOR CENTER", state="VA",
                             city="RICHMOND", raw={"ADDRESS": "9 <b>ELM</b> ST"})
    session.add(record)
    session.flush()
    opened, _ = findings.open_or_update(
        session, "system:test", provider, CheckKind.EXCLUSION, f"exclusion:{record.row_key}",
        FindingSeverity.WARNING, "Probable exclusion match",
        {"exclusion_record_id": record.id, "matched_by": "name and state", "confidence": 0.75,
         "party": {"role": "organisation", "name": provider.public_name},
         "record": {"name": "HARBOR CENTER", "state": "VA", "address": "9 <b>ELM</b> ST", "source_file": "2001EXCL.csv"}},
    )
    session.commit()
    return opened


POSTS = ["acknowledge", "resolve", "dismiss", "confirm"]


def test_side_by_side_page_escapes_provider_and_list_text(client, make_account, finding):
    login(client, make_account(Role.AUDITOR))
    page = client.get(f"/admin/finding-work/{finding.id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "side-by-side" in html and "2001EXCL.csv" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>ELM</b>" not in html
    assert 'id="finding-actions"' not in html  # auditors see no forms
    assert client.get("/admin/finding-work/").status_code == 200
    assert client.get(f"/admin/finding-work/provider/{finding.provider_id}").status_code == 200


def test_auditor_gets_403_on_every_post(client, session, make_account, finding):
    login(client, make_account(Role.AUDITOR))
    for action in POSTS:
        assert client.post(f"/admin/finding-work/{finding.id}/{action}", data={"reason": "x" * 10}).status_code == 403
    assert client.post(f"/admin/finding-work/provider/{finding.provider_id}/recheck").status_code == 403
    session.refresh(finding)
    assert finding.state == FindingState.OPEN


def test_researcher_confirms_then_resolves_with_reasons_audited(client, session, make_account, finding):
    researcher = make_account(Role.RESEARCHER)
    login(client, researcher)
    assert client.post(f"/admin/finding-work/{finding.id}/resolve", data={"reason": ""}).status_code == 400
    session.refresh(finding)
    assert finding.state == FindingState.OPEN  # no reason, nothing changed
    client.post(f"/admin/finding-work/{finding.id}/acknowledge", data={"reason": "", "row_version": finding.row_version})
    session.refresh(finding)
    assert finding.state == FindingState.ACKNOWLEDGED
    client.post(f"/admin/finding-work/{finding.id}/confirm",
                data={"reason": "same entity: address and owner match", "row_version": finding.row_version})
    session.refresh(finding)
    assert finding.severity == FindingSeverity.CRITICAL and finding.detail["confirmed"]
    stale = finding.row_version - 1
    response = client.post(f"/admin/finding-work/{finding.id}/resolve",
                           data={"reason": "listing delisted", "row_version": stale}, follow_redirects=True)
    assert "Someone changed this finding" in response.get_data(as_text=True)
    client.post(f"/admin/finding-work/{finding.id}/resolve",
                data={"reason": "listing delisted", "row_version": finding.row_version})
    session.refresh(finding)
    assert finding.state == FindingState.RESOLVED and finding.close_reason == "listing delisted"
    assert finding.closed_by == f"user:{researcher.id}"
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "finding")
                              .order_by(AuditEvent.seq)).all()
    assert actions == ["finding.opened", "finding.acknowledged", "finding.exclusion_confirmed", "finding.resolved"]


def test_posts_need_the_csrf_token(make_app, make_account, make_provider):
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        from backoffice.extensions import db

        account = make_account(Role.RESEARCH_LEAD)
        provider = make_provider()
        client = app.test_client()
        # Sign in with a token taken from the login form.
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        client.post("/login", data={"email": account.email, "password": "correct horse battery staple",
                                    "csrf_token": token})
        assert client.post(f"/admin/finding-work/provider/{provider.id}/recheck").status_code == 400
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "recheck.requested")) is None


def test_recheck_now_is_audited_and_queues_three_checks(app, client, session, make_account, make_provider):
    from tests.celery_helpers import queued_messages

    provider = make_provider()
    login(client, make_account(Role.RESEARCHER))
    assert client.post(f"/admin/finding-work/provider/{provider.id}/recheck").status_code == 302
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "recheck.requested"))
    assert event.provider_id == provider.id and event.after["checks"] == ["website", "npi", "exclusion"]
    assert queued_messages(app) == 3
    with app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])


@pytest.mark.parametrize("version", ["\u00b2", "9" * 5000, "1x"], ids=["superscript", "huge", "junk"])
def test_a_mangled_row_version_changes_nothing_and_is_not_a_500(client, session, make_account, finding, version):
    login(client, make_account(Role.RESEARCHER))
    response = client.post(f"/admin/finding-work/{finding.id}/resolve",
                           data={"reason": "listing delisted", "row_version": version})
    assert response.status_code == 409
    assert "This page is out of date or was changed: reload it and try again." in response.get_data(as_text=True)
    session.refresh(finding)
    assert finding.state == FindingState.OPEN
