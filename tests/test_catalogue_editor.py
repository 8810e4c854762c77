"""The criteria catalogue editor: a research lead drafts the next version criterion by criterion, previews its
difference from the version in force, and publishes it; every earlier version can be read in words."""
from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from backoffice.models import AuditEvent, CriteriaCatalogue, Criterion, Role
from backoffice.services import criteria
from backoffice.services.errors import Conflict, DomainError
from tests.conftest import login
from tests.page_text import readability_problems, visible_text
from tests.review_helpers import CATALOGUE, publish_catalogue


class _Form(HTMLParser):
    """What a browser sends for the form with this id: its inputs, ticked boxes, textareas and selects."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, MultiDict()
        self._textarea: str | None = None
        self._select: str | None = None
        self._select_value: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.add(a["name"], a.get("value", "y"))
            else:
                self.fields.add(a["name"], a.get("value", ""))
        elif tag == "textarea":
            self._textarea, self._text = a["name"], []
        elif tag == "select":
            self._select, self._select_value = a["name"], None
        elif tag == "option" and self._select and ("selected" in a or self._select_value is None):
            self._select_value = a.get("value", "")

    def handle_data(self, data):
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            self.fields.add(self._textarea, re.sub(r"^\r?\n", "", "".join(self._text)))
            self._textarea = None
        elif tag == "select" and self._select is not None:
            self.fields.add(self._select, self._select_value or "")
            self._select = None


def editor_form(page: str) -> MultiDict:
    parser = _Form("catalogue-editor")
    parser.feed(page)
    assert parser.fields, "no editor form on the page"
    return parser.fields


def index_of(fields: MultiDict, code: str) -> int:
    return next(int(re.match(r"criteria-(\d+)-code", k).group(1)) for k, v in fields.items(multi=True)
                if k.endswith("-code") and v == code)


def field_errors(page: str) -> list[str]:
    return [html.unescape(e) for e in re.findall(r'<div class="invalid-feedback d-block">([^<]+)</div>', page)]


def problems(page: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'<li class="refusal-problem">(.*?)</li>', page)]


def versions(session) -> list[int]:
    session.expire_all()
    return list(session.scalars(select(CriteriaCatalogue.version).order_by(CriteriaCatalogue.version)))


def events(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent))


@pytest.fixture
def lead(client, session, make_account):
    publish_catalogue(session)
    account = make_account(Role.RESEARCH_LEAD)
    account.name = "Lee Lead"
    session.commit()
    login(client, account)
    return account


def opened(client) -> tuple[str, MultiDict]:
    response = client.get("/admin/catalogue/next")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    return page, editor_form(page)


# -- the difference, as a pure function -----------------------------------------------------------------------


def _definition():
    return criteria.load_definition(CATALOGUE)


def test_the_difference_names_each_added_removed_moved_and_changed_criterion_in_words():
    before = criteria.draft(_definition())
    changed = _definition()
    items = changed["criteria"]
    npi = next(i for i in items if i["code"] == "NPI_ACTIVE")
    npi["freshness_days"] = 45
    npi["required"] = False
    npi["applies_to_levels"] = ["residential", "hospital_inpatient"]
    npi["automated_check"] = None
    contact = next(i for i in items if i["code"] == "CONTACT_CONFIRMED")
    items.remove(contact)
    items.insert(0, contact)  # moved to the top: the others did not move
    items[:] = [i for i in items if i["code"] != "PHYSICAL_SITE"]
    items.append({"code": "HARM_REDUCTION", "title": "Offers naloxone", "guidance": "g", "evidence": "e",
                  "required": False})
    found = {d.code: d for d in criteria.difference(before, criteria.draft(changed))}

    assert set(found) == {"NPI_ACTIVE", "CONTACT_CONFIRMED", "PHYSICAL_SITE", "HARM_REDUCTION"}
    assert [str(c) for c in found["NPI_ACTIVE"].changes] == [
        "Required: yes → no",
        "Applies to: every provider → Residential, Hospital inpatient",
        "Automated check: NPI Registry (NPPES) lookup → none",
        "Freshness limit: 90 days → 45 days",
    ]
    assert found["NPI_ACTIVE"].kind == "changed" and found["NPI_ACTIVE"].moved is None
    assert found["CONTACT_CONFIRMED"].kind == "moved" and found["CONTACT_CONFIRMED"].moved == (12, 1)
    assert found["PHYSICAL_SITE"].kind == "removed" and found["HARM_REDUCTION"].kind == "added"
    assert criteria.difference(before, criteria.draft(_definition())) == []


def test_a_title_change_is_shown_before_and_after():
    before = criteria.draft(_definition())
    changed = _definition()
    changed["criteria"][0]["title"] = "Registered, active legal entity"
    (only,) = criteria.difference(before, criteria.draft(changed))
    assert only.summary == ("LEGAL_ENTITY changed: Title: Registered legal entity where it offers services → "
                            "Registered, active legal entity")


@pytest.mark.parametrize("value, message", [
    (0, "between 1 and 3650"), (-1, "between 1 and 3650"), (99999, "between 1 and 3650"),
    ("365", "whole number"), (True, "whole number"), (2.5, "whole number"),
])
def test_the_service_refuses_a_freshness_limit_that_is_not_1_to_3650_days(session, value, message):
    definition = _definition()
    definition["criteria"][0]["freshness_days"] = value
    with pytest.raises(DomainError, match=message):
        criteria.publish(session, "system:test", definition)
    assert versions(session) == []


def test_the_cli_file_publishes_freshness_limits_and_a_stale_draft_is_refused(session):
    definition = _definition()
    definition["criteria"][0]["freshness_days"] = 365
    first = criteria.publish(session, "system:test", definition)
    assert [c.freshness_days for c in first.criteria[:5]] == [365, 365, None, 365, 90]
    assert criteria.definition_of(first)["criteria"][0]["freshness_days"] == 365
    definition["criteria"][0]["freshness_days"] = 180
    with pytest.raises(Conflict, match="v1 was published while this draft was edited from an empty catalogue"):
        criteria.publish(session, "system:test", definition, based_on=0)
    assert criteria.publish(session, "system:test", definition, based_on=1).version == 2


# -- the editor's pages -----------------------------------------------------------------------------------------


def test_a_lead_edits_a_title_and_a_freshness_limit_previews_the_difference_and_publishes(client, session, lead):
    page, fields = opened(client)
    assert "v2" in visible_text(page)
    assert "<details" in page and " open>" not in page  # nothing to look at yet: every criterion folded
    licence = index_of(fields, "STATE_LICENCE")
    assert 'readonly' in re.search(rf'<input[^>]*id="criteria-{licence}-code"[^>]*>', page).group(0)
    fields[f"criteria-{licence}-title"] = "Current state licence for every level of care listed"
    assert fields[f"criteria-{licence}-freshness_days"] == "365"
    fields[f"criteria-{licence}-freshness_days"] = "730"
    legal = index_of(fields, "LEGAL_ENTITY")
    assert fields[f"criteria-{legal}-freshness_days"] == ""
    fields[f"criteria-{legal}-freshness_days"] = "365"
    fields["action"] = "preview"

    preview = client.post("/admin/catalogue/next", data=fields)
    assert preview.status_code == 200
    page = preview.get_data(as_text=True)
    difference = visible_text(page[page.index('id="draft-difference"'):page.index('id="publish-title"')])
    assert "Title:\nCurrent state licence covering each level of care listed\n→\n" \
           "Current state licence for every level of care listed" in difference, difference
    assert "Freshness limit:\n365 days\n→\n730 days" in difference
    assert "LEGAL_ENTITY\nRegistered legal entity where it offers services\nFreshness limit:\nnone\n→\n365 days" \
        in difference, difference
    assert "NPI_ACTIVE" not in difference  # only what changed
    assert versions(session) == [1]  # a preview publishes nothing
    again = editor_form(page)
    assert again[f"criteria-{licence}-freshness_days"] == "730"

    before = events(session)
    again["notes"] = "Licences are re-checked yearly."
    published = client.post("/admin/catalogue/publish", data=again)
    assert published.status_code == 302 and published.headers["Location"].endswith("/admin/catalogue/v/2")
    assert versions(session) == [1, 2]
    catalogue = criteria.current(session)
    licence_row = next(c for c in catalogue.criteria if c.code == "STATE_LICENCE")
    assert (licence_row.title, licence_row.freshness_days) == (
        "Current state licence for every level of care listed", 730)
    assert catalogue.criteria[0].freshness_days == 365
    assert [c.code for c in catalogue.criteria] == [i["code"] for i in _definition()["criteria"]]
    assert catalogue.notes == "Licences are re-checked yearly." and catalogue.published_by == f"user:{lead.id}"
    assert events(session) == before + 2  # the version, and the impact report kept with it
    published, kept = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(2)).all()[::-1]
    assert published.action == "criteria.published" and published.after["version"] == 2
    assert kept.action == "criteria.impact_kept" and kept.after["version"] == 2

    shown = visible_text(client.get("/admin/catalogue/v/2").get_data(as_text=True))
    assert "Criteria catalogue v2 is published; new reviews use it." in shown
    assert "Difference from v1" in shown and "Freshness limit:\n365 days\n→\n730 days" in shown


def test_publishing_with_no_change_is_refused_and_nothing_is_published(client, session, lead):
    _, fields = opened(client)
    fields["notes"] = "Same criteria, new words about them"
    before = events(session)
    refused = client.post("/admin/catalogue/publish", data=fields)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert problems(page) == ["This is the same as v1: nothing to publish"]
    assert 'id="refusal-what">Nothing was published.</div>' in page
    assert editor_form(page)["notes"] == "Same criteria, new words about them"
    assert versions(session) == [1] and events(session) == before


def test_notes_are_needed_to_publish(client, session, lead):
    _, fields = opened(client)
    fields["criteria-0-title"] = "Registered, active legal entity"
    refused = client.post("/admin/catalogue/publish", data=fields)
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert "Say what changed and why: the notes are published with the version." in field_errors(page)
    assert editor_form(page)["criteria-0-title"] == "Registered, active legal entity"
    assert 'autofocus' in re.search(r'<textarea[^>]*id="notes"[^>]*>', page).group(0)
    # The edited criterion stays open, marked; the untouched ones fold away.
    assert " open>" in re.search(r'<details[^>]*id="criterion-0"[^>]*>', page).group(0)
    assert re.search(r'<details[^>]*id="criterion-2"[^>]*>', page).group(0).endswith('id="criterion-2">')
    summary = visible_text(page[page.index('id="criterion-0"'):page.index("</summary>", page.index('id="criterion-0"'))])
    assert "1. LEGAL_ENTITY\n— Registered, active legal entity\nedited" in summary, summary
    assert versions(session) == [1]


def _added(client, fields: MultiDict) -> tuple[str, MultiDict, int]:
    fields["action"] = "add"
    page = client.post("/admin/catalogue/next", data=fields).get_data(as_text=True)
    added = editor_form(page)
    number = max(int(re.match(r"criteria-(\d+)-code", k).group(1)) for k in added if k.endswith("-code"))
    assert 'autofocus' in re.search(rf'<input[^>]*id="criteria-{number}-code"[^>]*>', page).group(0)
    assert 'readonly' not in re.search(rf'<input[^>]*id="criteria-{number}-code"[^>]*>', page).group(0)
    return page, added, number


@pytest.mark.parametrize("field, value, message", [
    ("code", "harm reduction", "The code must be UPPER_SNAKE_CASE: a capital letter, then 1 to 39 capitals, "
                                "digits or underscores, for example LICENCE_CURRENT."),
    ("code", "LEGAL_ENTITY", "LEGAL_ENTITY is already the code of another criterion."),
    ("code", "", "Give the criterion a code."),
    ("title", "   ", "Give the criterion a title."),
    ("freshness_days", "0", "The freshness limit must be between 1 and 3650 days (ten years), or empty."),
    ("freshness_days", "-1", "The freshness limit must be between 1 and 3650 days (ten years), or empty."),
    ("freshness_days", "99999", "The freshness limit must be between 1 and 3650 days (ten years), or empty."),
    ("freshness_days", "abc", "The freshness limit must be a whole number of days, or empty for no limit."),
])
@pytest.mark.parametrize("action", ["preview", "publish"])
def test_a_wrong_input_is_named_beside_its_field_keeps_everything_typed_and_publishes_nothing(
        client, session, lead, field, value, message, action):
    _, fields = opened(client)
    _, fields, number = _added(client, fields)
    typed = {"code": "HARM_REDUCTION", "title": "Offers naloxone on site", "guidance": "Ask to see the kit.",
             "evidence": "Photo of the naloxone kit.", "freshness_days": "30", field: value}
    for name, text in typed.items():
        fields[f"criteria-{number}-{name}"] = text
    fields.setlist(f"criteria-{number}-applies_to_levels", ["residential", "otp"])
    fields["notes"] = "Harm reduction becomes a criterion."
    before = events(session)
    url = "/admin/catalogue/next" if action == "preview" else "/admin/catalogue/publish"
    refused = client.post(url, data={**fields.to_dict(flat=False), "action": action})
    assert refused.status_code == 400
    page = refused.get_data(as_text=True)
    assert message in field_errors(page), field_errors(page)
    assert any(message in p for p in problems(page))
    kept = editor_form(page)
    for name, text in typed.items():
        assert kept[f"criteria-{number}-{name}"] == text
    assert kept.getlist(f"criteria-{number}-applies_to_levels") == ["residential", "otp"]
    assert kept["notes"] == "Harm reduction becomes a criterion."
    assert versions(session) == [1] and events(session) == before


def test_a_criterion_is_added_moved_and_removed_without_script(client, session, lead):
    _, fields = opened(client)
    _, fields, number = _added(client, fields)
    for name, text in {"code": "HARM_REDUCTION", "title": "Offers naloxone on site", "guidance": "Ask.",
                       "evidence": "Photo.", "freshness_days": ""}.items():
        fields[f"criteria-{number}-{name}"] = text
    fields["action"] = f"up:{number}"
    moved = editor_form(client.post("/admin/catalogue/next", data=fields).get_data(as_text=True))
    assert moved[f"criteria-{number - 1}-code"] == "HARM_REDUCTION"
    assert moved[f"criteria-{number}-code"] == "ADVERTISER_STANDARDS"
    moved["action"] = "remove:0"
    removed = editor_form(client.post("/admin/catalogue/next", data=moved).get_data(as_text=True))
    assert removed["criteria-0-code"] == "STATE_LICENCE"
    removed["action"] = "preview"
    page = client.post("/admin/catalogue/next", data=removed).get_data(as_text=True)
    difference = visible_text(page[page.index('id="draft-changes"'):page.index('id="publish-title"')])
    assert "added\nHARM_REDUCTION" in difference and "removed\nLEGAL_ENTITY" in difference
    assert "\nmoved\n" not in f"\n{difference}\n"  # one added above another is not a move
    removed["notes"] = "Harm reduction in, legal entity folded into the licence check."
    assert client.post("/admin/catalogue/publish", data=removed).status_code == 302
    codes = [c.code for c in criteria.current(session).criteria]
    assert codes[0] == "STATE_LICENCE" and codes[-2:] == ["HARM_REDUCTION", "ADVERTISER_STANDARDS"]
    assert "LEGAL_ENTITY" not in codes


def test_a_draft_of_an_older_version_is_not_published_over_a_newer_one(client, session, lead):
    _, fields = opened(client)
    definition = _definition()
    definition["criteria"][0]["guidance"] += " Also check the assumed-name register."
    criteria.publish(session, "system:test", definition)
    session.commit()
    fields["criteria-1-freshness_days"] = "730"
    fields["notes"] = "Licences every two years."
    refused = client.post("/admin/catalogue/publish", data=fields)
    assert refused.status_code == 409
    assert problems(refused.get_data(as_text=True)) == [
        "v2 was published while this draft was edited from v1: open the editor again to start from v2."]
    assert versions(session) == [1, 2]


def test_a_researcher_reads_the_versions_but_cannot_edit_or_publish(client, session, make_account):
    publish_catalogue(session)
    login(client, make_account(Role.RESEARCHER))
    index = client.get("/admin/catalogue/").get_data(as_text=True)
    assert "v1" in visible_text(index) and "Edit the next version" not in index
    assert client.get("/admin/catalogue/next").status_code == 403
    definition = criteria.definition_of(criteria.current(session))
    fields = {"notes": "mine", "based_on": "1", "criteria-0-code": "LEGAL_ENTITY", "criteria-0-title": "t",
              "criteria-0-guidance": "g", "criteria-0-evidence": "e"}
    assert client.post("/admin/catalogue/next", data={**fields, "action": "preview"}).status_code == 403
    assert client.post("/admin/catalogue/publish", data=fields).status_code == 403
    assert versions(session) == [1] and definition


def test_an_earlier_version_is_shown_in_words_with_its_difference_from_the_one_before(client, session, lead):
    definition = _definition()
    npi = next(i for i in definition["criteria"] if i["code"] == "NPI_ACTIVE")
    npi["freshness_days"], npi["required"] = 45, False
    definition["notes"] = "NPI results older than 45 days are looked up again."
    criteria.publish(session, lead, definition)
    session.commit()

    index = client.get("/admin/catalogue/").get_data(as_text=True)
    assert 'href="/admin/catalogue/v/1"' in index and 'href="/admin/catalogue/v/2"' in index
    first = visible_text(client.get("/admin/catalogue/v/1").get_data(as_text=True))
    assert "Criteria catalogue v1" in first and "in force" not in first
    assert "The first version: every criterion is new" in first and "added\nNPI_ACTIVE" in first
    assert "Registered legal entity where it offers services" in first
    assert "Applies to\nProviders offering Opioid treatment program (OTP / MOUD)" not in first  # words, below
    assert "Applies to\nOpioid treatment program (OTP / MOUD)" in first
    assert "Automated check\nLicence expiry dates" in first and "licence_expiry" not in first
    assert '{"' not in first and "null" not in first

    second = visible_text(client.get("/admin/catalogue/v/2").get_data(as_text=True))
    assert "Criteria catalogue v2\nin force" in second and "Lee Lead" in second
    assert "NPI results older than 45 days are looked up again." in second
    assert "Required:\nyes\n→\nno" in second and "Freshness limit:\n90 days\n→\n45 days" in second
    assert "Freshness limit\n45 days" in second and "Freshness limit\nnone" in second
    for url in ("/admin/catalogue/", "/admin/catalogue/v/1", "/admin/catalogue/v/2", "/admin/catalogue/next"):
        assert readability_problems(client.get(url).get_data(as_text=True)) == [], url
    assert client.get("/admin/catalogue/v/9").status_code == 404

    download = client.get("/admin/catalogue/v/2/definition.json")
    assert download.status_code == 200 and download.headers["Content-Disposition"].endswith('v2.json"')
    assert criteria.draft(download.get_json())[4].freshness_days == 45


def test_every_id_on_the_editor_is_unique_and_every_control_has_a_label(client, session, lead):
    page, _ = opened(client)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    labelled = set(re.findall(r'<label[^>]*for="([^"]+)"', page))
    for tag in re.findall(r"<(?:input|textarea|select)\b[^>]*>", page):
        if 'type="hidden"' in tag or 'type="submit"' in tag:
            continue
        assert re.search(r'id="([^"]+)"', tag).group(1) in labelled, tag
    assert session.scalar(select(func.count()).select_from(Criterion)) == 13
