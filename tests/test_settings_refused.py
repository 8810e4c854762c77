"""Settings that contradict each other are refused at start, with one line that names them.

The first part asks config.load directly; the second starts the real entry points (a `flask` command, the
Procfile's web and worker) as a person would, and reads what they print.
"""
from __future__ import annotations

import os
import subprocess

import pytest

import config
import tasks.checks  # noqa: F401 - registers the check task, as a worker's imports do
from backoffice.startup import EXIT_STATUS
from tests.test_startup import BIN, ROOT, procfile

REDIS = "redis://127.0.0.1:6379/15"

# (overrides, the one line that refuses them)
REFUSED = {
    "visibility shorter than back-off plus time limit": (
        {"REDIS_URL": REDIS, "BROKER_VISIBILITY_TIMEOUT_SECONDS": 200},
        "Settings refused: BROKER_VISIBILITY_TIMEOUT_SECONDS 200 is shorter than the longest retry back-off "
        "(120 s: CHECK_RETRY_BACKOFF_SECONDS 30 doubled up to CHECK_MAX_RETRIES 3) plus CHECK_TIME_LIMIT_SECONDS "
        "180: Redis would hand a waiting or running check to another worker again and again; set it to at least "
        "300."),
    "visibility too short for a longer time limit": (
        {"REDIS_URL": REDIS, "CHECK_TIME_LIMIT_SECONDS": 3600, "OUTBOUND_TOTAL_TIMEOUT_SECONDS": 20,
         "WORK_LEASE_SECONDS": 3720},
        "Settings refused: BROKER_VISIBILITY_TIMEOUT_SECONDS 3600 is shorter than the longest retry back-off "
        "(120 s: CHECK_RETRY_BACKOFF_SECONDS 30 doubled up to CHECK_MAX_RETRIES 3) plus CHECK_TIME_LIMIT_SECONDS "
        "3600: Redis would hand a waiting or running check to another worker again and again; set it to at least "
        "3720."),
    "lease shorter than back-off plus time limit": (
        {"RECHECK_LEASE_SECONDS": 240},
        "Settings refused: RECHECK_LEASE_SECONDS 240 is shorter than the longest retry back-off (120 s: "
        "CHECK_RETRY_BACKOFF_SECONDS 30 doubled up to CHECK_MAX_RETRIES 3) plus CHECK_TIME_LIMIT_SECONDS 180: the "
        "sweep would claim a provider again while its checks may still be running; set it to at least 300."),
    "work lease shorter than back-off plus time limit": (
        {"WORK_LEASE_SECONDS": 240},
        "Settings refused: WORK_LEASE_SECONDS 240 is shorter than the longest retry back-off (120 s: "
        "CHECK_RETRY_BACKOFF_SECONDS 30 doubled up to CHECK_MAX_RETRIES 3) plus CHECK_TIME_LIMIT_SECONDS 180: the "
        "reconciler would send a check again while it may still be running; set it to at least 300."),
    "connect timeout beyond the total": (
        {"OUTBOUND_CONNECT_TIMEOUT_SECONDS": 30},
        "Settings refused: OUTBOUND_CONNECT_TIMEOUT_SECONDS 30 is longer than OUTBOUND_TOTAL_TIMEOUT_SECONDS 20, "
        "which includes it."),
    "fetch timeout beyond the check's soft limit": (
        {"OUTBOUND_TOTAL_TIMEOUT_SECONDS": 150},
        "Settings refused: OUTBOUND_TOTAL_TIMEOUT_SECONDS 150 is not shorter than a check's soft time limit "
        "(150 s, from CHECK_TIME_LIMIT_SECONDS 180): a slow site would stop the check before it can record the "
        "site as unreachable."),
    "lock-out that admits nobody": (
        {"LOGIN_ACCOUNT_RATE_LIMIT": "0 per 15 minutes"},
        "Settings refused: LOGIN_ACCOUNT_RATE_LIMIT '0 per 15 minutes' allows no attempt at all (0 per 15 minute): "
        "everyone would be locked out."),
    "limit that is not a limit": (
        {"API_RATE_LIMIT": "lots"},
        "Settings refused: API_RATE_LIMIT 'lots' is not a limit: write it like '10 per minute;60 per hour'."),
    "zero batch": (
        {"RECHECK_BATCH_SIZE": 0},
        "Settings refused: RECHECK_BATCH_SIZE must be above 0, not 0."),
    "no freshness for the LEIE": (
        {"LEIE_FRESHNESS_DAYS": 0},
        "Settings refused: LEIE_FRESHNESS_DAYS must be above 0, not 0."),
    "negative freshness for NPPES": (
        {"NPPES_FRESHNESS_DAYS": -7},
        "Settings refused: NPPES_FRESHNESS_DAYS must be above 0, not -7."),
    "no freshness for the state lists": (
        {"STATE_LIST_FRESHNESS_DAYS": 0},
        "Settings refused: STATE_LIST_FRESHNESS_DAYS must be above 0, not 0."),
    "zero record batch": (
        {"RECHECK_RECORD_BATCH": 0},
        "Settings refused: RECHECK_RECORD_BATCH must be above 0, not 0."),
    "negative record wait": (
        {"RECHECK_RECORD_WAIT_MS": -5},
        "Settings refused: RECHECK_RECORD_WAIT_MS must not be negative, not -5."),
    "negative retries": (
        {"CHECK_MAX_RETRIES": -1},
        "Settings refused: CHECK_MAX_RETRIES must not be negative, not -1."),
    "metrics network": (
        {"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,intranet"},
        "Settings refused: METRICS_ALLOWED_NETWORKS '10.0.0.0/8,intranet': 'intranet' is not a network (write "
        "one like 10.0.0.0/8 or ::1/128)."),
    "short metrics token": (
        {"METRICS_BEARER_TOKEN": "letmein"},
        "Settings refused: METRICS_BEARER_TOKEN is too short to keep the metrics private: use at least 24 random "
        "characters."),
    "screening threshold above 1": (
        {"SCREENING_CITY_THRESHOLD": 1.5},
        "Settings refused: SCREENING_CITY_THRESHOLD must be a score above 0 and at most 1 (e.g. 0.88), not 1.5."),
    "screening threshold of 0": (
        {"SCREENING_NAME_TOKEN_SET_THRESHOLD": 0},
        "Settings refused: SCREENING_NAME_TOKEN_SET_THRESHOLD must be a score above 0 and at most 1 (e.g. 0.88), "
        "not 0."),
    "two problems": (
        {"RECHECK_LEASE_SECONDS": 240, "OUTBOUND_CONNECT_TIMEOUT_SECONDS": 30},
        "Settings refused: RECHECK_LEASE_SECONDS 240 is shorter than the longest retry back-off (120 s: "
        "CHECK_RETRY_BACKOFF_SECONDS 30 doubled up to CHECK_MAX_RETRIES 3) plus CHECK_TIME_LIMIT_SECONDS 180: the "
        "sweep would claim a provider again while its checks may still be running; set it to at least 300 "
        "(and 1 more problem)."),
}


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch):
    """Only what each test gives: not the REDIS_URL or limits of the shell the suite runs in."""
    for name in [*config.Config.__dict__, "DATABASE_URL", "BACKOFFICE_ENV"]:
        if name.isupper():
            monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("case", list(REFUSED))
def test_contradictory_settings_are_refused_in_one_line(case):
    overrides, expected = REFUSED[case]
    with pytest.raises(config.SettingsError) as refused:
        config.load("testing", overrides)
    assert str(refused.value) == expected


def test_the_defaults_of_every_environment_are_consistent(monkeypatch):
    assert config.load("development", {"SECRET_KEY": "d" * 48})["BROKER_VISIBILITY_TIMEOUT_SECONDS"] == 3600
    assert config.load("testing", {"REDIS_URL": REDIS})["REDIS_URL"] == REDIS
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://backoffice.example.org/")
    monkeypatch.setenv("REDIS_URL", REDIS)
    monkeypatch.setenv("MAIL_URL", "smtps://backoffice:secret@smtp.example.org")
    monkeypatch.setenv("MAIL_FROM", "no-reply@example.org")
    monkeypatch.setenv("SIGNING_KEY_FILE", "/etc/backoffice/signing-key.pem")
    assert config.load("production")["RECHECK_LEASE_SECONDS"] == 6 * 3600


def test_a_visibility_timeout_matters_only_on_redis(monkeypatch):
    """The embedded broker has no visibility timeout: a short one there is unused, not contradictory."""
    assert config.load("testing", {"BROKER_VISIBILITY_TIMEOUT_SECONDS": 5})["BROKER_VISIBILITY_TIMEOUT_SECONDS"] == 5


def test_consistent_short_settings_are_accepted():
    settings = config.load("testing", {"REDIS_URL": REDIS, "BROKER_VISIBILITY_TIMEOUT_SECONDS": 6,
                                       "CHECK_TIME_LIMIT_SECONDS": 6, "CHECK_MAX_RETRIES": 0,
                                       "OUTBOUND_TOTAL_TIMEOUT_SECONDS": 4, "OUTBOUND_CONNECT_TIMEOUT_SECONDS": 2})
    assert config.check_time_limits(settings) == (6, 5)


def test_a_number_that_is_not_a_number_is_named(monkeypatch):
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT_SECONDS", "an hour")
    with pytest.raises(config.SettingsError) as refused:
        config.load("testing")
    assert str(refused.value) == ("BROKER_VISIBILITY_TIMEOUT_SECONDS 'an hour' cannot be read: invalid literal for "
                                  "int() with base 10: 'an hour'")


# -- the real entry points ----------------------------------------------------------------------------------

VISIBILITY_CASE = REFUSED["visibility shorter than back-off plus time limit"]


def start(command: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("FLASK_APP", "BACKOFFICE_ENV")}
    env.update({key: str(value) for key, value in VISIBILITY_CASE[0].items()})
    env.update(DATABASE_URL=f"sqlite:///{tmp_path}/backoffice.db", BACKOFFICE_INSTANCE_PATH=str(tmp_path / "instance"),
               PYTHONUNBUFFERED="1")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("entry", ["flask", "web", "worker"])
def test_each_entry_point_stops_with_the_one_line_and_no_traceback(tmp_path, entry):
    command = [str(BIN / "flask"), "--app", "backoffice", "routes"] if entry == "flask" else procfile(entry)
    result = start(command, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_STATUS, output
    assert "Traceback" not in output, output
    assert [line for line in result.stderr.splitlines() if "Settings refused" in line] == [VISIBILITY_CASE[1]], output
    assert "Settings refused" not in result.stdout


def test_the_check_task_runs_under_the_time_limits_the_settings_give(make_app):
    app = make_app(CHECK_TIME_LIMIT_SECONDS=60)
    task = app.extensions["celery"].tasks["tasks.checks.run_check"]
    assert (task.time_limit, task.soft_time_limit) == (60, 50)
