"""The five journeys of the product, in a real browser, through the pages only.

They run in order on one stack, as the people would: the provider's request is the one the researcher
reviews, the listing the provider then advertises, the advertiser the re-check catches, and the history
the auditor exports. What a person cannot do through a page (the calendar moving past a licence's expiry
date) is done to the database and said so.

Provider-supplied text carries script payloads; every page opened is checked for a dialog, the
`window.__xss` marker, script errors and CSP violations (see conftest.Person).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, timedelta

import pyotp
import pytest

from tests.e2e.conftest import ARTIFACTS, ROOT, STAFF_PASSWORD

pytestmark = pytest.mark.e2e

SCRIPT = "<script>window.__xss='script'</script>"
IMG = "\"><img src=x onerror=\"window.__xss='img'\">"
PROVIDER_EMAIL = "intake@harbor-e2e.example"
PROVIDER_PASSWORD = "harbor e2e password 2026"
LEGAL_NAME = f"Harbor Recovery Center LLC {IMG}"
PUBLIC_NAME = f"Harbor Recovery Center {SCRIPT}"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32

# What the journeys pass on to the next one.
story: dict = {}


def in_a_year() -> str:
    return (date.today() + timedelta(days=365)).isoformat()


def fill_form(page, values: dict) -> None:
    """Fill fields by name: text and dates typed, selects chosen, checkbox groups ticked by value."""
    for name, value in values.items():
        if isinstance(value, list):
            for option in value:
                page.check(f'input[name="{name}"][value="{option}"]')
        elif isinstance(value, bool):
            page.check(f'[name="{name}"]') if value else page.uncheck(f'[name="{name}"]')
        else:
            field = page.locator(f'[name="{name}"]').first
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)


def upload(person, form_selector: str, name: str, content: bytes, mime: str) -> None:
    person.page.set_input_files(f"{form_selector} input[type=file]",
                                files=[{"name": name, "mimeType": mime, "buffer": content}])


def staff_sign_in(person, email: str) -> None:
    """Password, then the second factor: set up the authenticator on first sign-in, a fresh code after."""
    page = person.page
    person.goto("/login")
    fill_form(page, {"email": email, "password": STAFF_PASSWORD})
    person.click("button[type=submit], input[type=submit]")
    if "/login/enrol" in page.url:
        secret = page.inner_text("#totp-secret").strip()
        assert page.locator("#qr-code svg").count() == 1
        assert page.text_content("#totp-uri").startswith("otpauth://totp/")
        story.setdefault("secrets", {})[email] = secret
        person.shot(f"staff-enrol-{email.split('@')[0]}")
        fill_form(page, {"code": pyotp.TOTP(secret).now()})
        person.click("input[type=submit]")
        assert page.locator("#recovery-codes li").count() == 10
        person.click("text=I have saved them")
    else:
        assert "/login/code" in page.url, page.url
        totp = pyotp.TOTP(story["secrets"][email])
        used = story.setdefault("used_codes", set())
        code = totp.now()
        while (email, code) in used:  # a code works once: wait for the next one, as a person would
            page.wait_for_timeout(1000)
            code = totp.now()
        fill_form(page, {"code": code})
        person.click("input[type=submit]")
    story.setdefault("used_codes", set()).add((email, pyotp.TOTP(story["secrets"][email]).now()))
    assert page.url.endswith("/admin/"), page.url


def open_case(person, submission_id: int) -> None:
    person.goto(f"/admin/review/case/{submission_id}")
    assert person.page.inner_text("h1, h4").strip()


def assess_everything(person, submission_id: int) -> int:
    """Assess each criterion shown as met, with a source, an evidence URL and a note, in the one assessment form
    of the case page (confirming those carried over from the decision in force); returns how many."""
    page = person.page
    codes = [c.replace("criterion-", "") for c in
             page.eval_on_selector_all("fieldset[id^=criterion-]", "els => els.map(e => e.id)")]
    assert codes, "no criteria on the case page"
    for code in codes:
        if page.locator(f"#assess-{code}-confirm").count():  # carried over from the decision in force
            page.check(f"#assess-{code}-confirm")
            continue
        page.select_option(f"#assess-{code}-status", "met")
        page.fill(f"#assess-{code}-source", "State licensing board register")
        page.fill(f"#assess-{code}-url", "https://licensing.example.gov/lookup?id=L-123")
        page.fill(f"#assess-{code}-note", f"Checked {code} against the register {IMG}")
    person.click("#assess-form button[type=submit]")
    for code in codes:
        assert page.inner_text(f"#criterion-{code} .assessment-status").strip().lower() == "met", code
    return len(codes)


def test_1_provider_registers_confirms_and_submits(stack, people):
    """Journey 1 (first half): register, confirm from the mailed link, submit a request with a licence PDF."""
    provider = people("provider")
    page = provider.page
    provider.goto("/register")
    fill_form(page, {"name": f"Ada Byron {SCRIPT}", "email": PROVIDER_EMAIL, "password": PROVIDER_PASSWORD,
                     "confirm": PROVIDER_PASSWORD})
    provider.click("input[type=submit]")
    assert "Check your e-mail" in page.content()

    provider.goto(stack.mail_link(PROVIDER_EMAIL, "confirm_email"))
    fill_form(page, {"email": PROVIDER_EMAIL, "password": PROVIDER_PASSWORD})
    provider.click("input[type=submit]")
    assert page.url.endswith("/portal/")

    provider.click("text=Add an organisation")
    fill_form(page, {"legal_name": LEGAL_NAME, "public_name": PUBLIC_NAME})
    provider.click("main form input[type=submit]")
    submission_id = int(re.search(r"/portal/requests/(\d+)/edit", page.url).group(1))
    story["submission"] = submission_id

    provider.goto(f"/portal/requests/{submission_id}")
    upload(provider, "#upload-form", "state-licence.pdf", PDF, "application/pdf")
    provider.click("#upload-form input[type=submit]")
    assert "state-licence.pdf" in page.inner_text("#documents ~ ul, body")

    provider.goto(f"/portal/requests/{submission_id}/edit")
    fill_form(page, {
        "npi": "1234567893", "website": stack.site.url, "phone": "(434) 296-1234", "email": "admissions@harbor-e2e.example",
        "levels_of_care": ["outpatient", "iop"], "services": ["substance_use_treatment"],
        "harm_reduction": ["naloxone", "moud"], "populations": ["adults"], "payment_accepted": ["medicaid"],
        "locations-0-street1": f"1 Main Street {IMG}", "locations-0-city": "Charlottesville",
        "locations-0-state": "VA", "locations-0-zip": "22902",
        "licences-0-state": "VA", "licences-0-number": f"L-123{SCRIPT}", "licences-0-licence_type": "Outpatient SUD",
        "licences-0-levels_of_care": ["outpatient", "iop"], "licences-0-expires_on": in_a_year(),
        "accreditations-0-body": "CARF", "accreditations-0-accreditation_id": "C-9",
        "accreditations-0-expires_on": in_a_year(),
        "principals-0-name": f"Dr. Ada Byron {IMG}", "principals-0-role": "medical_director",
        "no_referral_fees": True, "no_lead_generation": True, "no_patient_brokering": True,
        "signed_by": "Ada Byron",
    })
    provider.shot("portal-listing-request")
    provider.click("input[name=submit_request]")
    assert page.url.endswith(f"/portal/requests/{submission_id}"), page.url
    assert page.inner_text("#submission-state").strip().lower() == "submitted"
    provider.shot("portal-request-submitted")


def test_2_researcher_claims_assesses_and_asks(stack, people):
    """Journey 2 (first half): second factor, claim, assess every criterion with evidence, ask a question."""
    researcher = people("researcher")
    page = researcher.page
    staff_sign_in(researcher, "researcher@e2e.example")
    researcher.goto("/admin/review/")
    assert f"/admin/review/case/{story['submission']}" in page.content()
    researcher.shot("review-queue")
    open_case(researcher, story["submission"])
    researcher.click("text=Claim this request")
    assert "Researcher" in page.inner_text("#assignee")
    story["criteria"] = assess_everything(researcher, story["submission"])
    fill_form(page, {"message": f"Please send your CARF accreditation letter. {SCRIPT}"})
    researcher.click("#request-info button[type=submit]")
    assert page.inner_text("#submission-state").strip().lower() == "needs info"
    researcher.shot("review-case")


def test_1b_provider_answers_with_an_upload(stack, people):
    """Journey 1 (second half): the question is on the request page; answer it with a file."""
    provider = people("provider")
    page = provider.page
    provider.goto(f"/portal/requests/{story['submission']}")
    assert "Please send your CARF accreditation letter." in page.inner_text("#messages")
    fill_form(page, {"message": f"Attached. {IMG}"})
    upload(provider, "#answer-form", "carf-letter.png", PNG, "image/png")
    provider.click("#answer-form input[type=submit]")
    assert page.inner_text("#submission-state").strip().lower() == "in review"


def test_2b_researcher_approves_and_the_provider_sees_why(stack, people):
    """Journey 2 (end) and 1 (end): approve; the provider reads the decision and its note."""
    researcher = people("researcher")
    page = researcher.page
    open_case(researcher, story["submission"])
    assert "carf-letter.png" in page.inner_text("#documents")
    page.check("#decide-form input[name=outcome][value=approved]")
    fill_form(page, {"provider_note": f"Welcome to the directory. {SCRIPT}",
                     "internal_note": "Licence and CARF letter checked against the registers."})
    researcher.click("#decide-form button[type=submit]")
    assert page.inner_text("#final-decision").startswith("approved by")

    provider = people("provider")
    provider.goto(f"/portal/requests/{story['submission']}")
    decision = provider.page.inner_text("#decision")
    assert "approved" in decision.lower() and "Welcome to the directory." in decision
    assert "Licence and CARF letter checked" not in provider.page.content()
    provider.shot("portal-decision")
    story["provider_id"] = stack.scalar("select provider_id from submission where id = :id", id=story["submission"])


def test_3_advertiser_application_with_a_second_sign_off(stack, people):
    """Journey 3: apply to advertise; a researcher approves, a research lead signs off; the feed marks it."""
    provider = people("provider")
    provider.goto(f"/portal/organisations/{story['provider_id']}/advertise")
    fill_form(provider.page, {"headline": "Outpatient care in Charlottesville", "text": "Call our admissions team.",
                              "claims": "Accredited by CARF\nAdmissions answered by our own staff",
                              "landing_url": f"{stack.site.url}admissions"})
    provider.click("main form [type=submit]")
    application = stack.scalar("select max(id) from submission where kind = 'advertiser_application'")
    assert application, "no advertiser application was created"
    story["application"] = application

    researcher = people("researcher")
    page = researcher.page
    open_case(researcher, application)
    researcher.click("text=Claim this request")
    assessed = assess_everything(researcher, application)
    assert assessed > story["criteria"] - 1  # the advertiser standards are assessed too
    page.check("#decide-form input[name=outcome][value=approved]")
    fill_form(page, {"provider_note": "Approved to advertise.", "internal_note": "Advertiser standards met."})
    researcher.click("#decide-form button[type=submit]")
    assert page.locator("#pending-decision").count() == 1
    assert "someone else must sign it off" in page.content()

    lead = people("lead")
    staff_sign_in(lead, "lead@e2e.example")
    open_case(lead, application)
    lead.click("text=Sign off this decision")
    assert "signed off by" in lead.page.inner_text("#final-decision")
    lead.shot("review-signed-off")

    feed = feed_entry(researcher, story["provider_id"])
    assert feed["advertiser"] is True and feed["advertiser_disclosure"]
    # The feed describes the advertisement the research team approved, as the provider typed it.
    assert feed["advertisement"]["headline"] == "Outpatient care in Charlottesville"
    assert feed["advertisement"]["claims"] == ["Accredited by CARF", "Admissions answered by our own staff"]
    assert "'Outpatient care in Charlottesville'" in feed["advertiser_disclosure"]
    assert feed["public_name"] == PUBLIC_NAME  # shown as text, never as markup


def feed_entries(person, provider_id: int) -> list[dict]:
    """The public feed as its consumers read it: JSON, this provider's entries (none when not listed)."""
    response = person.goto("/api/v1/listings")
    assert response.status == 200 and response.headers["content-type"].startswith("application/json")
    body = json.loads(person.page.inner_text("body"))
    return [item for item in body["listings"] if item["id"] == provider_id]


def feed_entry(person, provider_id: int) -> dict:
    entries = feed_entries(person, provider_id)
    assert len(entries) == 1, f"provider {provider_id} not in the feed"
    return entries[0]


def test_4_a_recheck_finds_the_site_gone_and_the_licence_expired(stack, people):
    """Journey 4: the site answers 404 and the licence lapses; findings appear and advertising stops."""
    provider_id = story["provider_id"]
    stack.site.gone = True
    # The calendar passing the licence's expiry date: no page can do that, so the date is moved.
    stack.execute("update licence set expires_on = :day where provider_id = :id",
                  day=date.today() - timedelta(days=1), id=provider_id)

    researcher = people("researcher")
    page = researcher.page
    researcher.goto(f"/admin/finding-work/provider/{provider_id}")
    researcher.click("text=Re-check now")

    def findings_shown():
        researcher.goto(f"/admin/finding-work/provider/{provider_id}")
        text = page.inner_text("body")
        return "404" in text and "icence" in text and text

    text = stack.wait_for(findings_shown, "the website and licence findings on the provider's page", 60)
    assert "critical" in text.lower()
    researcher.shot("findings-provider")
    researcher.goto("/admin/finding-work/")
    researcher.shot("findings-worklist")

    researcher.goto(f"/admin/review/provider/{provider_id}")
    assert "suspended" in page.inner_text("body").lower()
    # The lapsed licence expired the verification, so the provider leaves the feed entirely; nowhere is it
    # still marked an advertiser.
    assert all(entry["advertiser"] is False for entry in feed_entries(researcher, provider_id))
    assert feed_entries(researcher, provider_id) == []


def test_5_auditor_exports_the_history_and_it_verifies_offline(stack, people, tmp_path):
    """Journey 5: the auditor reads the provider's history, exports it, and the offline script accepts it."""
    auditor = people("auditor")
    page = auditor.page
    staff_sign_in(auditor, "auditor@e2e.example")
    auditor.shot("dashboard-auditor")
    auditor.goto(f"/admin/audit/provider/{story['provider_id']}")
    history = page.inner_text("body")
    assert "advertising" in history and "decision" in history
    auditor.shot("audit-provider-history")
    page.check("#export-form input[value=jsonl]")
    with page.expect_download() as download:
        page.click("#export-form button[type=submit]")
    export = tmp_path / "provider-history.jsonl"
    download.value.save_as(export)
    auditor.check()
    result = subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(export)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = export.read_text().splitlines()
    assert sum(1 for line in lines if json.loads(line).get("record") == "event") > 10
    (ARTIFACTS / "provider-history.jsonl").write_text(export.read_text())

    # One event's action rewritten after the fact: the offline check names it and fails.
    records = [json.loads(line) for line in lines]
    event = next(r for r in records if r.get("record") == "event")
    event["action"] = "decision.rewritten"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    refused = subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(tampered)],
                             capture_output=True, text=True)
    assert refused.returncode == 1, refused.stdout + refused.stderr
