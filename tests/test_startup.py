"""A database the app cannot use: every real entry point stops with one line naming DATABASE_URL.

The commands run as a person runs them (subprocesses, from the repository root): `make migrate` (the
first step of `make run`), `flask` commands, and the Procfile's gunicorn and Celery lines.
"""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from backoffice.startup import EXIT_STATUS
from tests.conftest import ADMIN_URL, BACKEND

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "s3cret-pw"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bad_urls(tmp: Path) -> dict[str, tuple[str, str]]:
    """Each kind of unusable DATABASE_URL, and what the one line must say about it."""
    port = closed_port()
    urls = {
        "unparseable": ("not a url", "DATABASE_URL is not a database URL: 'not a url'. Give one like "
                                     "postgresql://USER:PASSWORD@HOST:5432/NAME or sqlite:////"),
        "unknown scheme": (f"oracle9://app:{PASSWORD}@db.example.org/prod",
                           "DATABASE_URL oracle9://app:***@db.example.org/prod names a kind of database this "
                           "back-office does not run on ('oracle9')"),
        "unsupported database": (f"mysql://app:{PASSWORD}@db.example.org/prod",
                                 "DATABASE_URL mysql://app:***@db.example.org/prod names a kind of database"),
        "unknown driver": (f"postgresql+nodriver://app:{PASSWORD}@db.example.org/prod",
                           "DATABASE_URL postgresql+nodriver://app:***@db.example.org/prod names an unknown "
                           "driver 'nodriver' for postgresql"),
        "driver not installed": (f"postgresql+psycopg2://app:{PASSWORD}@db.example.org/prod",
                                 "DATABASE_URL postgresql+psycopg2://app:***@db.example.org/prod needs a driver "
                                 "that is not installed (No module named 'psycopg2')"),
        "server not answering": (f"postgresql://app:{PASSWORD}@127.0.0.1:{port}/prod",
                                 f"DATABASE_URL postgresql://app:***@127.0.0.1:{port}/prod: cannot connect to the "
                                 f'database: connection failed: connection to server at "127.0.0.1", port {port} '
                                 "failed: Connection refused"),
        "unknown host": (f"postgres://app:{PASSWORD}@no-such-host.invalid/prod",
                         "DATABASE_URL postgres://app:***@no-such-host.invalid/prod: cannot connect to the "
                         "database: failed to resolve host 'no-such-host.invalid'"),
        "sqlite folder missing": (f"sqlite:///{tmp}/missing/backoffice.db",
                                  f"DATABASE_URL sqlite:///{tmp}/missing/backoffice.db: cannot connect to the "
                                  "database: unable to open database file"),
    }
    if BACKEND == "postgresql":
        missing = make_url(ADMIN_URL).set(database="bo_no_such_database", password=PASSWORD)
        urls["postgresql database missing"] = (
            missing.render_as_string(hide_password=False),
            f'DATABASE_URL {missing.render_as_string(hide_password=True)}: cannot connect to the database: '
            'connection failed: connection to server at')
    return urls


def run(command: list[str], database_url: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("FLASK_APP", "BACKOFFICE_ENV")}
    env.update(DATABASE_URL=database_url, BACKOFFICE_INSTANCE_PATH=str(tmp / "instance"), PYTHONUNBUFFERED="1")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def assert_one_line(result: subprocess.CompletedProcess, expected: str) -> None:
    output = result.stdout + result.stderr
    named = [line for line in output.splitlines() if "DATABASE_URL" in line]
    assert result.returncode == EXIT_STATUS, output
    assert "Traceback" not in output and PASSWORD not in output, output
    assert len(named) == 1 and named[0].startswith(expected), output


def procfile(name: str) -> list[str]:
    """The Procfile's command for a process, run with this test's virtualenv and a free port."""
    line = next(text for text in (ROOT / "Procfile").read_text().splitlines() if text.startswith(f"{name}:"))
    command = line.split(":", 1)[1].replace("$PORT", str(closed_port())).replace(".venv/bin/", f"{BIN}/")
    return shlex.split(command)


KINDS = ["unparseable", "unknown scheme", "unsupported database", "unknown driver", "driver not installed",
         "server not answering", "unknown host", "sqlite folder missing"]
if BACKEND == "postgresql":  # a server to ask for a database it does not have
    KINDS.append("postgresql database missing")


@pytest.mark.parametrize("kind", KINDS)
def test_flask_db_upgrade_names_database_url_in_one_line(tmp_path, kind):
    url, expected = bad_urls(tmp_path)[kind]
    assert_one_line(run([str(BIN / "flask"), "--app", "backoffice", "db", "upgrade"], url, tmp_path), expected)


@pytest.mark.parametrize("kind", ["unparseable", "server not answering"])
@pytest.mark.parametrize("process", ["web", "worker", "beat"])
def test_the_procfile_processes_stop_with_one_line(tmp_path, process, kind):
    url, expected = bad_urls(tmp_path)[kind]
    assert_one_line(run(procfile(process), url, tmp_path), expected)


def test_make_run_stops_at_its_first_step_with_one_line(tmp_path):
    url, expected = bad_urls(tmp_path)["server not answering"]
    result = run(["make", "--no-print-directory", "migrate", f"VENV={BIN.parent}"], url, tmp_path)
    named = [line for line in (result.stdout + result.stderr).splitlines() if "DATABASE_URL" in line]
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr
    assert len(named) == 1 and named[0].startswith(expected)


def test_other_flask_commands_say_the_same(tmp_path):
    url, expected = bad_urls(tmp_path)["unknown host"]
    assert_one_line(run([str(BIN / "flask"), "--app", "backoffice", "seed-demo", "--if-empty"], url, tmp_path),
                    expected)
    assert_one_line(run([str(BIN / "flask"), "--app", "backoffice", "audit", "verify"], url, tmp_path), expected)


def test_a_good_database_url_still_starts(tmp_path):
    url = f"sqlite:///{tmp_path}/backoffice.db"
    result = run([str(BIN / "flask"), "--app", "backoffice", "db", "upgrade"], url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DATABASE_URL" not in result.stdout + result.stderr
