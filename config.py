"""Settings classes. Every setting can be overridden by an environment variable of the same name.

DATABASE_URL, REDIS_URL and SECRET_KEY are also read under those conventional names.
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from limits import parse_many

ROOT = Path(__file__).resolve().parent
INSTANCE = Path(os.environ.get("BACKOFFICE_INSTANCE_PATH", ROOT / "instance"))


class SettingsError(RuntimeError):
    """A setting, or a pair of settings, the app cannot start with; the message is one line naming them."""


class UnreadableSetting(SettingsError, ValueError):
    """An environment variable that cannot be read as its setting's type (a number that is not one)."""


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
    # Staff who chose a daily digest get it this often (services/staff_notices.py).
    SWEEP_STAFF_DIGEST_SECONDS = 86400
    SWEEP_ON_WORKER_START = True
    # Serving and working processes move what start-up built (modules, the app, its templates) out of the
    # garbage collector's reach, so a full collection walks only what requests and tasks allocate since
    # (benchmarks/gc_freeze.py measures both ways). Off only to measure the difference.
    GC_FREEZE = True
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
    # This many days before verified_until, the daily sweep opens the provider's re-verification request.
    REVERIFICATION_LEAD_DAYS = 60
    SWEEP_REVERIFICATION_SECONDS = 86400
    # The deadline the catalogue editor proposes for the re-reviews a new criteria version schedules.
    CRITERIA_REREVIEW_DEADLINE_DAYS = 30
    SLA_FIRST_RESPONSE_BUSINESS_DAYS = 2
    SLA_DECISION_BUSINESS_DAYS = 10
    RECHECK_INTERVAL_DAYS = 30
    # Re-checks (issue 5). Base URLs of external sources, so tests and demos point them at local servers.
    NPPES_API_URL = "https://npiregistry.cms.hhs.gov/api/"
    SWEEP_RECHECK_SECONDS = 900
    SWEEP_EXCLUSION_SECONDS = 30 * 86400
    # Exclusion screening: how close (0 to 1) each signal must come for a list record to be raised; a name must
    # pass both name scores, a city or address that agrees makes the match surer. benchmarks/NOTES.md gives the
    # precision and recall of each on the real LEIE rows (`python -m benchmarks.match_quality`).
    SCREENING_NAME_TOKEN_SET_THRESHOLD = 0.88
    SCREENING_NAME_JARO_WINKLER_THRESHOLD = 0.85
    SCREENING_ADDRESS_THRESHOLD = 0.80
    SCREENING_CITY_THRESHOLD = 0.90
    # Off: names must match exactly after normalisation (as before fuzzy matching).
    SCREENING_FUZZY = True
    SWEEP_EXPIRY_REMINDER_SECONDS = 86400
    SWEEP_SLA_SECONDS = 3600
    RECHECK_BATCH_SIZE = 200
    # The monthly and post-import exclusion sweeps: this many listed providers are screened in one pass and their
    # runs recorded in one transaction, one piece of work (tasks.checks.screen_batch) per batch.
    SCREENING_BATCH_SIZE = 500
    # A claimed re-check that has not completed within this time is picked up again by the sweep.
    RECHECK_LEASE_SECONDS = 6 * 3600
    CHECK_MAX_RETRIES = 3
    # A transient failure is retried after this, doubling each time (30, 60, 120 s).
    CHECK_RETRY_BACKOFF_SECONDS = 30
    # One check is stopped after this long (a soft limit a sixth earlier lets it record an error run first).
    CHECK_TIME_LIMIT_SECONDS = 180
    # The checks of one worker process that finish within RECHECK_RECORD_WAIT_MS of each other are recorded in
    # one transaction, up to RECHECK_RECORD_BATCH (tasks/recording.py): one commit and one append to the audit
    # chain for them all. A batch of 1 records each check on its own.
    RECHECK_RECORD_BATCH = 50
    RECHECK_RECORD_WAIT_MS = 250
    # The check tasks of one worker process that start within RECHECK_CLAIM_WAIT_MS of each other claim their work
    # rows (and read their providers) in one transaction, up to RECHECK_CLAIM_BATCH; 1 claims each on its own.
    RECHECK_CLAIM_BATCH = 50
    RECHECK_CLAIM_WAIT_MS = 20
    # The re-check sweep's checks are sent this many work rows a message (tasks.checks.run_checks), which runs
    # them side by side in RECHECK_CHECK_THREADS threads of the worker process (each claimed, checked and
    # recorded as a check sent alone) and is acknowledged once all are recorded; 1 sends each row alone. A check
    # thread mostly waits (on the site, then for its result's batch to commit), so there are more of them than
    # the worker's own threads (the Procfile's 10 x 10 rows fill these 100: no row a process has taken waits
    # unstarted); none holds a database connection while it waits.
    RECHECK_MESSAGE_ROWS = 10
    RECHECK_CHECK_THREADS = 100
    EXPIRY_REMINDER_DAYS = [90, 60, 30, 7]
    # How fresh each external source must be (days since it was last imported or answered): a check against an
    # older one is recorded as "source stale", never as a pass (services/sources.py).
    LEIE_FRESHNESS_DAYS = 31
    STATE_LIST_FRESHNESS_DAYS = 31
    NPPES_FRESHNESS_DAYS = 7
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
    # On Redis, a task a worker has taken but not acknowledged goes to another worker after this long: it must
    # outlast the longest retry back-off plus a check's time limit (refused at start otherwise).
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
    # Mail (services/outbox.py, backoffice/mail.py). MAIL_URL empty: every message is written as an .eml file under
    # OUTBOX_FOLDER. smtp://user:password@host:587 sends with STARTTLS, smtps://user:password@host:465 over TLS,
    # smtp://host:25?tls=none to a relay inside the deployment. Production refuses to start without MAIL_URL
    # and MAIL_FROM.
    MAIL_URL = ""
    MAIL_FROM = ""
    # A CA bundle to check the mail server's certificate against, when it is not signed by a public CA.
    MAIL_CA_BUNDLE = ""
    MAIL_TIMEOUT_SECONDS = 30
    MAIL_BATCH_SIZE = 100
    # A temporary failure (4xx, no connection) is tried again after 1, 2, 4 ... minutes, at most 6 hours apart,
    # MAIL_MAX_ATTEMPTS times in all (about a day and a half); then the message is shown to staff as undelivered.
    MAIL_MAX_ATTEMPTS = 12
    MAIL_RETRY_BACKOFF_SECONDS = 60
    MAIL_MAX_BACKOFF_SECONDS = 6 * 3600
    # A message claimed by a worker that died before recording the outcome is sent again after this long, with
    # the same Message-ID. It must outlast the delivery task's time limit, by which a claimed batch is finished
    # or abandoned.
    MAIL_SENDING_LEASE_SECONDS = 600
    MAIL_DELIVERY_TIME_LIMIT_SECONDS = 300
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
    # The longest a web request waits on Redis (rate-limit counts, the readiness probe) before it carries on
    # without it: a Redis that accepts connections and never answers must not hang sign-in.
    REDIS_WEB_TIMEOUT_SECONDS = 1
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
    # Who may read /metrics (Prometheus text): client addresses in these networks (comma-separated), or any
    # request carrying "Authorization: Bearer <METRICS_BEARER_TOKEN>" when that is set. Behind a proxy with
    # PROXY_FIX the address is the one the proxy saw.
    METRICS_ALLOWED_NETWORKS = "127.0.0.1/32,::1/128"
    METRICS_BEARER_TOKEN = ""
    LOG_LEVEL = "INFO"
    # Staff pages show every date in the reader's own time zone (chosen on their time-zone page); this one for
    # staff who chose none, anonymous pages, providers whose organisation has none, and mailed or stored text.
    # An IANA name; an unknown one refuses to start.
    DISPLAY_TIME_ZONE = "America/New_York"
    DEMO_PASSWORD = "demo-password-2026"
    # The Ed25519 key that signs verification receipts and audit checkpoints, never kept in the database
    # (backoffice/signing.py): PEM text in SIGNING_KEY, or a file named by SIGNING_KEY_FILE. Outside production,
    # with neither set, one is generated under instance/signing/. SIGNING_KEY_VALID_FROM (RFC 3339) says since
    # when it signs; keys retired by a rotation stay published from SIGNING_RETIRED_KEYS_FILE (a JWK set).
    SIGNING_KEY = ""
    SIGNING_KEY_FILE = ""
    SIGNING_KEY_VALID_FROM = ""
    SIGNING_RETIRED_KEYS_FILE = ""
    # Where signed checkpoints of the audit chain are published, one file each, never rewritten
    # (services/audit_publish.py): a folder the database's users cannot write, by default
    # instance/audit-checkpoints; an S3-compatible bucket mounted with overwrites refused (e.g. mountpoint-s3,
    # with Object Lock on the bucket) serves as well. Each is also mailed to AUDIT_CHECKPOINT_RECIPIENTS
    # (comma-separated e-mail addresses; empty: every active auditor account).
    CHECKPOINT_PUBLISH_DIR = ""
    AUDIT_CHECKPOINT_RECIPIENTS = ""


class DevelopmentConfig(Config):
    """The embedded default `make run` uses: SQLite, a serverless broker, a secret kept under instance/."""

    # The demo shows re-check results a minute after start instead of a quarter of an hour.
    SWEEP_RECHECK_SECONDS = 60
    # Mailed links (the .eml files under instance/outbox/) open the back-office `make run` serves; `make run`
    # sets it to its own port (honcho gives each process a PORT of its own, so it cannot be read from there).
    PUBLIC_BASE_URL = "http://127.0.0.1:5000/"


class TestingConfig(Config):
    TESTING = True
    SWEEP_ON_WORKER_START = False
    SECRET_KEY = "testing-secret-key-not-for-production"


class ProductionConfig(Config):
    SESSION_COOKIE_SECURE = True
    PROXY_FIX = True
    # A reverse proxy on the same host makes every public request come from 127.0.0.1: nobody reads the
    # metrics until the deployment names its scraper's network or a token.
    METRICS_ALLOWED_NETWORKS = ""


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
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, (dict, list)):
        return json.loads(raw)
    return raw


def load(name: str | None = None, overrides: dict | None = None) -> dict:
    """Settings for the named environment, with environment variables and explicit overrides applied."""
    name = name or os.environ.get("BACKOFFICE_ENV", "development")
    if name not in CONFIGS:
        raise SettingsError(f"BACKOFFICE_ENV must be one of {sorted(CONFIGS)}, not {name!r}")
    cls = CONFIGS[name]
    settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    settings["ENV_NAME"] = name
    for key, default in list(settings.items()):
        if key in os.environ:
            try:
                settings[key] = _coerce(os.environ[key], default)
            except ValueError as error:
                raise UnreadableSetting(f"{key} {os.environ[key]!r} cannot be read: {error}") from None
    for alias, key in _ALIASES.items():
        if alias in os.environ:
            settings[key] = os.environ[alias]
    settings.update(overrides or {})
    settings["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(settings["SQLALCHEMY_DATABASE_URI"])
    if not settings.get("SECRET_KEY"):
        if name == "production":
            raise SettingsError("SECRET_KEY must be set in production (a long random string)")
        settings["SECRET_KEY"] = _instance_secret()
    elif name == "production" and len(settings["SECRET_KEY"]) < 32:
        raise SettingsError("SECRET_KEY is too short for production: use at least 32 random characters")
    check_public_base_url(settings["PUBLIC_BASE_URL"], production=name == "production")
    check_mail(settings, production=name == "production")
    if name == "production" and not (settings["SIGNING_KEY"] or settings["SIGNING_KEY_FILE"]):
        raise SettingsError("SIGNING_KEY or SIGNING_KEY_FILE must be set in production (an Ed25519 private key "
                            "in PEM, kept outside the database: `flask signing new-key` writes one)")
    check_consistency(settings)
    return settings


DEFAULT_SENDER = "Provider verification <no-reply@backoffice.localhost>"


def check_mail(settings: dict, production: bool) -> None:
    """MAIL_URL and MAIL_FROM: required in production (no mail would ever leave); checked wherever set."""
    from backoffice.mail import MailSettingError, check_sender, parse_mail_url

    if production and not settings["MAIL_URL"]:
        raise SettingsError("MAIL_URL must be set in production, e.g. smtp://user:password@smtp.example.org:587: "
                           "without it no provider gets a confirmation, reset or decision e-mail")
    if production and not settings["MAIL_FROM"]:
        raise SettingsError("MAIL_FROM must be set in production, e.g. 'Provider verification "
                           "<no-reply@example.org>'")
    try:
        parse_mail_url(settings["MAIL_URL"])
        settings["MAIL_FROM"] = check_sender(settings["MAIL_FROM"] or DEFAULT_SENDER)
    except MailSettingError as error:
        raise SettingsError(str(error)) from None


def check_time_limits(settings: dict) -> tuple[int, int]:
    """A check task's (hard, soft) time limits: the soft one a sixth earlier, so the task can still record
    its error run before it is stopped."""
    hard = settings["CHECK_TIME_LIMIT_SECONDS"]
    return hard, hard - max(1, hard // 6)


def longest_retry_backoff(settings: dict) -> int:
    """The longest wait before a retry: the back-off doubled for each retry after the first."""
    retries = settings["CHECK_MAX_RETRIES"]
    return settings["CHECK_RETRY_BACKOFF_SECONDS"] * 2 ** (retries - 1) if retries > 0 else 0


def metrics_networks(setting: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of METRICS_ALLOWED_NETWORKS ("127.0.0.1/32,::1/128"); ValueError names a bad one."""
    parsed = []
    for part in (piece.strip() for piece in setting.split(",")):
        if part:
            try:
                parsed.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not a network (write one like 10.0.0.0/8 or ::1/128)") from None
    return parsed


# Settings that only make sense above zero; a zero sweep interval would make beat send it without pause, a
# zero batch would make the re-check sweep loop for ever.
POSITIVE = (
    "SWEEP_VERIFICATION_EXPIRY_SECONDS", "SWEEP_OUTBOX_SECONDS", "SWEEP_STAFF_DIGEST_SECONDS", "SWEEP_AUDIT_VERIFICATION_SECONDS",
    "SWEEP_RECHECK_SECONDS", "SWEEP_EXCLUSION_SECONDS", "SWEEP_EXPIRY_REMINDER_SECONDS", "SWEEP_SLA_SECONDS",
    "RECHECK_BATCH_SIZE", "RECHECK_LEASE_SECONDS", "CHECK_TIME_LIMIT_SECONDS", "BROKER_VISIBILITY_TIMEOUT_SECONDS",
    "STAFF_IDLE_TIMEOUT_MINUTES", "SECOND_FACTOR_PENDING_SECONDS", "VERIFICATION_VALIDITY_DAYS",
    "REVERIFICATION_LEAD_DAYS", "SWEEP_REVERIFICATION_SECONDS", "CRITERIA_REREVIEW_DEADLINE_DAYS",
    "RECHECK_INTERVAL_DAYS", "OUTBOUND_CONNECT_TIMEOUT_SECONDS", "OUTBOUND_TOTAL_TIMEOUT_SECONDS",
    "REDIS_WEB_TIMEOUT_SECONDS", "MAIL_TIMEOUT_SECONDS", "MAIL_BATCH_SIZE", "MAIL_MAX_ATTEMPTS",
    "MAIL_RETRY_BACKOFF_SECONDS", "MAIL_MAX_BACKOFF_SECONDS", "MAIL_SENDING_LEASE_SECONDS",
    "MAIL_DELIVERY_TIME_LIMIT_SECONDS", "LEIE_FRESHNESS_DAYS", "STATE_LIST_FRESHNESS_DAYS", "NPPES_FRESHNESS_DAYS",
    "RECHECK_RECORD_BATCH", "RECHECK_CLAIM_BATCH", "SCREENING_BATCH_SIZE", "RECHECK_MESSAGE_ROWS",
    "RECHECK_CHECK_THREADS",
)
NOT_NEGATIVE = ("CHECK_MAX_RETRIES", "CHECK_RETRY_BACKOFF_SECONDS", "RECHECK_RECORD_WAIT_MS", "RECHECK_CLAIM_WAIT_MS")
# Similarity scores from 0 to 1: 0 would raise every record of a state, above 1 none at all.
SCORE_THRESHOLDS = ("SCREENING_NAME_TOKEN_SET_THRESHOLD", "SCREENING_NAME_JARO_WINKLER_THRESHOLD",
                    "SCREENING_ADDRESS_THRESHOLD", "SCREENING_CITY_THRESHOLD")
LIMITS = ("LOGIN_RATE_LIMIT", "LOGIN_ACCOUNT_RATE_LIMIT", "SECOND_FACTOR_RATE_LIMIT", "RESET_RATE_LIMIT",
          "RESET_ACCOUNT_RATE_LIMIT", "REGISTER_RATE_LIMIT", "API_RATE_LIMIT")


def _limit_problem(name: str, spec: str) -> str | None:
    """A rate limit or lock-out that cannot be read, or one that locks everyone out. (A longer window that
    allows fewer attempts than a shorter one is allowed: the shorter one never decides, which is redundant,
    not harmful.)"""
    try:
        windows = parse_many(spec)
    except ValueError:
        return f"{name} {spec!r} is not a limit: write it like '10 per minute;60 per hour'"
    for window in windows:
        if window.amount < 1:
            return f"{name} {spec!r} allows no attempt at all ({window}): everyone would be locked out"
    return None


def contradictions(settings: dict) -> list[str]:
    """Every setting that is out of range and every pair that contradicts, each as one line."""
    problems = []
    for name in POSITIVE:
        if settings[name] <= 0:
            problems.append(f"{name} must be above 0, not {settings[name]}")
    for name in NOT_NEGATIVE:
        if settings[name] < 0:
            problems.append(f"{name} must not be negative, not {settings[name]}")
    for name in SCORE_THRESHOLDS:
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            problems.append(f"{name} must be a score above 0 and at most 1 (e.g. 0.88), not {value!r}")
    if problems:
        return problems  # the pairs below would divide and compare nonsense
    hard, soft = check_time_limits(settings)
    held = longest_retry_backoff(settings) + hard
    how_long = (f"the longest retry back-off ({longest_retry_backoff(settings)} s: CHECK_RETRY_BACKOFF_SECONDS "
                f"{settings['CHECK_RETRY_BACKOFF_SECONDS']} doubled up to CHECK_MAX_RETRIES "
                f"{settings['CHECK_MAX_RETRIES']}) plus CHECK_TIME_LIMIT_SECONDS {hard}")
    if settings.get("REDIS_URL") and settings["BROKER_VISIBILITY_TIMEOUT_SECONDS"] < held:
        problems.append(
            f"BROKER_VISIBILITY_TIMEOUT_SECONDS {settings['BROKER_VISIBILITY_TIMEOUT_SECONDS']} is shorter than "
            f"{how_long}: Redis would hand a waiting or running check to another worker again and again; "
            f"set it to at least {held}")
    if settings["RECHECK_LEASE_SECONDS"] < held:
        problems.append(
            f"RECHECK_LEASE_SECONDS {settings['RECHECK_LEASE_SECONDS']} is shorter than {how_long}: the sweep "
            f"would claim a provider again while its checks may still be running; set it to at least {held}")
    if settings["WORK_LEASE_SECONDS"] < held:
        problems.append(
            f"WORK_LEASE_SECONDS {settings['WORK_LEASE_SECONDS']} is shorter than {how_long}: the reconciler would "
            f"send a check again while it may still be running; set it to at least {held}")
    if settings["OUTBOUND_CONNECT_TIMEOUT_SECONDS"] > settings["OUTBOUND_TOTAL_TIMEOUT_SECONDS"]:
        problems.append(
            f"OUTBOUND_CONNECT_TIMEOUT_SECONDS {settings['OUTBOUND_CONNECT_TIMEOUT_SECONDS']} is longer than "
            f"OUTBOUND_TOTAL_TIMEOUT_SECONDS {settings['OUTBOUND_TOTAL_TIMEOUT_SECONDS']}, which includes it")
    if settings["OUTBOUND_TOTAL_TIMEOUT_SECONDS"] >= soft:
        problems.append(
            f"OUTBOUND_TOTAL_TIMEOUT_SECONDS {settings['OUTBOUND_TOTAL_TIMEOUT_SECONDS']} is not shorter than a "
            f"check's soft time limit ({soft} s, from CHECK_TIME_LIMIT_SECONDS {hard}): a slow site would stop "
            "the check before it can record the site as unreachable")
    if settings["MAIL_SENDING_LEASE_SECONDS"] <= settings["MAIL_DELIVERY_TIME_LIMIT_SECONDS"]:
        problems.append(
            f"MAIL_SENDING_LEASE_SECONDS {settings['MAIL_SENDING_LEASE_SECONDS']} is not longer than "
            f"MAIL_DELIVERY_TIME_LIMIT_SECONDS {settings['MAIL_DELIVERY_TIME_LIMIT_SECONDS']}: a message still being "
            "sent would be sent again by the next run")
    if settings["REVERIFICATION_LEAD_DAYS"] >= settings["VERIFICATION_VALIDITY_DAYS"]:
        problems.append(
            f"REVERIFICATION_LEAD_DAYS {settings['REVERIFICATION_LEAD_DAYS']} is not shorter than "
            f"VERIFICATION_VALIDITY_DAYS {settings['VERIFICATION_VALIDITY_DAYS']}: every approval would open the "
            "next re-verification at once")
    problems += [problem for name in LIMITS if (problem := _limit_problem(name, settings[name]))]
    try:
        metrics_networks(settings["METRICS_ALLOWED_NETWORKS"])
    except ValueError as error:
        problems.append(f"METRICS_ALLOWED_NETWORKS {settings['METRICS_ALLOWED_NETWORKS']!r}: {error}")
    zone = settings["DISPLAY_TIME_ZONE"]
    if zone not in available_timezones():
        problems.append(f"DISPLAY_TIME_ZONE {zone!r} is not a time zone of the IANA database: name one like "
                        "America/New_York or America/Los_Angeles")
    token = settings["METRICS_BEARER_TOKEN"]
    if token and len(token) < 24:
        problems.append("METRICS_BEARER_TOKEN is too short to keep the metrics private: use at least 24 random "
                        "characters")
    return problems


def check_consistency(settings: dict) -> None:
    """Refuse settings that contradict each other, naming the first problem in one line."""
    problems = contradictions(settings)
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise SettingsError(f"Settings refused: {problems[0]}{more}.")


def check_public_base_url(url: str, production: bool) -> None:
    """PUBLIC_BASE_URL, which mailed links are built on: required in production, and there https."""
    example = "the address people open the back-office at, e.g. https://backoffice.example.org/"
    if not url:
        if production:
            raise SettingsError(f"PUBLIC_BASE_URL must be set in production: {example}")
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
        raise SettingsError(f"PUBLIC_BASE_URL must be {needed} ({example}), not {url!r}")


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
