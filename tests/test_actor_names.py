"""Who did something reads as the person's name and e-mail on every staff page and in exports; the audit
record keeps the id, exports still verify, and providers still read "the research team"."""
from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from backoffice.models import AuditEvent, Role
from backoffice.services import criteria
from tests.page_text import visible_text
from tests.review_helpers import CATALOGUE, in_review, provider_member, publish_catalogue, submitted
from tests.security_helpers import signed_in

ROOT = Path(__file__).resolve().parent.parent


def verify_offline(tmp_path, content: str, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(content)
    return subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(path)],
                          capture_output=True, text=True, timeout=60)


def test_staff_pages_and_exports_name_the_people_who_acted(app, session, make_account, make_provider, tmp_path):
    publish_catalogue(session)
    researcher = make_account(Role.RESEARCHER, email="riley@example.org")
    researcher.name = "Riley Researcher"
    lead = make_account(Role.RESEARCH_LEAD, email="lee@example.org")
    lead.name = "Lee Lead"
    session.commit()
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    submission = in_review(session, researcher, submitted(session, member, provider))
    definition = criteria.load_definition(CATALOGUE)
    definition["criteria"][0]["guidance"] += " Also check the assumed-name register."
    criteria.publish(session, lead, definition)
    session.commit()
    riley, lee = "Riley Researcher <riley@example.org>", "Lee Lead <lee@example.org>"
    raw = re.compile(r"\buser:\d+\b")

    staff = signed_in(app, researcher)
    case = staff.get(f"/admin/review/case/{submission.id}").get_data(as_text=True)
    timeline = visible_text(case[case.index('id="timeline"'):case.index("</ol>", case.index('id="timeline"'))])
    assert f"in review ({riley})" in timeline and not raw.search(timeline), timeline
    catalogue = visible_text(staff.get("/admin/catalogue/").get_data(as_text=True))
    assert "v2\ncurrent\n" in catalogue and lee in catalogue and not raw.search(catalogue)

    auditor = signed_in(app, make_account(Role.AUDITOR))
    log = visible_text(auditor.get(f"/admin/audit/?provider_id={provider.id}").get_data(as_text=True))
    assert riley in log and not raw.search(log.replace("user:ID", "")), log
    history = auditor.get(f"/admin/audit/provider/{provider.id}").get_data(as_text=True)
    rows = visible_text(history[history.index('id="provider-history"'):])
    assert riley in rows and not raw.search(rows)
    claimed = session.scalar(select(AuditEvent).where(AuditEvent.action == "submission.assigned"))
    event = visible_text(auditor.get(f"/admin/audit/event/{claimed.seq}").get_data(as_text=True))
    assert f"{riley} (user:{researcher.id})" in event  # the record itself keeps the id
    assert claimed.actor == f"user:{researcher.id}"

    jsonl = auditor.post("/admin/audit/export", data={"format": "jsonl"}).get_data(as_text=True)
    events = [json.loads(line) for line in jsonl.splitlines() if '"record":"event"' in line]
    by_researcher = [e for e in events if e["actor"] == f"user:{researcher.id}"]
    assert by_researcher and {e["actor_name"] for e in by_researcher} == {riley}
    assert {e["actor_name"] for e in events if e["actor"] == "system:test"} == {"system:test"}
    result = verify_offline(tmp_path, jsonl, "trail.jsonl")
    assert result.returncode == 0 and result.stdout.startswith("OK:"), result.stdout + result.stderr

    csv_text = auditor.post("/admin/audit/export", data={"format": "csv"}).get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert "actor_name" in rows[0]
    named = {json.loads(r["actor_name"]) for r in rows if r["actor"] == json.dumps(f"user:{lead.id}")}
    assert named == {lee}
    result = verify_offline(tmp_path, csv_text, "trail.csv")
    assert result.returncode == 0 and result.stdout.startswith("OK:"), result.stdout + result.stderr

    portal = signed_in(app, member)
    page = visible_text(portal.get(f"/portal/requests/{submission.id}").get_data(as_text=True))
    assert "the research team" in page
    assert "Riley" not in page and "riley@example.org" not in page and not raw.search(page)
