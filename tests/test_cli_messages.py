"""What the command line tells a new user: commands that work as printed, messages without doubled words."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from backoffice.cli import DEMO_CODE_COMMAND
from tests.test_demo import seed

ROOT = Path(__file__).resolve().parent.parent
DOUBLED = re.compile(r"\b(\w+) \1\b", re.I)


def test_the_seed_output_prints_a_demo_code_command_that_works_as_printed(app, database_url, tmp_path):
    result = seed(app)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "Staff sign in with a second factor: `.venv/bin/flask --app backoffice demo-code EMAIL` prints the "
        "current code.")

    # Run from the repository root as printed, in a shell without FLASK_APP (as a new terminal has it).
    printed = DEMO_CODE_COMMAND.replace(".venv/bin/", f"{Path(sys.executable).parent}/").split()
    env = {key: value for key, value in os.environ.items() if key not in ("FLASK_APP", "BACKOFFICE_ENV")}
    # The testing settings hold the key the seeded authenticator secrets were sealed with.
    env.update(DATABASE_URL=database_url, BACKOFFICE_INSTANCE_PATH=str(tmp_path / "instance"),
               BACKOFFICE_ENV="testing")
    code = subprocess.run([*printed[:-1], "researcher@demo.example"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert code.returncode == 0, code.stderr
    assert re.fullmatch(r"\d{6}\n", code.stdout)


def test_every_mention_of_demo_code_gives_the_app():
    """README, the Makefile, the code: wherever a person is told to run demo-code, it is the form that works."""
    mentions = []
    for path in [ROOT / "README.md", ROOT / "Makefile", *(ROOT / "backoffice").rglob("*.py"), *(ROOT / "docs").rglob("*.md")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for found in re.finditer(r"""([^\s`"]*flask[^`"\n]*?) demo-code""", line):
                mentions.append((f"{path.relative_to(ROOT)}:{number}", found.group(1)))
    assert mentions, "the README and the Makefile tell a new user how to get a code"
    wrong = [(where, command) for where, command in mentions
             if command not in (".venv/bin/flask --app backoffice", "$(BIN)/flask --app backoffice")]
    assert wrong == []
    assert {where.split(":")[0] for where, _ in mentions} >= {"README.md", "Makefile", "backoffice/cli.py"}


def test_a_broken_catalogue_file_says_where_without_a_doubled_word(app, tmp_path):
    broken = tmp_path / "catalogue.json"
    broken.write_text('{"criteria": [\n{"code": "LEGAL_ENTITY", "title": "unterminated}]}')
    result = app.test_cli_runner().invoke(args=["criteria", "publish", str(broken)])
    assert result.exit_code == 1
    assert result.output == ("Error: catalogue.json is not valid JSON: Unterminated string starting at line 2, "
                             "column 35. Nothing was published.\n")
    assert not DOUBLED.search(result.output)


def test_the_audit_export_command_writes_the_trail_and_records_that_it_did(app, session, tmp_path):
    import json

    from sqlalchemy import select

    from backoffice.models import AuditEvent
    from backoffice.services import audit

    audit.record(session, "system:test", "sweep.requested", "sweep", "verification_expiry")
    session.commit()
    target = tmp_path / "trail.jsonl"
    result = app.test_cli_runner().invoke(args=["audit", "export", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output == f"Wrote {target}.\n"
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert records[0]["record"] == "export"
    assert [r["action"] for r in records if r["record"] == "event"][:1] == ["sweep.requested"]
    exported = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.exported")).all()
    assert [e.actor for e in exported] == ["system:cli"] and exported[0].after["format"] == "jsonl"
