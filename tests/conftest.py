"""Fixtures: a real database per test (SQLite file or PostgreSQL database cloned from a migrated template)."""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from flask import g, has_app_context
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import object_session

import config as settings
from backoffice import create_app, signing
from backoffice.extensions import db
from backoffice.models import (
    Account,
    Location,
    Provider,
    Role,
    utcnow,
)
from backoffice.services import accounts, mfa
from tests.template_helpers import refuse_shadowed_context

PASSWORD = "correct horse battery staple"
ADMIN_URL = settings.normalise_database_url(os.environ.get("DATABASE_URL", ""))
BACKEND = "postgresql" if ADMIN_URL.startswith("postgresql") else "sqlite"
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"

# Every app this run builds signs with one key made for the run, production ones included (they refuse to start
# without a key), and trusts no retired key but those a test puts there; commands run as subprocesses inherit it.
_SIGNING = Path(tempfile.mkdtemp(prefix="backoffice-signing-"))
os.environ["SIGNING_KEY_FILE"] = str(_SIGNING / "ed25519.pem")
os.environ["SIGNING_RETIRED_KEYS_FILE"] = str(_SIGNING / "retired-keys.json")
signing.write_private_key(Path(os.environ["SIGNING_KEY_FILE"]), signing.Ed25519PrivateKey.generate())


def migrate_to_head(url: str, tmp: Path) -> None:
    from flask_migrate import upgrade

    app = create_app("testing", app_overrides(url, tmp))
    with app.app_context():
        upgrade()
        db.engine.dispose()


def app_overrides(url: str, tmp: Path) -> dict:
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "BROKER_FOLDER": str(tmp / "broker"),
        "OUTBOX_FOLDER": str(tmp / "outbox"),
        "UPLOAD_FOLDER": str(tmp / "uploads"),
        "CHECKPOINT_PUBLISH_DIR": str(tmp / "audit-checkpoints"),
        "BEAT_SCHEDULE_FILE": str(tmp / "beat-schedule"),
        "CELERY_QUEUE": f"test-{RUN_ID}-{uuid.uuid4().hex[:8]}",
        # Rate-limit counters of their own per test database: on a shared Redis, counts left by an earlier run
        # (a day's limit on resets, say) would otherwise refuse this run's requests.
        "RATELIMIT_KEY_PREFIX": f"test-limits-{RUN_ID}-{uuid.uuid5(uuid.NAMESPACE_URL, url).hex[:12]}",
        "WTF_CSRF_ENABLED": False,
    }


class DatabaseFactory:
    """Hands out empty, migrated databases quickly by copying a template."""

    def __init__(self, root: Path):
        self.root = root
        self.counter = itertools.count()
        self.created: list[str] = []
        if BACKEND == "postgresql":
            self.admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
            self.template = f"bo_tmpl_{RUN_ID}"
            self._execute(f'DROP DATABASE IF EXISTS "{self.template}"')
            self._execute(f'CREATE DATABASE "{self.template}"')
            migrate_to_head(self._url(self.template), root)
        else:
            self.template = root / "template.db"
            migrate_to_head(f"sqlite:///{self.template}", root)

    def _execute(self, sql: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(sql))

    def _url(self, name: str) -> str:
        return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def empty(self) -> str:
        """A fresh migrated database; returns its URL."""
        n = next(self.counter)
        if BACKEND == "postgresql":
            name = f"bo_t_{RUN_ID}_{n}"
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
            self.created.append(name)
            return self._url(name)
        path = self.root / f"db{n}.sqlite"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        if BACKEND == "postgresql":
            name = make_url(url).database
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        if BACKEND == "postgresql":
            for name in self.created:
                self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self.admin.dispose()


class RequestIsolatedClient(FlaskClient):
    """A test client whose requests do not share `g`. Tests hold one application context open for the
    whole test, and Flask reuses it for each request, so without this the signed-in user Flask-Login keeps
    on `g` would leak from one client's request into another's; a served request never shares it."""

    def open(self, *args, **kwargs):
        _clear_request_globals()
        try:
            return super().open(*args, **kwargs)
        finally:
            _clear_request_globals()


def _clear_request_globals() -> None:
    if has_app_context():
        for name in list(g):
            g.pop(name, None)


@pytest.fixture(scope="session")
def databases(tmp_path_factory):
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.close()


@pytest.fixture
def database_url(databases):
    url = databases.empty()
    yield url
    databases.drop(url)


@pytest.fixture
def make_app(database_url, tmp_path):
    """Build an app on this test's database; extra settings override the test defaults."""
    built = []

    def build(**extra):
        app = create_app("testing", {**app_overrides(database_url, tmp_path), **extra})
        app.test_client_class = RequestIsolatedClient
        refuse_shadowed_context(app)
        built.append(app)
        return app

    yield build
    for app in built:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app):
    app = make_app()
    with app.app_context():
        yield app
        db.session.rollback()


@pytest.fixture
def session(app):
    return db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_account(session):
    counter = itertools.count(1)

    def make(*roles: Role, email: str | None = None, password: str = PASSWORD,
             second_factor: bool | None = None) -> Account:
        """An account with the roles; staff have an authenticator set up unless second_factor=False."""
        roles = roles or (Role.RESEARCHER,)
        email = email or f"{roles[0].value}{next(counter)}@example.org"
        account = accounts.create_account(session, "system:test", email=email, name=email.split("@")[0],
                                          password=password, roles=list(roles), email_confirmed=True)
        if account.is_staff if second_factor is None else second_factor:
            account.totp_secret = mfa.new_secret()
            account.totp_enabled_at = utcnow()
        session.commit()
        return account

    return make


@pytest.fixture
def make_provider(session):
    counter = itertools.count(1)

    def make(**fields) -> Provider:
        n = next(counter)
        fields.setdefault("legal_name", f"Harbor Recovery Center {n} LLC")
        fields.setdefault("public_name", f"Harbor Recovery Center {n}")
        fields.setdefault("website", f"https://harbor{n}.example.org")
        fields.setdefault("levels_of_care", ["outpatient"])
        fields.setdefault("services", ["substance_use_treatment"])
        provider = Provider(**fields)
        provider.locations.append(Location(street1=f"{n} Main Street", city="Charlottesville", state="VA", zip="22902"))
        session.add(provider)
        session.commit()
        return provider

    return make


def login(client, account: Account, password: str = PASSWORD, next_url: str | None = None):
    """Sign in through the pages: the password, then for staff the current code from their authenticator."""
    url = "/login" + (f"?next={next_url}" if next_url else "")
    response = client.post(url, data={"email": account.email, "password": password})
    if response.status_code == 302 and response.headers["Location"] == "/login/code":
        response = client.post("/login/code", data={"code": fresh_code(account)})
    return response


def fresh_code(account: Account) -> str:
    """A code the account has not used yet. A test signs in faster than a person could: when the codes of
    this half-minute and the next are used up, the record of the last used step is moved back, as if a
    minute had passed (the account's own row, nothing else)."""
    session = object_session(account)
    session.refresh(account, ["totp_last_step", "totp_secret"])
    now = mfa.current_step()
    step = max(now, (account.totp_last_step or 0) + 1)
    if step > now + mfa.DRIFT_STEPS:
        session.execute(update(Account).where(Account.id == account.id).values(totp_last_step=now - 1))
        session.commit()
        step = now
    return mfa.code_at_step(account.totp_secret, step)


def now():
    return utcnow()
