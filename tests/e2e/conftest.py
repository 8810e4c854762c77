"""End-to-end: the real app under gunicorn, a real Celery worker and beat, Debian's Chromium driven by Playwright.

One stack per module: a migrated database of its own (SQLite file, or PostgreSQL with Redis when
DATABASE_URL / REDIS_URL are set), the development settings `make run` uses (CSRF on, real rate limits)
with the few changes a test needs (fast outbox delivery, re-checks only when asked, a local HTTPS site
for the provider and a local NPPES registry answering with recorded responses).

Every page a journey opens is watched: a dialog, a `window.__xss` marker set by an injected payload, a
script error or a Content-Security-Policy violation fails the test.
"""
from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import BACKEND, RUN_ID
from tests.servers import LocalServer, fake_nppes, html_page, make_certificates, tls_context

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "e2e" / BACKEND
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions"]
STAFF_PASSWORD = "e2e staff password 2026"
SITE_HOST = "harbor-e2e.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProviderSite:
    """The provider's own website, served over HTTPS on 127.0.0.1; `gone` makes every page a 404."""

    def __init__(self, folder: Path):
        ca, cert, key = make_certificates(folder, [SITE_HOST])
        self.ca = ca
        self.gone = False
        self.names = "Harbor Recovery Center"
        self.server = LocalServer(self._answer, tls=tls_context(cert, key))
        self.url = f"https://{SITE_HOST}:{self.server.port}/"

    def _answer(self, path: str, headers: dict):
        if self.gone:
            return html_page("Not found", 404)
        return html_page(f"<h1>{self.names}</h1><p>Outpatient treatment in Charlottesville.</p>")

    def close(self):
        self.server.close()


class Stack:
    """The served app, worker and beat on one database. `setup` is "journeys" (the criteria and three staff
    accounts, nothing else: the journeys make the rest through the pages) or "demo" (`flask seed-demo`, as
    `make run` does on a fresh machine, plus the shipped exclusion lists, with every sweep run at start)."""

    def __init__(self, database_url: str, folder: Path, setup: str = "journeys"):
        self.setup = setup
        self.folder = folder
        self.database_url = database_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.outbox = folder / "outbox"
        self.site = ProviderSite(folder)
        self.nppes = fake_nppes()
        queue = f"e2e-{RUN_ID}-{uuid.uuid4().hex[:6]}"
        self.env = {
            **os.environ,
            "BACKOFFICE_ENV": "development",
            "BACKOFFICE_INSTANCE_PATH": str(folder / "instance"),
            "FLASK_APP": "backoffice",
            "DATABASE_URL": database_url,
            "BROKER_FOLDER": str(folder / "broker"),
            "CELERY_QUEUE": queue,
            "OUTBOX_FOLDER": str(self.outbox),
            "UPLOAD_FOLDER": str(folder / "uploads"),
            "BEAT_SCHEDULE_FILE": str(folder / "beat-schedule"),
            "PUBLIC_BASE_URL": self.base_url,
            "RATELIMIT_KEY_PREFIX": f"limits-{queue}",
            # Journeys sign in a handful of people from one address within a few minutes.
            "LOGIN_RATE_LIMIT": "200 per minute",
            "SWEEP_OUTBOX_SECONDS": "1",
            "SWEEP_EXPIRY_REMINDER_SECONDS": "3",
            # Re-checks run when a researcher asks for them in journey 4, not on a timer in between.
            "SWEEP_ON_WORKER_START": "false",
            "SWEEP_RECHECK_SECONDS": "86400",
            "OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS": "true",
            "OUTBOUND_HOST_OVERRIDES": json.dumps({SITE_HOST: "127.0.0.1"}),
            "OUTBOUND_CA_BUNDLE": str(self.site.ca),
            "OUTBOUND_PER_HOST_INTERVAL_MS": "0",
            "NPPES_API_URL": self.nppes.url(path="/api/"),
        }
        if setup == "demo":
            # As on `make run`: every sweep once when the worker starts, so re-checks and screening have run.
            self.env["SWEEP_ON_WORKER_START"] = "true"
        self.processes: list[tuple[str, subprocess.Popen, Path]] = []
        self.engine = create_engine(database_url)

    # -- processes ----------------------------------------------------------------------------------

    def _start(self, name: str, args: list[str]) -> None:
        log = self.folder / f"{name}.log"
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.processes.append((name, proc, log))

    def start(self) -> None:
        python = sys.executable
        if self.setup == "demo":
            self.flask("seed-demo")
            self.flask("import", "leie", str(ROOT / "data" / "public" / "oig_leie_monthly_exclusions_2016-01_to_2023-06.csv"))
        else:
            self.flask("criteria", "publish", str(ROOT / "data" / "criteria" / "catalogue-v1.json"))
            for email, role in (("researcher@e2e.example", "researcher"), ("lead@e2e.example", "research_lead"),
                                ("auditor@e2e.example", "auditor")):
                self.flask("create-staff-user", email, "--name", email.split("@")[0].title(), "--role", role,
                           "--password", STAFF_PASSWORD)
        self._start("web", [python, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
                            "--threads", "4", "--access-logfile", "-", "backoffice:create_app()"])
        self._start("worker", [python, "-m", "celery", "-A", "tasks.worker", "worker", "--pool", "threads",
                               "--concurrency", "4", "-Q", self.env["CELERY_QUEUE"], "--without-mingle",
                               "--without-gossip", "-l", "INFO"])
        self._start("beat", [python, "-m", "celery", "-A", "tasks.worker", "beat", "-l", "INFO",
                             "--max-interval", "1"])
        self.wait_for(lambda: self._web_up(), "the web server to answer", 60)
        self.wait_for(lambda: "ready." in (self.folder / "worker.log").read_text(), "the worker to start", 60)

    def _web_up(self) -> bool:
        import urllib.request

        try:
            return urllib.request.urlopen(f"{self.base_url}/login", timeout=2).status == 200
        except OSError:
            return False

    def flask(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=self.env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"flask {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def wait_for(self, condition, what: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc, log in self.processes:
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited while waiting for {what}:\n{log.read_text()[-3000:]}")
            value = condition()
            if value:
                return value
            time.sleep(0.3)
        logs = "\n".join(f"--- {name}\n{log.read_text()[-2000:]}" for name, _, log in self.processes)
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    def stop(self) -> None:
        for _, proc, _ in self.processes:
            proc.terminate()
        for _, proc, _ in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.engine.dispose()
        self.site.close()
        self.nppes.close()

    # -- what a person would see outside the browser ------------------------------------------------

    def mail_link(self, to: str, kind: str) -> str:
        """The link in the newest mail of this kind to this address, once the worker has delivered it."""
        def find():
            for path in sorted(self.outbox.glob(f"*-{kind}.eml"), reverse=True):
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                if message["To"] == to:
                    return re.search(r"https?://\S+", message.get_body(("plain",)).get_content()).group(0)
            return None
        return self.wait_for(find, f"a {kind} mail to {to}", 30)

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def execute(self, sql: str, **params) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql), params)


_CLEARED: set[Path] = set()


@pytest.fixture(scope="module")
def stack(request, databases, tmp_path_factory):
    setup = getattr(request.module, "STACK_SETUP", "journeys")
    folder = tmp_path_factory.mktemp(f"e2e-{setup}")
    if ARTIFACTS not in _CLEARED:  # this run's screenshots and logs only
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        _CLEARED.add(ARTIFACTS)
    url = databases.empty()
    built = Stack(url, folder, setup)
    try:
        built.start()
        yield built
    finally:
        built.stop()
        for name, _, log in built.processes:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / f"{setup}-{name}.log").write_text(log.read_text())


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Person:
    """One person's browser (own cookies), with every page watched for injected script and CSP breakage."""

    def __init__(self, browser, stack: Stack, name: str):
        self.stack = stack
        self.name = name
        self.context = browser.new_context(base_url=stack.base_url, accept_downloads=True,
                                           viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda error: self.problems.append(f"script error on {self.page.url}: {error}"))
        self.page.on("console", self._console)

    def _dialog(self, dialog):
        self.problems.append(f"a {dialog.type} dialog opened on {self.page.url}: {dialog.message!r}")
        dialog.dismiss()

    def _console(self, message):
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(f"CSP violation on {self.page.url}: {message.text}")
        elif message.type == "error" and not self._document_status(message):
            source = message.location.get("url") or ""
            self.problems.append(f"console error on {self.page.url}: {message.text}"
                                 + (f" ({source})" if source and source != self.page.url else ""))

    def _document_status(self, message) -> bool:
        """Chromium logs a 4xx answer to the page itself as a console error; the caller judges the status."""
        return message.text.startswith("Failed to load resource") and message.location.get("url") == self.page.url

    def check(self) -> None:
        """Fail now if anything injected ran or the page broke its own policy."""
        marker = self.page.evaluate("() => window.__xss")
        if marker is not None:
            self.problems.append(f"injected script ran on {self.page.url}: window.__xss={marker!r}")
        assert not self.problems, "\n".join(self.problems)

    def goto(self, path: str):
        response = self.page.goto(path)
        self.check()
        return response

    def click(self, selector: str) -> None:
        self.page.click(selector)
        self.page.wait_for_load_state()
        self.check()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        self.check()
        self.context.close()


OPEN_PEOPLE: dict[str, Person] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """When a journey fails, keep what each person's browser showed at that moment."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name, person in OPEN_PEOPLE.items():
            try:
                person.shot(f"FAILED-{item.name}-{name}")
            except Exception:  # a closed page has nothing to show
                pass


@pytest.fixture(scope="module")
def people(browser, stack):
    made = OPEN_PEOPLE

    def person(name: str) -> Person:
        if name not in made:
            made[name] = Person(browser, stack, name)
        return made[name]

    yield person
    for p in list(made.values()):
        p.close()
    made.clear()
