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

from backoffice.models import AuditEvent, CheckKind, FindingSeverity, Role
from backoffice.services import criteria, findings, listing_requests, review, staff
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


def test_no_staff_page_shows_an_account_id_after_a_workflow(app, session, make_account, make_provider):
    """After a request is claimed, assigned, asked about and answered, a finding dismissed and a role asked
    for, the main staff pages name every person: none shows `user:N`. (Only the audit event page adds the
    recorded id in brackets beside the name, which the auditor needs to be exact.)"""
    publish_catalogue(session)
    researcher = make_account(Role.RESEARCHER, email="riley@example.org")
    researcher.name = "Riley Researcher"
    lead = make_account(Role.RESEARCH_LEAD, email="lee@example.org")
    lead.name = "Lee Lead"
    admin, second_admin = make_account(Role.ADMIN), make_account(Role.ADMIN)
    auditor = make_account(Role.AUDITOR)
    session.commit()
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    submission = in_review(session, researcher, submitted(session, member, provider))
    review.request_info(session, researcher, submission, "Please send the current licence.", None)
    session.commit()
    listing_requests.answer(session, member, submission, "Attached.")
    session.commit()
    review.assign(session, lead, submission, lead, None, "Lee takes it over.")
    finding, _ = findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, "site",
                                         FindingSeverity.WARNING, "Website does not answer", {})
    session.commit()
    findings.dismiss(session, researcher, finding, "The site answers again; it was a short outage.")
    staff.request_role(session, admin, researcher, Role.AUDITOR, "Covers the audit while the auditor is away.")
    session.commit()

    pages = {
        researcher: ["/admin/", "/admin/review/", f"/admin/review/case/{submission.id}",
                     f"/admin/review/provider/{provider.id}", "/admin/catalogue/", "/admin/finding-work/",
                     f"/admin/finding-work/{finding.id}", f"/admin/finding-work/provider/{provider.id}",
                     f"/admin/findings/details/?id={finding.id}", "/admin/submissions/",
                     f"/admin/submissions/details/?id={submission.id}", "/admin/mail/", "/admin/work/",
                     "/admin/time-zone/", "/admin/notifications/"],
        auditor: [f"/admin/audit/?provider_id={provider.id}", "/admin/audit/?action=submission.assigned",
                  "/admin/audit/?entity_type=account", f"/admin/audit/provider/{provider.id}",
                  "/admin/audit/verifications/", "/admin/findings/", f"/admin/findings/details/?id={finding.id}"],
        second_admin: ["/admin/staff/", f"/admin/staff/{researcher.id}", "/admin/accounts/",
                       f"/admin/accounts/details/?id={researcher.id}", "/admin/mail/"],
    }
    raw = re.compile(r"\buser:\d+\b")
    read = 0
    for account, urls in pages.items():
        browser = signed_in(app, account)
        for url in urls:
            response = browser.get(url)
            assert response.status_code == 200, url
            text = visible_text(response.get_data(as_text=True))
            assert not raw.search(text), (url, raw.findall(text), text[:3000])
            read += 1
    assert read == sum(len(urls) for urls in pages.values())

    # The pages do name them.
    browser = signed_in(app, auditor)
    log = visible_text(browser.get(f"/admin/audit/?provider_id={provider.id}").get_data(as_text=True))
    assert "Riley Researcher <riley@example.org>" in log and "Lee Lead <lee@example.org>" in log
    assigned = session.scalar(select(AuditEvent).where(AuditEvent.action == "submission.assigned",
                                                       AuditEvent.actor == f"user:{lead.id}"))
    event = visible_text(browser.get(f"/admin/audit/event/{assigned.seq}").get_data(as_text=True))
    assert f"Lee Lead <lee@example.org> (user:{lead.id})" in event  # the assignee, with its id
    people = visible_text(signed_in(app, second_admin).get("/admin/staff/").get_data(as_text=True))
    assert f"{admin.name} <{admin.email}>" in people  # who asked for the role

    # The provider reads its colleague's name and "the research team", never a staff member's name.
    colleague = provider_member(session, make_account, provider)
    colleague.name = "Casey Colleague"
    session.commit()
    portal = visible_text(signed_in(app, colleague).get(f"/portal/requests/{submission.id}").get_data(as_text=True))
    assert f"submitted (by {member.name})" in portal and "(by the research team)" in portal
    assert "Riley" not in portal and not raw.search(portal)
    own = visible_text(signed_in(app, member).get(f"/portal/requests/{submission.id}").get_data(as_text=True))
    assert "submitted (by you)" in own
