"""Re-checks -> Work in flight: what staff read about work not yet done, and the retry of failed work."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from backoffice.models import AuditEvent, CheckKind, Role, Work, WorkKind, WorkState, utcnow
from backoffice.services import audit_publish, impact, work
from tests.conftest import login
from tests.page_text import readability_problems, visible_text
from tests.review_helpers import publish_catalogue


@pytest.fixture(autouse=True)
def empty_queue(app):
    yield
    with app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])


@pytest.fixture
def rows(app, session, make_provider):
    """A running website check (taken twice), a failed NPI check, a done one and a waiting expiry sweep."""
    provider = make_provider(public_name="Harbor Light Recovery")
    policy = work.Policy.from_config(app.config)
    running, failed, done = (
        work.request(session, "system:recheck-sweep", work.check_spec(WorkKind.SCHEDULED_CHECK, provider.id, check, "w"),
                     policy) for check in (CheckKind.WEBSITE, CheckKind.NPI, CheckKind.EXCLUSION))
    sweep = work.request(session, "system:test", work.Spec(WorkKind.EXPIRY_SWEEP, "sweep", "verification_expiry",
                                                           "sweep:verification_expiry"), policy)
    session.commit()
    now = utcnow()
    session.execute(update(Work).where(Work.id == running.id).values(
        state=WorkState.RUNNING, attempts=2, created_at=now - timedelta(minutes=7)))
    session.execute(update(Work).where(Work.id == failed.id).values(
        state=WorkState.FAILED, attempts=5, created_at=now - timedelta(hours=3),
        last_error="A worker took it 5 times and never finished it within its lease (300 s)"))
    session.execute(update(Work).where(Work.id == done.id).values(state=WorkState.DONE))
    session.execute(update(Work).where(Work.id == sweep.id).values(state=WorkState.REQUESTED, attempts=0))
    session.commit()
    return {"provider": provider, "running": running, "failed": failed, "done": done, "sweep": sweep}


def test_staff_read_the_work_in_flight_in_words(client, make_account, rows):
    login(client, make_account(Role.RESEARCHER))
    page = client.get("/admin/work/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    text = visible_text(html)
    assert "scheduled re-check website check of Harbor Light Recovery running 7 minutes ago, by system:recheck-sweep " \
           "taken 2 times of 5 allowed" in " ".join(text.split())
    assert "NPI check of Harbor Light Recovery failed 3 hours ago" in " ".join(text.split())
    assert "A worker took it 5 times and never finished it within its lease (300 s)" in text
    assert "verification-expiry sweep every lapsed verification waiting for the worker queue" in " ".join(text.split())
    assert "not taken by a worker yet" in text
    assert "In all: 1 waiting for the worker queue, 1 running, 1 failed." in text
    assert "exclusion screening check" not in text  # done work is not in flight
    assert html.count(">Retry<span class=\"sr-only\"> work #") == 1  # only the failed row
    assert readability_problems(html) == []


def test_the_page_is_for_researchers_and_leads_only(client, make_account, rows):
    for role, status in ((Role.AUDITOR, 403), (Role.ADMIN, 403), (Role.RESEARCH_LEAD, 200)):
        login(client, make_account(role))
        assert client.get("/admin/work/").status_code == status, role
        client.get("/logout")
    login(client, make_account(Role.AUDITOR))
    assert client.post(f"/admin/work/{rows['failed'].id}/retry").status_code == 403


def test_a_researcher_retries_failed_work_audited_and_sent(app, client, session, make_account, rows):
    researcher = make_account(Role.RESEARCHER)
    login(client, researcher)
    page = client.post(f"/admin/work/{rows['failed'].id}/retry", follow_redirects=True)
    assert f"Work #{rows['failed'].id} was sent again, with a fresh count of attempts." in visible_text(
        page.get_data(as_text=True))
    session.rollback()
    row = session.get(Work, rows["failed"].id)
    assert (row.state, row.attempts) == (WorkState.SENT, 0)
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "work.retried"))
    assert event.actor == f"user:{researcher.id}" and event.provider_id == rows["provider"].id


def test_retrying_work_that_has_not_failed_says_why_and_changes_nothing(client, session, make_account, rows):
    login(client, make_account(Role.RESEARCHER))
    page = client.post(f"/admin/work/{rows['running'].id}/retry", follow_redirects=True)
    assert f"Work #{rows['running'].id} was not retried: Only failed work can be retried; this is running." in \
        visible_text(page.get_data(as_text=True))
    session.rollback()
    assert session.get(Work, rows["running"].id).attempts == 2
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "work.retried")) is None


def test_a_retry_needs_the_csrf_token(make_app, make_account):
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        account = make_account(Role.RESEARCH_LEAD)
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        client.post("/login", data={"email": account.email, "password": "correct horse battery staple",
                                    "csrf_token": token})
        assert client.post("/admin/work/1/retry").status_code == 400


def test_a_publications_re_reviews_and_a_grants_checkpoint_are_named_in_words(app, client, session, make_account):
    catalogue = publish_catalogue(session)
    policy = work.Policy.from_config(app.config)
    work.request(session, "system:test", impact.rereviews_spec(catalogue.id, "system:test"), policy)
    work.request(session, "system:test", audit_publish.grant_spec(41), policy)
    session.commit()
    login(client, make_account(Role.RESEARCHER))
    text = " ".join(visible_text(client.get("/admin/work/").get_data(as_text=True)).split())
    assert f"the re-reviews criteria v{catalogue.version} scheduled" in text
    assert "the audit trail's head after decision #41 granted a verification" in text
    assert "every lapsed verification" not in text
