"""A real Celery worker (and beat) in their own processes, on the configured broker and database."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from backoffice.dispatch import after_commit
from backoffice.extensions import db
from backoffice.models import AdvertisingStatus, Provider, Role, VerificationStatus, utcnow
from tasks.sweeps import verification_expiry_sweep
from tests.conftest import login

ROOT = Path(__file__).resolve().parent.parent


class CeleryProcess:
    def __init__(self, app, tmp_path: Path, kind: str, **settings):
        self.log = tmp_path / f"{kind}.log"
        env = {
            **os.environ,
            "BACKOFFICE_ENV": "testing",
            "BACKOFFICE_INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
            "BROKER_FOLDER": app.config["BROKER_FOLDER"],
            "CELERY_QUEUE": app.config["CELERY_QUEUE"],
            "OUTBOX_FOLDER": app.config["OUTBOX_FOLDER"],
            "BEAT_SCHEDULE_FILE": app.config["BEAT_SCHEDULE_FILE"],
            **{key: str(value) for key, value in settings.items()},
        }
        if app.config.get("REDIS_URL"):
            env["REDIS_URL"] = app.config["REDIS_URL"]
        args = [sys.executable, "-m", "celery", "-A", "tasks.worker"]
        if kind == "worker":
            args += ["worker", "--pool=solo", "-Q", app.config["CELERY_QUEUE"], "--without-mingle",
                     "--without-gossip", "--without-heartbeat", "-l", "INFO"]
        else:
            args += ["beat", "-l", "INFO", "--max-interval", "1"]
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared in the log:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def start_celery(app, tmp_path):
    started: list[CeleryProcess] = []

    def start(kind: str = "worker", **settings) -> CeleryProcess:
        proc = CeleryProcess(app, tmp_path, kind, **settings)
        started.append(proc)
        if kind == "worker":
            proc.wait_for_log("ready.")
        return proc

    yield start
    for proc in started:
        proc.stop()


def lapsed_provider(make_provider) -> Provider:
    now = utcnow()
    return make_provider(
        verification_status=VerificationStatus.VERIFIED, verified_at=now - timedelta(days=400),
        verified_until=now - timedelta(days=35), advertising_status=AdvertisingStatus.ACTIVE,
    )


def wait_until_expired(session, provider_id: int, timeout: float = 60) -> Provider:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.rollback()
        provider = session.get(Provider, provider_id)
        session.refresh(provider)
        if provider.verification_status == VerificationStatus.EXPIRED:
            return provider
        time.sleep(0.25)
    raise AssertionError(f"provider {provider_id} was not expired within {timeout} s")


def queued_messages(app) -> int:
    celery = app.extensions["celery"]
    with celery.connection_for_write() as conn:
        return conn.default_channel.queue_declare(app.config["CELERY_QUEUE"], passive=False).message_count


def test_a_web_request_enqueues_after_commit_and_a_real_worker_runs_it(app, client, session, make_account,
                                                                        make_provider, start_celery):
    provider = lapsed_provider(make_provider)
    start_celery("worker")
    login(client, make_account(Role.RESEARCH_LEAD))
    response = client.post("/admin/sweeps/verification-expiry")
    assert response.status_code == 302
    expired = wait_until_expired(session, provider.id)
    assert expired.advertising_status == AdvertisingStatus.SUSPENDED


def test_a_researcher_may_not_run_the_sweep(client, make_account):
    login(client, make_account(Role.RESEARCHER))
    assert client.post("/admin/sweeps/verification-expiry").status_code == 403


def test_a_task_asked_for_in_a_rolled_back_transaction_is_never_sent(app, session):
    assert queued_messages(app) == 0
    after_commit(session, verification_expiry_sweep)
    session.rollback()
    session.commit()
    assert queued_messages(app) == 0
    after_commit(session, verification_expiry_sweep)
    session.commit()
    assert queued_messages(app) == 1
    with app.extensions["celery"].connection_for_write() as conn:
        conn.default_channel.queue_purge(app.config["CELERY_QUEUE"])


def test_beat_schedules_the_expiry_sweep_and_the_worker_runs_it(app, session, make_provider, start_celery):
    provider = lapsed_provider(make_provider)
    start_celery("worker")
    start_celery("beat", SWEEP_VERIFICATION_EXPIRY_SECONDS=1)
    expired = wait_until_expired(session, provider.id)
    assert expired.advertising_status == AdvertisingStatus.SUSPENDED
    db.session.rollback()
