"""Registration, confirmation and reset links (expiring, single-use), rate limits, CSRF on the portal's forms."""
import io
import os
import re

from sqlalchemy import func, select

from backoffice.auth import tokens
from backoffice.extensions import db
from backoffice.models import Account, AuditEvent, Notification, Provider, Role, Submission, SubmissionState
from backoffice.services import provider_accounts
from tests.conftest import PASSWORD, login
from tests.portal_helpers import PDF, latest_mail, listing_data, mailed_path, provider_with_draft, reload

NEW_PASSWORD = "a completely new passphrase"


def _register(client, email="intake@harbor.example.org", password=PASSWORD):
    return client.post("/register", data={"name": "Ada Byron", "email": email, "password": password,
                                          "confirm": password})


def _client_from(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _later(monkeypatch, seconds):
    real = tokens.clock
    monkeypatch.setattr(tokens, "clock", lambda: real() + seconds)


# -- registration and confirmation ----------------------------------------------------------------


def test_registration_creates_an_unconfirmed_provider_account_and_mails_a_link(client, session):
    assert _register(client).status_code == 200
    account = session.scalar(select(Account).where(Account.email == "intake@harbor.example.org"))
    assert account.role_set == {Role.PROVIDER} and account.email_confirmed_at is None
    mail = latest_mail(session, account.email, "confirm_email")
    assert "/confirm/" in mail.body and "expires in 3 days" in mail.body


def test_registration_refuses_short_or_mismatched_passwords_and_bad_addresses(client, session):
    short = client.post("/register", data={"name": "A", "email": "a@example.org", "password": "short",
                                           "confirm": "short"})
    assert "Use at least 12 characters." in short.get_data(as_text=True)
    mismatch = client.post("/register", data={"name": "A", "email": "a@example.org", "password": PASSWORD,
                                              "confirm": PASSWORD + "x"})
    assert "The two passwords are not the same." in mismatch.get_data(as_text=True)
    bad = client.post("/register", data={"name": "A", "email": "not-an-address", "password": PASSWORD,
                                         "confirm": PASSWORD})
    assert "Enter a valid e-mail address" in bad.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Account)) == 0


def test_registering_a_taken_address_looks_the_same_and_creates_nothing(client, session, make_account):
    existing = make_account(Role.PROVIDER)
    response = _register(client, email=existing.email.upper())
    assert response.status_code == 200 and "Check your e-mail" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Account)) == 1
    assert latest_mail(session, existing.email, "registration_exists")


def test_a_confirmation_link_works_once(client, session):
    _register(client)
    link = mailed_path(session, "intake@harbor.example.org", "confirm_email")
    assert client.get(link).headers["Location"] == "/login"
    account = session.scalar(select(Account))
    assert account.email_confirmed_at is not None
    again = client.get(link, follow_redirects=True).get_data(as_text=True)
    assert "already been used" in again
    events = session.scalars(select(AuditEvent.action).where(AuditEvent.action == "account.email_confirmed")).all()
    assert len(events) == 1


def test_an_expired_confirmation_link_is_refused_and_a_new_one_can_be_sent(client, session, monkeypatch):
    _register(client)
    link = mailed_path(session, "intake@harbor.example.org", "confirm_email")
    _later(monkeypatch, 3 * 86400 + 60)
    page = client.get(link, follow_redirects=True).get_data(as_text=True)
    assert "This link has expired" in page
    session.expire_all()
    assert session.scalar(select(Account)).email_confirmed_at is None
    monkeypatch.undo()
    client.post("/confirm", data={"email": "intake@harbor.example.org"})
    fresh = mailed_path(session, "intake@harbor.example.org", "confirm_email")
    assert client.get(fresh).headers["Location"] == "/login"


def test_a_tampered_confirmation_link_is_refused(client, session):
    _register(client)
    genuine = mailed_path(session, "intake@harbor.example.org", "confirm_email")
    payload, stamp, signature = genuine.rsplit("/", 1)[1].split(".")
    forged_payload = "eyJpZCI6MSwiZW1haWwiOiJtYWxsb3J5QGV4YW1wbGUub3JnIn0"  # {"id":1,"email":"mallory@..."}
    for token in ("not-a-token", f"{forged_payload}.{stamp}.{signature}", f"{payload}.{stamp}.{signature[:-2]}xx"):
        page = client.get(f"/confirm/{token}", follow_redirects=True).get_data(as_text=True)
        assert "This link is not valid" in page, token
    assert session.scalar(select(Account)).email_confirmed_at is None


def test_a_token_made_for_one_purpose_is_refused_for_another(client, session, app):
    _register(client)
    account = session.scalar(select(Account))
    settings = provider_accounts.TokenSettings.from_config(app.config)
    reset_token = tokens.issue(settings.secret, provider_accounts.RESET, {"id": account.id, "email": account.email})
    page = client.get(f"/confirm/{reset_token}", follow_redirects=True).get_data(as_text=True)
    assert "not valid" in page and session.scalar(select(Account)).email_confirmed_at is None


# -- password reset -------------------------------------------------------------------------------


def test_reset_sets_a_new_password_once_and_ends_other_sessions(app, client, session, make_account):
    account = make_account(Role.PROVIDER)
    elsewhere = app.test_client()
    login(elsewhere, account)
    assert elsewhere.get("/portal/").status_code == 200

    assert "Check your e-mail" in client.post("/reset", data={"email": account.email}).get_data(as_text=True)
    link = mailed_path(session, account.email, "password_reset")
    assert "Choose a new password" in client.get(link).get_data(as_text=True)
    done = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status_code == 302 and done.headers["Location"] == "/login"

    assert elsewhere.get("/portal/").status_code == 302
    assert login(client, account).status_code == 200  # the old password no longer works
    assert login(client, account, password=NEW_PASSWORD).status_code == 302

    client.post("/logout")
    reused = client.post(link, data={"password": "yet another passphrase", "confirm": "yet another passphrase"},
                         follow_redirects=True)
    assert "already been used" in reused.get_data(as_text=True)
    assert login(client, account, password=NEW_PASSWORD).status_code == 302
    assert "account.password_reset" in session.scalars(select(AuditEvent.action)).all()


def test_an_expired_reset_link_is_refused(client, session, make_account, monkeypatch):
    account = make_account(Role.PROVIDER)
    client.post("/reset", data={"email": account.email})
    link = mailed_path(session, account.email, "password_reset")
    _later(monkeypatch, 3600 + 1)
    page = client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, follow_redirects=True)
    assert "This link has expired" in page.get_data(as_text=True)
    monkeypatch.undo()
    assert login(client, account).status_code == 302


def test_a_reset_link_dies_when_the_password_changes_another_way(client, session, app, make_account):
    account = make_account(Role.PROVIDER)
    client.post("/reset", data={"email": account.email})
    first = mailed_path(session, account.email, "password_reset")
    client.post("/reset", data={"email": account.email})
    second = mailed_path(session, account.email, "password_reset")
    assert client.post(second, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}).status_code == 302
    stale = client.get(first, follow_redirects=True).get_data(as_text=True)
    assert "already been used or is no longer valid" in stale


def test_reset_for_an_unknown_address_looks_the_same_and_sends_nothing(client, session):
    response = client.post("/reset", data={"email": "nobody@example.org"})
    assert response.status_code == 200 and "If that address has an account" in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Notification)) == 0


def test_a_reset_through_the_inbox_also_confirms_the_address(client, session):
    _register(client)
    client.post("/reset", data={"email": "intake@harbor.example.org"})
    link = mailed_path(session, "intake@harbor.example.org", "password_reset")
    client.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert client.post("/login", data={"email": "intake@harbor.example.org",
                                       "password": NEW_PASSWORD}).status_code == 302


# -- rate limits ----------------------------------------------------------------------------------


def test_sign_in_is_rate_limited_per_client_address(make_app, make_account):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        client = app.test_client()
        for _ in range(3):
            assert client.post("/login", data={"email": account.email, "password": "wrong password!"}).status_code == 200
        blocked = client.post("/login", data={"email": account.email, "password": PASSWORD})
        assert blocked.status_code == 429 and "Too many attempts" in blocked.get_data(as_text=True)
        assert client.get("/login").status_code == 200  # the page itself stays reachable
        other = _client_from(app, "198.51.100.7")
        assert login(other, account).status_code == 302


def test_failed_sign_ins_are_limited_per_account_across_addresses(make_app, make_account):
    app = make_app(LOGIN_ACCOUNT_RATE_LIMIT="2 per hour")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        for n in range(2):
            attacker = _client_from(app, f"203.0.113.{n + 1}")
            assert attacker.post("/login", data={"email": account.email, "password": "guess"}).status_code == 200
        fresh = _client_from(app, "203.0.113.99")
        assert fresh.post("/login", data={"email": account.email.upper(), "password": "guess"}).status_code == 429
        # Another account is not affected.
        other = make_account(Role.PROVIDER)
        assert login(fresh, other).status_code == 302


def test_successful_sign_ins_do_not_use_up_the_per_account_limit(make_app, make_account):
    app = make_app(LOGIN_ACCOUNT_RATE_LIMIT="2 per hour")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        for n in range(3):
            client = _client_from(app, f"192.0.2.{n + 1}")
            assert login(client, account).status_code == 302


def test_reset_requests_are_rate_limited_per_address_and_send_no_more_mail(make_app, make_account):
    app = make_app(RESET_ACCOUNT_RATE_LIMIT="2 per hour")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        for n in range(2):
            client = _client_from(app, f"192.0.2.{n + 10}")
            assert client.post("/reset", data={"email": account.email}).status_code == 200
        blocked = _client_from(app, "192.0.2.50")
        assert blocked.post("/reset", data={"email": account.email}).status_code == 429
        sent = db.session.scalar(select(func.count()).select_from(Notification).where(Notification.kind == "password_reset"))
        assert sent == 2


def test_reset_and_registration_are_rate_limited_per_client(make_app):
    app = make_app(RESET_RATE_LIMIT="2 per minute", REGISTER_RATE_LIMIT="1 per minute")
    with app.app_context():
        client = app.test_client()
        assert [client.post("/reset", data={"email": f"x{n}@example.org"}).status_code for n in range(3)] == [200, 200, 429]
        assert _register(client, email="a@example.org").status_code == 200
        assert _register(client, email="b@example.org").status_code == 429
        assert db.session.scalar(select(func.count()).select_from(Account)) == 1


def test_rate_limits_count_in_redis_when_the_deployment_has_it(make_app):
    from backoffice.ratelimit import storage_uri

    assert storage_uri({"REDIS_URL": "redis://cache:6379/0"}) == "redis://cache:6379/0"
    assert storage_uri({"REDIS_URL": None}) == "memory://"
    assert storage_uri({"REDIS_URL": "redis://a", "RATELIMIT_STORAGE_URI": "memcached://b"}) == "memcached://b"
    app = make_app()
    limiter = next(iter(app.extensions["limiter"]))
    expected = "RedisStorage" if os.environ.get("REDIS_URL") else "MemoryStorage"
    assert type(limiter.storage).__name__ == expected


# -- CSRF -----------------------------------------------------------------------------------------


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def test_portal_forms_refuse_posts_without_a_csrf_token(make_app, make_account):
    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        session = db.session
        owner, provider, draft = provider_with_draft(session, make_account)
        client = app.test_client()
        assert client.post("/register", data={"name": "A", "email": "csrf@example.org", "password": PASSWORD,
                                              "confirm": PASSWORD}).status_code == 400
        assert client.post("/reset", data={"email": owner.email}).status_code == 400
        assert client.post("/confirm", data={"email": owner.email}).status_code == 400
        token = _token(client.get("/login").get_data(as_text=True))
        assert client.post("/login", data={"email": owner.email, "password": PASSWORD,
                                           "csrf_token": token}).status_code == 302
        events = session.scalar(select(func.count()).select_from(AuditEvent))
        posts = [
            ("/portal/organisations/new", {"legal_name": "X LLC", "public_name": "X"}),
            (f"/portal/requests/{draft.id}/edit", listing_data()),
            (f"/portal/requests/{draft.id}/documents", {"files": [(io.BytesIO(PDF), "a.pdf")]}),
            (f"/portal/requests/{draft.id}/answer", {"message": "x"}),
            (f"/portal/requests/{draft.id}/withdraw", {"reason": "x"}),
            (f"/portal/organisations/{provider.id}/requests", {}),
            (f"/portal/organisations/{provider.id}/advertise", {}),
        ]
        for url, data in posts:
            response = client.post(url, data=data, content_type="multipart/form-data")
            assert response.status_code == 400, url
            assert "Form expired" in response.get_data(as_text=True), url
        session.expire_all()
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
        assert session.scalar(select(func.count()).select_from(Provider)) == 1
        assert reload(session, draft).state == SubmissionState.DRAFT and "npi" not in reload(session, draft).proposed
        assert session.scalar(select(func.count()).select_from(Account)) == 1

        # With the page's token the same form goes through: the refusal above was the token's doing.
        token = _token(client.get(f"/portal/requests/{draft.id}").get_data(as_text=True))
        withdrawn = client.post(f"/portal/requests/{draft.id}/withdraw",
                                data={"csrf_token": token, "version": reload(session, draft).row_version,
                                      "confirm": "y"})
        assert withdrawn.status_code == 302
        assert reload(session, draft).state == SubmissionState.WITHDRAWN
        assert session.scalar(select(Submission.state).where(Submission.id == draft.id)) == SubmissionState.WITHDRAWN


def test_mailed_links_use_the_public_address_not_a_forged_host_header(make_app, make_account):
    app = make_app(PUBLIC_BASE_URL="https://backoffice.example.org/")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        client = app.test_client()
        client.post("/reset", data={"email": account.email}, headers={"Host": "evil.example"})
        body = latest_mail(db.session, account.email, "password_reset").body
        assert "https://backoffice.example.org/reset/" in body and "evil.example" not in body
