"""Mailed links are built on PUBLIC_BASE_URL, never on the Host or X-Forwarded-Host a client sends, and
production does not start without a valid PUBLIC_BASE_URL."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import config
from backoffice import create_app
from backoffice.extensions import db
from backoffice.links import mailed_url
from backoffice.models import Role
from tests.conftest import PASSWORD, app_overrides
from tests.portal_helpers import latest_mail
from tests.security_helpers import page_text, signed_in

PUBLIC = "https://backoffice.example.org"
FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
          "X-Forwarded-For": "203.0.113.9"}
FORWARDED = {name: value for name, value in FORGED.items() if name != "Host"}
ROOT = Path(__file__).resolve().parent.parent


def _mailed_link(session, email: str, kind: str) -> str:
    body = latest_mail(session, email, kind).body
    [link] = re.findall(r"https?://[^\s,]+", body)  # a comma after a link ends it
    return link


PRODUCTION_MAIL = {"MAIL_URL": "smtp://backoffice:secret@smtp.example.org:587",
                   "MAIL_FROM": "Provider verification <no-reply@example.org>"}


@pytest.fixture
def production_app(database_url, tmp_path):
    """The application with the production settings (proxy headers trusted, secure cookies)."""
    built = []

    def build(public_base_url: str = PUBLIC + "/"):
        app = create_app("production", {**app_overrides(database_url, tmp_path), "SECRET_KEY": "p" * 48,
                                        "PUBLIC_BASE_URL": public_base_url, **PRODUCTION_MAIL})
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- production refuses to start without it ------------------------------------------------------------


def test_production_refuses_to_start_without_a_public_base_url(monkeypatch, database_url, tmp_path):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    with pytest.raises(RuntimeError) as refused:
        config.load("production")
    message = str(refused.value)
    assert message.startswith("PUBLIC_BASE_URL must be set in production") and "\n" not in message
    with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL must be set in production"):
        create_app("production", {**app_overrides(database_url, tmp_path), "SECRET_KEY": "p" * 48})


@pytest.mark.parametrize("value", [
    "http://backoffice.example.org/", "backoffice.example.org", "//backoffice.example.org/", "https://",
    "https:///reset", "https://user:secret@backoffice.example.org/", "https://backoffice.example.org/?next=/x",
    "https://backoffice.example.org/#top", "https://backoffice.example.org:99999/", "https://back office.example/",
    "javascript:alert(1)",
])
def test_production_refuses_a_public_base_url_that_is_not_an_absolute_https_url(monkeypatch, value):
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", value)
    with pytest.raises(RuntimeError) as refused:
        config.load("production")
    assert str(refused.value) == ("PUBLIC_BASE_URL must be an absolute https URL (the address people open the "
                                  "back-office at, e.g. https://backoffice.example.org/), not " + repr(value))


def test_outside_production_a_public_base_url_may_be_http_but_must_still_be_a_url(monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://127.0.0.1:5000/")
    assert config.load("testing")["PUBLIC_BASE_URL"] == "http://127.0.0.1:5000/"
    monkeypatch.setenv("PUBLIC_BASE_URL", "127.0.0.1:5000")
    with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL must be an absolute http or https URL"):
        config.load("testing")


def test_starting_the_production_app_without_it_says_so_in_its_last_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PUBLIC_BASE_URL"}
    env.update(BACKOFFICE_ENV="production", SECRET_KEY="p" * 48, BACKOFFICE_INSTANCE_PATH=str(tmp_path))
    started = subprocess.run([sys.executable, "-m", "flask", "--app", "backoffice", "routes"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode != 0
    last_line = started.stderr.strip().splitlines()[-1]
    assert "PUBLIC_BASE_URL must be set in production" in last_line, started.stderr


def test_production_starts_with_an_https_public_base_url(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://backoffice.example.org/")
    monkeypatch.setenv("MAIL_URL", PRODUCTION_MAIL["MAIL_URL"])
    monkeypatch.setenv("MAIL_FROM", PRODUCTION_MAIL["MAIL_FROM"])
    assert config.load("production")["PUBLIC_BASE_URL"] == "https://backoffice.example.org/"


# -- every mailed link is on it, whatever host the request names -----------------------------------------


def test_a_reset_asked_with_a_forged_host_mails_a_link_on_the_public_address(production_app, make_account):
    app = production_app()
    with app.app_context():
        account = make_account(Role.PROVIDER)
        browser = app.test_client()
        asked = browser.post("/reset", data={"email": account.email}, headers=FORGED, base_url="http://evil.example")
        assert "a link to choose a new password is on its way" in page_text(asked)
        link = _mailed_link(db.session, account.email, "password_reset")
        assert re.fullmatch(re.escape(PUBLIC) + r"/reset/[A-Za-z0-9._-]+", link), link
        assert "evil.example" not in latest_mail(db.session, account.email, "password_reset").body
        # The link opens the page to choose a password.
        opened = app.test_client().get(urlsplit(link).path, base_url=PUBLIC)
        assert "Choose a new password" in page_text(opened)


def test_registration_mails_with_a_forged_host_link_to_the_public_address(production_app, make_account):
    app = production_app()
    with app.app_context():
        existing = make_account(Role.PROVIDER)
        browser = app.test_client()
        for email in ("intake@harbor.example.org", existing.email):
            browser.post("/register", data={"name": "Ada Byron", "email": email, "password": PASSWORD,
                                            "confirm": PASSWORD}, headers=FORGED, base_url="http://evil.example")
        confirm = _mailed_link(db.session, "intake@harbor.example.org", "confirm_email")
        assert re.fullmatch(re.escape(PUBLIC) + r"/confirm/[A-Za-z0-9._-]+", confirm), confirm
        assert _mailed_link(db.session, existing.email, "registration_exists") == PUBLIC + "/login"


def test_a_new_staff_members_password_link_is_on_the_public_address(production_app, make_account):
    app = production_app()
    with app.app_context():
        admin = make_account(Role.ADMIN)
        # The admin's browser keeps its session cookie for the host it signed in on; the proxy headers lie.
        browser = signed_in(app, admin)
        added = browser.post("/admin/staff/new", data={"name": "New Person", "email": "new.person@example.org",
                                                       "roles": ["researcher"], "reason": "Joins the research team"},
                             headers=FORWARDED)
        assert added.status_code == 302 and added.headers["Location"].startswith("/admin/staff/")
        link = _mailed_link(db.session, "new.person@example.org", "staff_welcome")
        assert re.fullmatch(re.escape(PUBLIC) + r"/reset/[A-Za-z0-9._-]+", link), link


def test_a_public_address_under_a_path_keeps_its_path(production_app, make_account):
    app = production_app(PUBLIC + "/backoffice/")
    with app.app_context():
        account = make_account(Role.PROVIDER)
        app.test_client().post("/reset", data={"email": account.email}, headers=FORGED)
        link = _mailed_link(db.session, account.email, "password_reset")
        assert re.fullmatch(re.escape(PUBLIC) + r"/backoffice/reset/[A-Za-z0-9._-]+", link), link


def test_in_production_a_link_is_never_built_on_the_request_host(production_app):
    app = production_app()
    app.config["PUBLIC_BASE_URL"] = ""  # as if the start-up check had been bypassed
    with app.test_request_context("/reset", headers=FORGED):
        with pytest.raises(RuntimeError, match="PUBLIC_BASE_URL is not set"):
            mailed_url("account.reset", token="t")
