"""Settings classes. Every setting can be overridden by an environment variable of the same name.

DATABASE_URL, REDIS_URL and SECRET_KEY are also read under those conventional names.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent
INSTANCE = Path(os.environ.get("BACKOFFICE_INSTANCE_PATH", ROOT / "instance"))


class Config:
    SECRET_KEY: str | None = None
    SQLALCHEMY_DATABASE_URI = f"sqlite:///{INSTANCE / 'backoffice.db'}"
    SQLALCHEMY_ENGINE_OPTIONS: dict = {}
    REDIS_URL: str | None = None
    # The embedded broker needs no server: kombu's filesystem transport under instance/.
    BROKER_FOLDER = str(INSTANCE / "broker")
    CELERY_QUEUE = "backoffice"
    CELERY_TASK_ALWAYS_EAGER = False
    BEAT_SCHEDULE_FILE = str(INSTANCE / "celerybeat-schedule")
    SWEEP_VERIFICATION_EXPIRY_SECONDS = 3600
    SWEEP_OUTBOX_SECONDS = 60
    SWEEP_ON_WORKER_START = True
    SWEEP_AUDIT_VERIFICATION_SECONDS = 86400
    OUTBOX_FOLDER = str(INSTANCE / "outbox")
    UPLOAD_FOLDER = str(INSTANCE / "uploads")
    WTF_CSRF_ENABLED = True
    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    # Staff are signed out after this long without a request; providers keep their browser session.
    STAFF_IDLE_TIMEOUT_MINUTES = 30
    # Between a correct password and the second factor, the half-signed-in state lasts this long.
    SECOND_FACTOR_PENDING_SECONDS = 300
    # Encrypts second-factor secrets at rest. Empty: derived from SECRET_KEY. To rotate, put the old value in
    # SEALING_OLD_KEYS (a JSON list) so what was sealed with it still opens.
    SEALING_KEY = ""
    SEALING_OLD_KEYS: list = []
    VERIFICATION_VALIDITY_DAYS = 365
    SLA_FIRST_RESPONSE_BUSINESS_DAYS = 2
    SLA_DECISION_BUSINESS_DAYS = 10
    RECHECK_INTERVAL_DAYS = 30
    # Re-checks (issue 5). Base URLs of external sources, so tests and demos point them at local servers.
    NPPES_API_URL = "https://npiregistry.cms.hhs.gov/api/"
    SWEEP_RECHECK_SECONDS = 900
    SWEEP_EXCLUSION_SECONDS = 30 * 86400
    SWEEP_EXPIRY_REMINDER_SECONDS = 86400
    SWEEP_SLA_SECONDS = 3600
    RECHECK_BATCH_SIZE = 200
    # A claimed re-check that has not completed within this time is picked up again by the sweep.
    RECHECK_LEASE_SECONDS = 6 * 3600
    CHECK_MAX_RETRIES = 3
    CHECK_RETRY_BACKOFF_SECONDS = 30
    EXPIRY_REMINDER_DAYS = [90, 60, 30, 7]
    AUTO_SUSPEND_ON_CRITICAL = False
    # The guarded outbound HTTP client.
    OUTBOUND_CONNECT_TIMEOUT_SECONDS = 5
    OUTBOUND_TOTAL_TIMEOUT_SECONDS = 20
    OUTBOUND_MAX_BYTES = 2_000_000
    OUTBOUND_MAX_REDIRECTS = 5
    OUTBOUND_PER_HOST_INTERVAL_MS = 1000
    OUTBOUND_USER_AGENT = "provider-backoffice-recheck/1.0"
    OUTBOUND_CA_BUNDLE = ""
    # Names answered without DNS, e.g. {"clinic.test": "127.0.0.1"}; the answers are guarded like any other.
    OUTBOUND_HOST_OVERRIDES: dict = {}
    # Tests only: admit 127.0.0.1 (any port). Never set in production.
    OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = False
    BROKER_VISIBILITY_TIMEOUT_SECONDS = 3600
    # Requested work (services/work.py): a row per piece of work, sent again by the reconciler when its message
    # was lost. Requested but not sent after the grace (the broker was down), sent but not taken by a worker
    # within the sent lease, running past its lease (the worker was killed): sent again, up to the attempts.
    WORK_RECONCILE_SECONDS = 60
    WORK_SEND_GRACE_SECONDS = 10
    WORK_SENT_LEASE_SECONDS = 3600
    # Longer than the longest task time limit (a check's is 180 s), so a slow check is not sent twice.
    WORK_LEASE_SECONDS = 300
    WORK_MAX_ATTEMPTS = 5
    WORK_RECONCILE_BATCH_SIZE = 500
    # Provider portal (issue 4).
    # Links in e-mails are built on this address, never on the request's Host header (which a client can
    # forge to have a reset link point at its own site). Required in production (an https URL); empty
    # elsewhere: the request's host, for local use only.
    PUBLIC_BASE_URL = ""
    UPLOAD_MAX_BYTES = 10 * 1024 * 1024
    UPLOAD_MAX_FILES_PER_REQUEST = 5
    # Flask refuses (413) any request body above this: the files allowed at once at the cap, plus the form.
    MAX_CONTENT_LENGTH = 5 * 10 * 1024 * 1024 + 1024 * 1024
    CONFIRM_TOKEN_MAX_AGE_SECONDS = 3 * 86400
    RESET_TOKEN_MAX_AGE_SECONDS = 3600
    # Rate limits ("N per minute;M per hour"), counted in Redis when REDIS_URL is set, in memory otherwise.
    RATELIMIT_ENABLED = True
    RATELIMIT_STORAGE_URI = ""
    RATELIMIT_KEY_PREFIX = "backoffice-limits"
    LOGIN_RATE_LIMIT = "10 per minute;60 per hour"
    # Failed sign-ins per e-mail address, so one account cannot be guessed at from many addresses; also wrong
    # current passwords or codes on the security page, per account. Counted in the database, across every
    # web process (services/lockout.py), as are wrong second-factor codes per account: with three codes valid
    # at a time, guessing is hopeless.
    LOGIN_ACCOUNT_RATE_LIMIT = "10 per 15 minutes"
    SECOND_FACTOR_RATE_LIMIT = "5 per 15 minutes;20 per day"
    RESET_RATE_LIMIT = "5 per 15 minutes;20 per day"
    RESET_ACCOUNT_RATE_LIMIT = "3 per hour"
    REGISTER_RATE_LIMIT = "5 per 15 minutes;20 per day"
    API_RATE_LIMIT = "300 per minute"
    PROXY_FIX = False
    LOG_LEVEL = "INFO"
    DEMO_PASSWORD = "demo-password-2026"


class DevelopmentConfig(Config):
    """The embedded default `make run` uses: SQLite, a serverless broker, a secret kept under instance/."""

    # The demo shows re-check results a minute after start instead of a quarter of an hour.
    SWEEP_RECHECK_SECONDS = 60


class TestingConfig(Config):
    TESTING = True
    SWEEP_ON_WORKER_START = False
    SECRET_KEY = "testing-secret-key-not-for-production"


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    PROXY_FIX = True


CONFIGS = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}

_ALIASES = {"DATABASE_URL": "SQLALCHEMY_DATABASE_URI"}


def _coerce(raw: str, default):
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, (dict, list)):
        return json.loads(raw)
    return raw


def load(name: str | None = None, overrides: dict | None = None) -> dict:
    """Settings for the named environment, with environment variables and explicit overrides applied."""
    name = name or os.environ.get("BACKOFFICE_ENV", "development")
    if name not in CONFIGS:
        raise RuntimeError(f"BACKOFFICE_ENV must be one of {sorted(CONFIGS)}, not {name!r}")
    cls = CONFIGS[name]
    settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    settings["ENV_NAME"] = name
    for key, default in list(settings.items()):
        if key in os.environ:
            settings[key] = _coerce(os.environ[key], default)
    for alias, key in _ALIASES.items():
        if alias in os.environ:
            settings[key] = os.environ[alias]
    settings.update(overrides or {})
    settings["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(settings["SQLALCHEMY_DATABASE_URI"])
    if not settings.get("SECRET_KEY"):
        if name == "production":
            raise RuntimeError("SECRET_KEY must be set in production (a long random string)")
        settings["SECRET_KEY"] = _instance_secret()
    elif name == "production" and len(settings["SECRET_KEY"]) < 32:
        raise RuntimeError("SECRET_KEY is too short for production: use at least 32 random characters")
    check_public_base_url(settings["PUBLIC_BASE_URL"], production=name == "production")
    return settings


def check_public_base_url(url: str, production: bool) -> None:
    """PUBLIC_BASE_URL, which mailed links are built on: required in production, and there https."""
    example = "the address people open the back-office at, e.g. https://backoffice.example.org/"
    if not url:
        if production:
            raise RuntimeError(f"PUBLIC_BASE_URL must be set in production: {example}")
        return
    schemes = ("https",) if production else ("http", "https")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in schemes or not parts.hostname or parts.username is not None
            or parts.query or parts.fragment or any(char.isspace() for char in url)):
        needed = "an absolute https URL" if production else "an absolute http or https URL"
        raise RuntimeError(f"PUBLIC_BASE_URL must be {needed} ({example}), not {url!r}")


def normalise_database_url(url: str) -> str:
    """Let postgres:// and postgresql:// URLs use the psycopg 3 driver that the project installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _instance_secret() -> str:
    """A random key kept under instance/, so development sessions survive a restart."""
    path = INSTANCE / "secret_key"
    if not path.exists():
        INSTANCE.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()
