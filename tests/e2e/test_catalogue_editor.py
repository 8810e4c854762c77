"""The criteria catalogue editor in a real browser: a research lead edits the next version, previews its
difference from the version in force, publishes it, and reads the earlier version."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.e2e.test_journeys import staff_sign_in

pytestmark = pytest.mark.e2e

# Where to copy the screenshots as well (the closing note's before/after pictures), when set.
SHOTS = os.environ.get("CATALOGUE_SHOTS")

# Every id on the page unique, and every control with a label tied to it (a <label for>, or aria-label).
UNLABELLED = """() => {
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const duplicates = ids.filter((id, i) => ids.indexOf(id) !== i);
  const unlabelled = [...document.querySelectorAll('input, select, textarea')]
    .filter(e => e.type !== 'hidden' && e.type !== 'submit')
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map(e => e.name || e.id);
  return {duplicates, unlabelled};
}"""


def keep(person, name: str) -> None:
    path = person.shot(name)
    if SHOTS:
        shutil.copy(path, os.path.join(SHOTS, path.name))


def assert_accessible(person) -> None:
    found = person.page.evaluate(UNLABELLED)
    assert found == {"duplicates": [], "unlabelled": []}, found


def test_a_lead_edits_previews_and_publishes_the_next_version_then_reads_the_earlier_one(people):
    lead = people("lead")
    staff_sign_in(lead, "lead@e2e.example")
    lead.goto("/admin/catalogue/")
    lead.click("#edit-next")
    page = lead.page
    assert page.inner_text("h2") == "The next version: v2"
    assert page.get_attribute("#criteria-0-code", "readonly") is not None
    assert_accessible(lead)

    assert page.locator("details[open]").count() == 0  # every criterion folded until it needs looking at
    for number in (0, 1, 3):
        page.click(f"#criterion-{number} > summary")
    page.fill("#criteria-1-title", "Current state licence for every level of care listed")
    page.fill("#criteria-0-freshness_days", "365")
    page.uncheck("#criteria-3-required_for_advertisers")
    lead.click("#preview-top")
    difference = page.inner_text("#draft-difference")
    assert "Freshness limit: none → 365 days" in difference, difference
    assert "Title: Current state licence covering each level of care listed → " \
           "Current state licence for every level of care listed" in difference
    assert "Required for advertisers: yes → no" in difference
    assert page.input_value("#criteria-0-freshness_days") == "365"  # the draft is kept as typed
    assert_accessible(lead)
    keep(lead, "catalogue-editor-after-preview")

    # A wrong limit: named beside the field and at the top; nothing typed is lost.
    assert page.locator("details[open]").count() == 3  # the changed ones
    page.click("#criterion-4 > summary")
    page.fill("#criteria-4-freshness_days", "99999")
    page.fill("#notes", "Legal entities are looked up yearly; accreditation optional for advertisers.")
    lead.click("#publish")
    assert "Nothing was published." in page.inner_text("#refusal")
    assert "between 1 and 3650 days" in page.inner_text("#criterion-4")
    assert page.get_attribute("#criteria-4-freshness_days", "autofocus") is not None
    assert page.get_attribute("#refusal-link", "href") == "#criteria-4-freshness_days"
    assert page.input_value("#criteria-1-title") == "Current state licence for every level of care listed"
    keep(lead, "catalogue-editor-after-refused")

    # A criterion added and moved, without any script on the page.
    page.fill("#criteria-4-freshness_days", "90")
    lead.click("#add-criterion")
    assert page.evaluate("() => document.activeElement.id") == "criteria-13-code"
    page.fill("#criteria-13-code", "HARM_REDUCTION")
    page.fill("#criteria-13-title", "Offers naloxone on site")
    page.fill("#criteria-13-guidance", "Ask to see the naloxone kit at the visit.")
    page.fill("#criteria-13-evidence", "Photo of the kit.")
    page.check("#criteria-13-applies_to_levels-1")
    page.click("#criterion-13 button:has-text('Move up')")
    page.wait_for_load_state()
    assert page.input_value("#criteria-12-code") == "HARM_REDUCTION"
    lead.click("#publish")
    assert "/admin/catalogue/v/2" in page.url, page.url
    shown = page.inner_text("main") if page.locator("main").count() else page.inner_text("body")
    assert "Criteria catalogue v2 is published" in shown and "Difference from v1" in shown
    assert "added HARM_REDUCTION" in page.inner_text("#version-difference")
    assert_accessible(lead)
    keep(lead, "catalogue-version-2")

    lead.goto("/admin/catalogue/v/1")
    assert "The first version: every criterion is new" in page.inner_text("body")
    assert "Freshness limit\n365 days" in page.inner_text("#criterion-STATE_LICENCE")
    assert_accessible(lead)
    keep(lead, "catalogue-version-1")
    lead.goto("/admin/catalogue/")
    keep(lead, "catalogue-index-after")
