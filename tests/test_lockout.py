"""The sign-in lock-out per e-mail address and the second-factor lock-out per account hold across every web
process without Redis: failed attempts are counted in the database.

Each attempt comes from a browser at an address of its own, so the per-client limit (LOGIN_RATE_LIMIT, kept
by Flask-Limiter) never decides; only the lock-out does.
"""
from __future__ import annotations

import html
import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text

from backoffice.extensions import db
from backoffice.models import Account, AttemptKind, FailedAttempt, Role
from backoffice.services import lockout
from tests.conftest import BACKEND, PASSWORD, fresh_code
from tests.security_helpers import TOO_MANY, new_client, page_text, wrong_code

ROOT = Path(__file__).resolve().parent.parent
NO_MATCH = "That e-mail address and password do not match an active account."
LOCKED = "You have tried this too often (the limit is 10 per 15 minute). Try again once that time has passed."


def _wrong(app, email: str, n: int):
    return new_client(app).post("/login", data={"email": email, "password": f"wrong guess {n}"})


def _attempts(session) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(FailedAttempt))


def _age_attempts(session, minutes: int) -> None:
    """As if the attempts had been made that many minutes earlier."""
    session.expire_all()
    for attempt in session.scalars(select(FailedAttempt)):
        attempt.attempted_at -= timedelta(minutes=minutes)
    session.commit()


# -- (a) through the pages --------------------------------------------------------------------------------


def test_the_eleventh_attempt_is_refused_even_with_the_right_password(app, session, make_account):
    account = make_account(Role.PROVIDER)
    for n in range(10):
        refused = _wrong(app, account.email, n)
        assert refused.status_code == 200 and NO_MATCH in page_text(refused)
    browser = new_client(app)
    eleventh = browser.post("/login", data={"email": account.email, "password": PASSWORD})
    assert eleventh.status_code == 429
    assert TOO_MANY in page_text(eleventh) and LOCKED in page_text(eleventh)
    assert browser.get("/portal/").status_code == 302  # not signed in
    # The address is locked however it is typed.
    shouted = new_client(app).post("/login", data={"email": f"  {account.email.upper()} ", "password": PASSWORD})
    assert shouted.status_code == 429
    assert _attempts(session) == 10

    # Once the window has passed the right password signs in again, and the old attempts are pruned.
    _age_attempts(session, 16)
    assert new_client(app).post("/login", data={"email": account.email, "password": PASSWORD}).status_code == 302
    assert _wrong(app, account.email, 99).status_code == 200
    assert _attempts(session) == 1


def test_an_unknown_address_is_locked_out_with_the_same_page(app, session, make_account):
    account = make_account(Role.PROVIDER)
    pages = {}
    for email in (account.email, "nobody@example.org"):
        for n in range(10):
            assert _wrong(app, email, n).status_code == 200
        last = new_client(app).post("/login", data={"email": email, "password": PASSWORD})
        assert last.status_code == 429
        pages[email] = re.sub(r"\s+", " ", page_text(last).replace(email, "ADDRESS"))
        pages[email] = re.sub(r'nonce="[^"]+"|name="csrf_token" value="[^"]+"', "", pages[email])
    assert pages[account.email] == pages["nobody@example.org"]
    assert LOCKED in pages["nobody@example.org"]


def test_successful_sign_ins_cost_nothing_and_other_addresses_are_not_affected(app, session, make_account):
    account, other = make_account(Role.PROVIDER), make_account(Role.PROVIDER)
    for n in range(9):
        _wrong(app, account.email, n)
    for _ in range(5):
        assert new_client(app).post("/login", data={"email": account.email, "password": PASSWORD}).status_code == 302
    assert _attempts(session) == 9
    assert _wrong(app, account.email, 9).status_code == 200
    assert new_client(app).post("/login", data={"email": account.email, "password": PASSWORD}).status_code == 429
    assert new_client(app).post("/login", data={"email": other.email, "password": PASSWORD}).status_code == 302


def test_the_lock_out_holds_across_two_web_processes(make_app, make_account):
    """Two applications on one database, each with its own in-memory Flask-Limiter, as two gunicorn workers."""
    first, second = make_app(), make_app()
    with first.app_context():
        account = make_account(Role.PROVIDER)
        email = account.email
    for n in range(10):
        app = (first, second)[n % 2]
        with app.app_context():
            assert _wrong(app, email, n).status_code == 200
    for app in (first, second):
        with app.app_context():
            assert new_client(app).post("/login", data={"email": email, "password": PASSWORD}).status_code == 429


def test_attempts_racing_from_two_processes_let_at_most_the_limit_through(make_app, make_account):
    first, second = make_app(), make_app()
    with first.app_context():
        email = make_account(Role.PROVIDER).email
    statuses, errors = [], []
    start = threading.Barrier(20)

    def attempt(n: int):
        app = (first, second)[n % 2]
        try:
            with app.app_context():
                client = new_client(app)
                start.wait(timeout=30)
                statuses.append(client.post("/login", data={"email": email, "password": f"guess {n}"}).status_code)
                db.session.remove()
        except Exception as exc:  # a crash must not pass for a refusal
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(statuses) == 20 and set(statuses) <= {200, 429}
    print(f"two processes racing: {statuses.count(200)} of 20 wrong passwords let through")
    # Racing attempts take turns on the key: exactly the limit are judged, the rest refused unjudged.
    assert statuses.count(200) == 10 and statuses.count(429) == 10
    with first.app_context():
        assert _attempts(db.session) == 10  # the refused ones left nothing behind
        assert new_client(first).post("/login", data={"email": email, "password": PASSWORD}).status_code == 429


# -- the second factor, per account ----------------------------------------------------------------------


def test_wrong_codes_lock_the_account_across_two_web_processes(make_app, make_account):
    first, second = make_app(), make_app()
    with first.app_context():
        account = make_account(Role.RESEARCHER)
        account_id, email, secret = account.id, account.email, account.totp_secret
    browsers = []
    for app in (first, second):
        with app.app_context():
            browser = new_client(app)
            assert browser.post("/login", data={"email": email, "password": PASSWORD}).headers["Location"] \
                == "/login/code"
            browsers.append((app, browser))
    for n in range(5):
        app, browser = browsers[n % 2]
        with app.app_context():
            refused = browser.post("/login/code", data={"code": wrong_code(secret)})
            assert refused.status_code == 400 and "That code is not right" in page_text(refused)
    for app, browser in browsers:
        with app.app_context():
            blocked = browser.post("/login/code", data={"code": fresh_code(db.session.get(Account, account_id))})
            assert blocked.status_code == 429
            assert "(the limit is 5 per 15 minute)" in page_text(blocked)
            assert browser.get("/admin/").status_code == 302


def test_the_security_page_counts_wrong_current_passwords_per_account_in_the_database(make_app, make_account):
    first, second = (make_app(LOGIN_ACCOUNT_RATE_LIMIT="2 per 15 minutes") for _ in range(2))
    with first.app_context():
        email = make_account(Role.PROVIDER).email
    change = {"current": "not my password", "password": "a completely new passphrase",
              "confirm": "a completely new passphrase", "submit": "Change password"}
    for app in (first, second):
        with app.app_context():
            browser = new_client(app)
            assert browser.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
            assert browser.post("/account/security", data=change).status_code == 400
    with second.app_context():
        blocked = browser.post("/account/security", data={**change, "current": PASSWORD})
        assert blocked.status_code == 429 and "(the limit is 2 per 15 minute)" in page_text(blocked)
        assert db.session.scalar(select(FailedAttempt.kind).limit(1)) == AttemptKind.ACCOUNT_SECURITY


# -- the table --------------------------------------------------------------------------------------------


def test_the_count_is_served_by_an_index(app, session):
    lockout.begin(db.engine, AttemptKind.SIGN_IN, "someone@example.org", "10 per 15 minutes")
    count = ("SELECT count(*) FROM failed_attempt WHERE kind = 'sign_in' AND key = 'someone@example.org' "
             "AND attempted_at > '2000-01-01'")
    if BACKEND == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(row[0] for row in session.execute(text("EXPLAIN " + count)))
    else:
        plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + count)))
    session.rollback()
    assert "ix_failed_attempt_kind_key_at" in plan, plan


# -- (b) a real gunicorn with two workers -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A browser that opens a fresh connection for every request and keeps its session cookie."""

    def __init__(self, port: int):
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Connection": "close"}
        if self.cookie:
            headers["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie" and value.startswith("session="):
                    self.cookie = value.split(";", 1)[0]
            return response.status, html.unescape(response.read().decode())
        finally:
            conn.close()

    def sign_in(self, email: str, password: str) -> tuple[int, str]:
        status, page = self.request("GET", "/login")
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
        assert status == 200 and token, page[:500]
        return self.request("POST", "/login", {"csrf_token": token.group(1) or token.group(2), "email": email,
                                               "password": password})


@pytest.fixture
def gunicorn(database_url, tmp_path):
    """The web app as `make run` serves it: gunicorn, two sync workers, rate limits in memory, this test's
    database; the per-client limit raised so that only the lock-out decides."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "RATELIMIT_STORAGE_URI")}
    env.update(BACKOFFICE_ENV="development", BACKOFFICE_INSTANCE_PATH=str(tmp_path / "instance"),
               DATABASE_URL=database_url, SECRET_KEY="lock-out test secret key of some length",
               BROKER_FOLDER=str(tmp_path / "broker"), OUTBOX_FOLDER=str(tmp_path / "outbox"),
               LOGIN_RATE_LIMIT="1000 per minute", SWEEP_ON_WORKER_START="false")
    log = tmp_path / "gunicorn.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--access-logfile", "-",
         "--access-logformat", "worker=%(p)s %(m)s %(U)s %(s)s", "backoffice:create_app()"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if Browser(port).request("GET", "/login")[0] == 200:
                break
        except OSError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)
    yield port, log
    process.terminate()
    process.wait(timeout=30)


def test_two_gunicorn_workers_let_at_most_ten_wrong_passwords_through(gunicorn, app, session, make_account):
    port, log = gunicorn
    email = make_account(Role.PROVIDER).email
    outcomes, errors = [], []

    def attacker(n: int):
        try:
            for k in range(4):
                status, page = Browser(port).sign_in(email, f"guess {n}-{k}")
                outcomes.append("let through" if status == 200 and NO_MATCH in page else
                                "refused" if status == 429 and LOCKED in page else f"{status}: {page[:300]}")
        except Exception as exc:
            errors.append(exc)

    # Five attackers at once, twenty wrong passwords in all, each over fresh connections.
    threads = [threading.Thread(target=attacker, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert errors == []
    assert len(outcomes) == 20 and set(outcomes) <= {"let through", "refused"}, outcomes
    let_through = outcomes.count("let through")
    print(f"two gunicorn workers: {let_through} of 20 wrong passwords let through, {20 - let_through} refused")
    assert let_through <= 10
    assert let_through == 10  # attempts take turns on the key, so the count is exact, not only bounded
    # Both workers answered sign-ins: the count held across processes, not inside one.
    served = log.read_text()
    assert len(set(re.findall(r"worker=<(\d+)> POST /login (?:200|429)", served))) == 2, served
    for _ in range(2):
        status, page = Browser(port).sign_in(email, PASSWORD)
        assert status == 429 and LOCKED in page
    assert _attempts(session) == 10
