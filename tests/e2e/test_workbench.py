"""The research workbench in a real browser: a researcher decides a complete request in at most five page loads
after opening it (search the queue, open the case, claim, one assessment post, decide), then an advertiser
application that starts from the assessments of that decision, which a research lead finds under "Waiting for
my sign-off" and signs off. Every page is watched for script errors and CSP violations (conftest.Person)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT
from tests.e2e.test_journeys import staff_sign_in

pytestmark = pytest.mark.e2e

SHOTS = Path(os.environ.get("WORKBENCH_SHOTS", ROOT / "artifacts" / "e2e" / "workbench"))
SHOT_PREFIX = os.environ.get("WORKBENCH_SHOT_PREFIX", "after")

# What a person cannot do through the staff pages (a provider registering and sending its request) is made
# through the services, as the portal would.
SEED = """
from backoffice import create_app
from backoffice.extensions import db
from backoffice.models import Location, Provider, Role, SubmissionKind
from backoffice.services import accounts, review, submissions
from backoffice.services.review import ReviewPolicy

app = create_app()
with app.app_context():
    session = db.session
    provider = Provider(legal_name="Lakeside Recovery LLC", public_name="Lakeside Recovery",
                        website="https://lakeside.example.org", npi="1234567893",
                        levels_of_care=["outpatient"], services=["substance_use_treatment"])
    provider.locations.append(Location(street1="1 Lake Road", city="Roanoke", state="VA", zip="24011"))
    session.add(provider)
    member = accounts.create_account(session, "system:e2e", email="intake@lakeside.example", name="Lee Lake",
                                     password="lakeside e2e password 2026", roles=[Role.PROVIDER],
                                     email_confirmed=True)
    session.flush()
    accounts.add_member(session, "system:e2e", member, provider)
    submission = submissions.create_draft(session, member, provider, SubmissionKind.NEW_LISTING,
                                          {"public_name": "Lakeside Recovery", "phone": "540-555-0100"})
    review.submit(session, member, submission, ReviewPolicy())
    session.commit()
    print(provider.id, submission.id, member.id)
"""

ADVERTISER_APPLICATION = """
import sys
from backoffice import create_app
from backoffice.extensions import db
from urllib.parse import urlsplit
from backoffice.models import Account, Provider
from backoffice.services import advertising
from backoffice.services.advertising_copy import Copy
from backoffice.services.review import ReviewPolicy

app = create_app()
with app.app_context():
    session = db.session
    provider = session.get(Provider, int(sys.argv[1]))
    member = session.get(Account, int(sys.argv[2]))
    copy = Copy(headline="Recovery close to home", text="Residential and outpatient treatment; call admissions.",
                claims=("Admissions open 24 hours",),
                landing_url=f"https://{urlsplit(provider.website).hostname}/admissions")
    submission = advertising.apply(session, member, provider, ReviewPolicy(), copy)
    session.commit()
    print(submission.id)
"""


def run(stack, script: str, *args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=stack.env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def shot(person, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    person.page.screenshot(path=str(SHOTS / f"{SHOT_PREFIX}-{name}.png"), full_page=True)


class Loads:
    """The documents the main frame loads (each navigation a person waits for), with what caused each."""

    def __init__(self, page):
        self.page = page
        self.clicks: list[str] = []
        self.count = 0
        page.on("framenavigated", self._navigated)

    def _navigated(self, frame) -> None:
        if frame == self.page.main_frame:
            self.count += 1

    def did(self, what: str) -> None:
        self.clicks.append(what)


def test_a_researcher_decides_in_five_page_loads_and_a_lead_signs_off_the_advertiser(stack, people):
    provider_id, submission_id, member_id = run(stack, SEED)
    researcher = people("researcher")
    staff_sign_in(researcher, "researcher@e2e.example")
    page = researcher.page

    researcher.goto("/admin/review/?q=Lakeside")
    assert page.locator(f'a[href="/admin/review/case/{submission_id}"]').count() == 1
    loads = Loads(page)
    researcher.click(f'a[href="/admin/review/case/{submission_id}"]')
    loads.did("open the case from the search")
    shot(researcher, "case-new-request")
    researcher.click("#claim-form button[type=submit]")
    loads.did("claim")
    if SHOT_PREFIX == "before":  # the page as it was, for comparison: no summary to read further
        shot(researcher, "case-claimed")
        return
    summary = page.inner_text("#summary")
    assert "Licence: not assessed" in summary, summary
    shot(researcher, "case-claimed")

    codes = page.eval_on_selector_all("fieldset[id^=criterion-]", "els => els.map(e => e.id.slice(10))")
    assert "STATE_LICENCE" in codes and "ADVERTISER_STANDARDS" not in codes
    for code in codes:
        page.select_option(f"#assess-{code}-status", "met")
        page.fill(f"#assess-{code}-source", "State licensing board register")
        page.fill(f"#assess-{code}-note", f"Checked {code} against the register")
    researcher.click("#assess-form button[type=submit]")
    loads.did(f"save the {len(codes)} assessments in one post")
    assert f"{len(codes)} criteria assessed" in page.inner_text("body")
    assert "Every required criterion is met" in page.inner_text("#summary")

    page.check("#decide-form input[value=approved]")
    page.fill("#decide-form textarea[name=provider_note]", "Listed: welcome.")
    researcher.click("#decide-form button[type=submit]")
    loads.did("record the decision")
    assert "approved" in page.inner_text("#final-decision").lower()
    print(f"\nnew listing decided in {loads.count} page loads after opening the search: {'; '.join(loads.clicks)}")
    assert loads.count <= 5, loads.clicks

    # The listed provider applies to advertise: the review starts from the assessments just decided.
    (application_id,) = run(stack, ADVERTISER_APPLICATION, provider_id, member_id)
    researcher.goto("/admin/review/?q=Lakeside")
    loads = Loads(page)
    researcher.click(f'a[href="/admin/review/case/{application_id}"]')
    loads.did("open the advertiser application")
    researcher.click("#claim-form button[type=submit]")
    loads.did("claim")
    summary = page.inner_text("#summary")
    assert "Licence: carried over, not confirmed" in summary, summary
    assert "Advertiser standards: not assessed" in summary, summary
    assert "Carried over from the decision of" in page.inner_text("#criterion-STATE_LICENCE")
    shot(researcher, "case-carried-over")
    codes = page.eval_on_selector_all("fieldset[id^=criterion-]", "els => els.map(e => e.id.slice(10))")
    for code in codes:
        if page.locator(f"#assess-{code}-confirm").count():
            page.check(f"#assess-{code}-confirm")
        else:
            page.select_option(f"#assess-{code}-status", "met")
            page.fill(f"#assess-{code}-note", f"Checked {code}: accredited, no open finding, claims accurate")
    researcher.click("#assess-form button[type=submit]")
    loads.did("confirm the carried-over assessments and assess the rest in one post")
    page.check("#decide-form input[value=approved]")
    researcher.click("#decide-form button[type=submit]")
    loads.did("record the decision")
    assert "awaiting a second sign-off" in page.inner_text("#pending-decision")
    print(f"advertiser application decided in {loads.count} page loads after opening it: {'; '.join(loads.clicks)}")
    assert loads.count <= 5, loads.clicks

    lead = people("lead")
    staff_sign_in(lead, "lead@e2e.example")
    lead.goto("/admin/review/?view=signoff")
    lead.click(f'a[href="/admin/review/case/{application_id}"]')
    assert "sign off" in lead.page.inner_text("#summary").lower()
    lead.click("#sign-off-form button[type=submit]")
    assert "approved" in lead.page.inner_text("#final-decision").lower()
    assert stack.scalar("SELECT advertising_status FROM provider WHERE id = :id", id=int(provider_id)) == "active"
