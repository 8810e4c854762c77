"""Sessions (a fresh one at sign-in, staff idle time, cookie flags, security headers) and passwords (change,
the common-password check, Argon2 rehash, lock-out per address)."""
import re
import time

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

import config
from backoffice.auth.passwords import needs_rehash, verify_password
from backoffice.auth.views import LAST_SEEN, PASSED
from backoffice.models import Account, Notification, Role
from tests.conftest import PASSWORD, login
from tests.portal_helpers import mailed_path
from tests.security_helpers import TOO_MANY, audit_events, new_client, page_text, signed_in, without_nonces

NEW_PASSWORD = "a completely new passphrase"
COMMON = "That password is one of the most common ones and is easy to guess. Choose another."
TOO_SHORT = "Use at least 12 characters."
HOME = {Role.PROVIDER: "/portal/", Role.RESEARCHER: "/admin/"}


def _set_last_seen(client, seconds_ago: int) -> None:
    with client.session_transaction() as browser_session:
        browser_session[LAST_SEEN] = int(time.time()) - seconds_ago


def _session_cookie_header(response) -> str:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]
    return header


# -- a new session at sign-in -------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.PROVIDER, Role.RESEARCHER], ids=lambda r: r.value)
def test_sign_in_starts_a_new_session(app, client, make_account, role):
    account = make_account(role)
    client.get("/login")
    with client.session_transaction() as browser_session:
        browser_session["planted"] = "set before sign-in"
        browser_session[PASSED] = int(time.time())  # a second-factor mark smuggled in ahead of the password
    before = client.get_cookie("session").value
    copy = new_client(app)
    copy.set_cookie("session", before)

    if role == Role.RESEARCHER:
        assert client.post("/login", data={"email": account.email, "password": PASSWORD}).status_code == 302
        assert client.get("/admin/").status_code == 302  # the planted mark does not stand in for the code
    assert login(client, account).status_code == 302
    assert client.get(HOME[role]).status_code == 200

    assert client.get_cookie("session").value != before
    with client.session_transaction() as browser_session:
        assert "planted" not in browser_session
        assert browser_session["_user_id"] == f"{account.id}:{account.session_version}"
    assert copy.get(HOME[role]).status_code == 302  # whoever kept the old cookie is not signed in


# -- staff idle time ----------------------------------------------------------------------------------


def test_staff_are_signed_out_after_the_idle_time(app, client, make_account):
    login(client, make_account(Role.RESEARCHER))
    idle_limit = app.config["STAFF_IDLE_TIMEOUT_MINUTES"] * 60

    _set_last_seen(client, idle_limit - 60)
    assert client.get("/admin/").status_code == 200
    with client.session_transaction() as browser_session:
        assert browser_session[LAST_SEEN] >= int(time.time()) - 5  # each request restarts the clock

    _set_last_seen(client, idle_limit + 1)
    ended = client.get("/admin/providers/")
    assert ended.status_code == 302 and ended.headers["Location"].startswith("/login?next=")
    assert "/admin/providers/" in ended.headers["Location"].replace("%2F", "/")
    message = f"You were signed out after {app.config['STAFF_IDLE_TIMEOUT_MINUTES']} minutes without activity."
    assert message in page_text(client.get(ended.headers["Location"]))
    assert client.get("/admin/").status_code == 302
    with client.session_transaction() as browser_session:
        assert "_user_id" not in browser_session


def test_the_idle_time_is_a_setting(make_app, make_account):
    app = make_app(STAFF_IDLE_TIMEOUT_MINUTES=5)
    with app.app_context():
        browser = signed_in(app, make_account(Role.AUDITOR))
        _set_last_seen(browser, 5 * 60 + 1)
        assert browser.get("/admin/").status_code == 302
        assert "signed out after 5 minutes" in page_text(browser.get("/login"))


def test_providers_are_not_signed_out_for_idle_time(app, client, make_account):
    login(client, make_account(Role.PROVIDER))
    _set_last_seen(client, 24 * 3600)
    assert client.get("/portal/").status_code == 200


def test_a_staff_session_without_the_second_factor_mark_is_ended(client, make_account):
    login(client, make_account(Role.RESEARCHER))
    with client.session_transaction() as browser_session:
        del browser_session[PASSED]
    ended = client.get("/admin/")
    assert ended.status_code == 302
    text = page_text(client.get(ended.headers["Location"]))
    assert "Staff pages open only after the second factor" in text and "without activity" not in text
    assert client.get("/admin/").status_code == 302
    with client.session_transaction() as browser_session:
        assert "_user_id" not in browser_session


# -- changing the password ----------------------------------------------------------------------------


def _change(client, current, new, confirm=None):
    return client.post("/account/security", data={"current": current, "password": new,
                                                  "confirm": new if confirm is None else confirm,
                                                  "submit": "Change password"})


@pytest.mark.parametrize("role", [Role.PROVIDER, Role.RESEARCHER], ids=lambda r: r.value)
def test_changing_the_password_ends_other_sessions_and_keeps_this_one(app, session, make_account, role):
    account = make_account(role)
    here, elsewhere = signed_in(app, account), signed_in(app, account)

    changed = _change(here, PASSWORD, NEW_PASSWORD)
    assert changed.status_code == 302 and changed.headers["Location"] == "/account/security"
    assert "Your password is changed." in page_text(here.get("/account/security"))
    assert here.get(HOME[role]).status_code == 200
    assert elsewhere.get(HOME[role]).status_code == 302
    session.refresh(account)
    assert verify_password(account.password_hash, NEW_PASSWORD)
    assert not verify_password(account.password_hash, PASSWORD)
    assert [e.actor for e in audit_events(session, "account.password_changed", account.id)] == [f"user:{account.id}"]


@pytest.mark.parametrize("current,new,message", [
    ("not my password at all", NEW_PASSWORD, "Your current password is not right."),
    (PASSWORD, "password1234", COMMON),
    (PASSWORD, "Sh0rt-pass", TOO_SHORT),
    (PASSWORD, "{email}", "Do not use your e-mail address as your password."),
    (PASSWORD, PASSWORD, "Choose a password different from the current one."),
], ids=["wrong-current", "common", "short", "email", "unchanged"])
def test_a_password_change_is_refused_with_a_reason(app, session, make_account, current, new, message):
    account = make_account(Role.PROVIDER)
    here, elsewhere = signed_in(app, account), signed_in(app, account)
    new = new.format(email=account.email)
    hash_before, version_before = account.password_hash, account.session_version

    refused = _change(here, current, new)
    assert refused.status_code == 400 and message in page_text(refused)
    session.refresh(account)
    assert (account.password_hash, account.session_version) == (hash_before, version_before)
    assert here.get("/portal/").status_code == 200 and elsewhere.get("/portal/").status_code == 200
    assert audit_events(session, "account.password_changed", account.id) == []


def test_registration_refuses_a_common_password_or_the_address_as_password(client, session):
    email = "intake@harbor.example.org"
    for password, message in (("password1234", COMMON), (email, "Do not use your e-mail address as your password.")):
        response = client.post("/register", data={"name": "Ada Byron", "email": email, "password": password,
                                                  "confirm": password})
        assert response.status_code == 200 and message in page_text(response)
    assert session.scalar(select(func.count()).select_from(Account)) == 0
    assert session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_reset_link_refuses_a_common_password_and_stays_usable(client, session, make_account):
    account = make_account(Role.PROVIDER)
    client.post("/reset", data={"email": account.email})
    link = mailed_path(session, account.email, "password_reset")
    hash_before = account.password_hash

    for password, message in (("password1234", COMMON), ("too-short", TOO_SHORT)):
        refused = client.post(link, data={"password": password, "confirm": password})
        assert refused.status_code == 200 and message in page_text(refused)
    session.refresh(account)
    assert account.password_hash == hash_before
    done = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 302 and done.headers["Location"] == "/login"


# -- Argon2 ---------------------------------------------------------------------------------------------


def test_sign_in_rehashes_a_password_stored_with_older_parameters(client, session, make_account):
    account = make_account(Role.PROVIDER)
    older = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    account.password_hash = older
    session.commit()
    assert needs_rehash(older)

    client.post("/login", data={"email": account.email, "password": "not the password"})
    session.refresh(account)
    assert account.password_hash == older  # only a correct password can be hashed again

    assert login(client, account).status_code == 302
    session.refresh(account)
    assert account.password_hash != older and account.password_hash.startswith("$argon2id$")
    assert not needs_rehash(account.password_hash)
    assert verify_password(account.password_hash, PASSWORD)
    client.post("/logout")
    assert login(new_client(client.application), account).status_code == 302


# -- lock-out per address -------------------------------------------------------------------------------


def _normalised(response, email: str) -> str:
    """The page as a person sees it, with the address they typed taken out."""
    return re.sub(r"\s+", " ", without_nonces(page_text(response)).replace(email, "ADDRESS"))


def test_repeated_failures_lock_an_address_and_unknown_addresses_look_the_same(make_app, make_account):
    app = make_app(LOGIN_ACCOUNT_RATE_LIMIT="3 per 15 minutes")
    with app.app_context():
        account = make_account(Role.RESEARCHER)

        def attempts(email: str):
            """Three wrong passwords from three addresses, then the right one from a fourth."""
            responses = [new_client(app).post("/login", data={"email": email, "password": f"guess number {n}"})
                         for n in range(3)]
            last = new_client(app)
            responses.append(last.post("/login", data={"email": email, "password": PASSWORD}))
            return responses, last

        known, browser = attempts(account.email)
        unknown, _ = attempts("nobody@example.org")
        assert [r.status_code for r in known] == [r.status_code for r in unknown] == [200, 200, 200, 429]
        assert TOO_MANY in page_text(known[-1])
        for known_page, unknown_page in zip(known, unknown, strict=True):
            assert _normalised(known_page, account.email) == _normalised(unknown_page, "nobody@example.org")
        assert browser.get("/login/code").headers["Location"] == "/login"  # the right password began nothing
        assert browser.get("/admin/").status_code == 302


# -- cookies and headers ----------------------------------------------------------------------------------


def test_the_session_cookie_is_http_only_and_same_site_lax(client, make_account):
    response = client.post("/login", data={"email": make_account(Role.PROVIDER).email, "password": PASSWORD})
    attributes = {part.strip().lower() for part in _session_cookie_header(response).split(";")}
    assert "httponly" in attributes and "samesite=lax" in attributes
    assert "secure" not in attributes  # the test server speaks plain HTTP


def test_with_production_settings_the_session_cookie_is_secure(make_app, make_account):
    production = config.load("production", {"SECRET_KEY": "x" * 40, "PUBLIC_BASE_URL": "https://backoffice.example.org/",
                                            "MAIL_URL": "smtps://backoffice:secret@smtp.example.org",
                                            "MAIL_FROM": "no-reply@example.org"})
    assert production["SESSION_COOKIE_SECURE"] is True
    app = make_app(SESSION_COOKIE_SECURE=True)
    with app.app_context():
        account = make_account(Role.RESEARCHER)
        response = new_client(app).post("/login", data={"email": account.email, "password": PASSWORD})
        attributes = {part.strip().lower() for part in _session_cookie_header(response).split(";")}
        assert {"secure", "httponly", "samesite=lax"} <= attributes


def _policy(response) -> dict[str, list[str]]:
    directives = [d.split() for d in response.headers["Content-Security-Policy"].split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def test_html_pages_carry_a_nonce_policy_and_the_other_security_headers(app, make_account):
    staff = signed_in(app, make_account(Role.ADMIN))
    provider = signed_in(app, make_account(Role.PROVIDER))
    anonymous = new_client(app)
    pages = [(anonymous, "/login"), (anonymous, "/register"), (staff, "/admin/"), (staff, "/admin/staff/"),
             (staff, "/admin/accounts/"), (staff, "/account/security"), (provider, "/portal/"),
             (anonymous, "/no-such-page")]
    nonces = set()
    for browser, url in pages:
        response = browser.get(url)
        assert response.status_code == (404 if url == "/no-such-page" else 200), url
        assert response.mimetype == "text/html", url
        policy = _policy(response)
        scripts = policy["script-src"]
        assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts, url
        assert "'unsafe-inline'" not in policy["style-src"], url
        [nonce] = [s[len("'nonce-"):-1] for s in scripts if s.startswith("'nonce-")]
        nonces.add(nonce)
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], url
        body = response.get_data(as_text=True)
        assert set(re.findall(r'\snonce="([^"]*)"', body)) <= {nonce}, url
        for tag in re.findall(r"<(?:script|style)\b[^>]*>", body):
            src = re.search(r'\ssrc="([^"]*)"', tag)
            if src:
                assert src.group(1).startswith("/") and not src.group(1).startswith("//"), (url, tag)
            else:
                assert f'nonce="{nonce}"' in tag, (url, tag)
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        assert response.headers["X-Frame-Options"] == "DENY", url
        assert response.headers["Referrer-Policy"] in {"same-origin", "no-referrer", "strict-origin",
                                                       "strict-origin-when-cross-origin"}, url
    assert len(nonces) == len(pages)  # a new nonce for every response
