"""Redis down (REDIS_URL names a port nothing listens on): the web keeps answering.

Sign-in, the feed, its OpenAPI document and a research decision go through; the rate limits are counted in the
process's memory instead, with one warning in the log however many requests come; the sign-in lock-out, which
lives in the database, still locks.
"""
from __future__ import annotations

import logging
import re
import socket
import threading
import time

import pytest
from flask import Flask
from sqlalchemy import select

from backoffice.extensions import db
from backoffice.models import Decision, Provider, Role, VerificationStatus
from tests.conftest import PASSWORD, login
from tests.review_helpers import assess_all, in_review, provider_member, publish_catalogue, submitted
from tests.security_helpers import TOO_MANY, new_client, page_text
from tests.test_feed import listed
from tests.test_startup import closed_port

FALLBACK_WARNING = "Rate limit storage unreachable - falling back to in-memory storage"


@pytest.fixture
def redis_down_app(make_app) -> Flask:
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    with app.app_context():
        yield app
        db.session.rollback()


@pytest.fixture
def hung_redis():
    """A server that accepts connections and never answers: a Redis stuck or behind a dead link."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def fallback_warnings(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if FALLBACK_WARNING in record.getMessage()]


def test_sign_in_the_feed_and_its_description_answer_and_the_fallback_is_logged_once(
        redis_down_app, make_account, make_provider, caplog):
    caplog.set_level(logging.INFO)
    listed(make_provider, public_name="Blue Ridge Recovery")
    researcher, member = make_account(Role.RESEARCHER), make_account(Role.PROVIDER)

    staff = redis_down_app.test_client()
    assert login(staff, researcher).headers["Location"] == "/admin/"
    assert "Review queue" in page_text(staff.get("/admin/review/"))
    provider = redis_down_app.test_client()
    assert login(provider, member).headers["Location"] == "/portal/"

    for _ in range(3):
        feed = redis_down_app.test_client().get("/api/v1/listings")
        assert feed.status_code == 200
        assert [entry["public_name"] for entry in feed.json["listings"]] == ["Blue Ridge Recovery"]
        description = redis_down_app.test_client().get("/api/v1/openapi.json")
        assert description.status_code == 200 and description.json["openapi"].startswith("3.")
    assert len(fallback_warnings(caplog)) == 1, [r.getMessage() for r in caplog.records]


def test_the_limits_still_count_in_memory_while_redis_is_down(make_app, make_account):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", LOGIN_RATE_LIMIT="3 per minute")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        browser = app.test_client()
        for _ in range(3):
            assert browser.post("/login", data={"email": account.email, "password": "not it"}).status_code == 200
        refused = browser.post("/login", data={"email": account.email, "password": PASSWORD})
        assert refused.status_code == 429 and "(the limit is 3 per 1 minute)" in page_text(refused)
        db.session.rollback()


def test_the_lock_out_in_the_database_still_locks_while_redis_is_down(make_app, make_account):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", LOGIN_ACCOUNT_RATE_LIMIT="2 per 15 minutes")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        for n in range(2):  # each from an address of its own: only the lock-out per e-mail address decides
            assert new_client(app).post("/login", data={"email": account.email, "password": f"no {n}"}).status_code == 200
        locked = new_client(app).post("/login", data={"email": account.email, "password": PASSWORD})
        assert locked.status_code == 429 and TOO_MANY in page_text(locked)
        assert "(the limit is 2 per 15 minute)" in page_text(locked)
        db.session.rollback()


def test_a_research_decision_is_made_through_the_pages_while_redis_is_down(redis_down_app, session, make_account,
                                                                            make_provider):
    publish_catalogue(session)
    provider = make_provider(public_name="Blue Ridge Recovery")
    researcher = make_account(Role.RESEARCHER)
    submission = submitted(session, provider_member(session, make_account, provider), provider,
                           proposed={"public_name": "Blue Ridge Recovery", "levels_of_care": ["outpatient"]})
    in_review(session, researcher, submission)
    assess_all(session, researcher, submission)
    browser = redis_down_app.test_client()
    login(browser, researcher)
    case_url = f"/admin/review/case/{submission.id}"
    page = browser.get(case_url).get_data(as_text=True)
    version = re.search(r'name="version" type="hidden" value="(\d+)"', page).group(1)
    decided = browser.post(f"{case_url}/decide", data={"version": version, "outcome": "approved",
                                                       "provider_note": "Listed: welcome.", "internal_note": ""})
    assert decided.status_code == 302
    shown = " ".join(re.sub(r"<[^>]+>", " ", page_text(browser.get(decided.headers["Location"]))).split())
    assert "Decision recorded." in shown and "approved (researcher" in shown
    session.expire_all()
    assert session.scalar(select(Decision.outcome).where(Decision.submission_id == submission.id)).value == "approved"
    assert session.get(Provider, provider.id).verification_status == VerificationStatus.VERIFIED


def test_a_redis_that_hangs_delays_a_request_by_about_a_second_at_most(make_app, make_account, hung_redis):
    """Each wait on Redis ends after REDIS_WEB_TIMEOUT_SECONDS (1); the limiter tries Redis again now and then,
    so a request may pay that second again, never more. (Without the timeout the first sign-in never returns.)"""
    app = make_app(REDIS_URL=hung_redis)
    with app.app_context():
        account = make_account(Role.PROVIDER)
        took = []
        for _ in range(3):
            started = time.monotonic()
            assert app.test_client().post("/login", data={"email": account.email, "password": PASSWORD}) \
                .headers["Location"] == "/portal/"
            assert app.test_client().get("/api/v1/listings").status_code == 200
            ready = app.test_client().get("/readyz")
            assert ready.json == {"status": "degraded", "database": "ok", "broker": "unavailable"}
            took.append(time.monotonic() - started)
        # Three requests, each at most one wait on Redis, plus slack for a busy machine.
        assert max(took) < 3 * 1 + 3, took
        db.session.rollback()
