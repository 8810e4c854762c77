"""Every Flask-Admin list and details page, as each staff role it admits: licences, principals, locations and
codes read as labelled text a person would write, and nothing on the page that the Content-Security-Policy
refuses (an inline event handler, a `javascript:` link, an inline script).

The views come from the app's Admin, so a model view added later is read here without being listed."""
from __future__ import annotations

import re
from datetime import date, timedelta
from html.parser import HTMLParser

import pytest
from flask import url_for
from markupsafe import escape

from backoffice.admin.base import SecuredModelView
from backoffice.models import (
    Accreditation,
    CheckKind,
    CheckOutcome,
    CheckRun,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    FindingSeverity,
    Licence,
    ListingStatus,
    Location,
    Principal,
    PrincipalRole,
    Role,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.services import findings
from tests.conftest import login
from tests.page_text import readability_problems, visible_text
from tests.review_helpers import in_review, provider_member, publish_catalogue, submitted

EXPIRES = date(2027, 12, 1)
LOCATION = {"street1": "123 Main St", "street2": None, "city": "Springfield", "state": "IL", "zip": "62701",
            "county": None, "latitude": None, "longitude": None, "phone": None}


@pytest.fixture
def world(session, make_account, make_provider):
    """A provider with a licence, two principals, two locations and an accreditation; a request in review that
    proposes a licence and a principal; a decision, a check run, a closed finding, an exclusion record."""
    catalogue = publish_catalogue(session)
    provider = make_provider(
        legal_name="Springfield Recovery LLC", public_name="Springfield Recovery", npi="1234567893",
        levels_of_care=["residential", "iop"], services=["substance_use_treatment"],
        populations=["young_adults"], payment_accepted=["self_pay"], listing_status=ListingStatus.LISTED,
        verification_status=VerificationStatus.VERIFIED, verified_at=utcnow(),
        verified_until=utcnow() + timedelta(days=300), verified_catalogue_id=catalogue.id,
    )
    provider.locations[:] = [Location(**LOCATION),
                             Location(street1="9 Elm Road", street2="Unit 2", city="Chatham", state="IL",
                                      zip="62629", county="Sangamon", phone="+1 217-555-0100")]
    provider.licences.append(Licence(state="CA", number="12345", licence_type="Residential treatment",
                                     issuing_agency=None, levels_of_care=[], expires_on=EXPIRES))
    provider.licences.append(Licence(state="IL", number="IL-77", licence_type="Outpatient substance use",
                                     issuing_agency="IDHS", levels_of_care=["iop"], expires_on=None))
    provider.accreditations.append(Accreditation(body="CARF", accreditation_id="CARF-55", expires_on=EXPIRES))
    provider.principals.append(Principal(name="Jane Roe", role=PrincipalRole.MEDICAL_DIRECTOR))
    provider.principals.append(Principal(name="John Doe", role=PrincipalRole.CLINICAL_DIRECTOR, npi="1245319599"))
    session.commit()
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    proposed = {"public_name": "Springfield Recovery", "locations": [LOCATION],
                "licences": [{"state": "CA", "number": "12345", "licence_type": "Residential treatment",
                              "issuing_agency": "DHCS", "levels_of_care": ["residential"],
                              "expires_on": EXPIRES.isoformat()}],
                "principals": [{"name": "Jane Roe", "role": "medical_director", "npi": None}],
                "services": ["substance_use_treatment", "naloxone"]}
    submission = in_review(session, researcher, submitted(session, member, provider, SubmissionKind.UPDATE, proposed))
    moment = utcnow()
    session.add(Decision(submission_id=submission.id, outcome=DecisionOutcome.REJECTED,
                         status=DecisionStatus.AWAITING_SIGNOFF, reason_codes=["licence_missing"],
                         provider_note="Send the licence", internal_note="checked the state registry",
                         catalogue_id=catalogue.id, decided_by_id=researcher.id, decided_at=moment))
    run = CheckRun(provider_id=provider.id, check=CheckKind.LICENCE_EXPIRY, outcome=CheckOutcome.WARN,
                   summary="Licence IL-77 has no expiry date", source_version="recorded expiry dates",
                   evidence={"licence_ids": [1, 2], "levels_of_care": ["iop"], "checked_at": moment.isoformat()},
                   idempotency_key="licence_expiry:springfield", started_at=moment, finished_at=moment,
                   duration_ms=7)
    session.add(run)
    session.flush()
    finding, _ = findings.open_or_update(session, "system:test", provider, CheckKind.WEBSITE, "website:down",
                                         FindingSeverity.CRITICAL, "Website answers 404",
                                         {"status": 404, "final_url": "https://springfield.example.org/"}, run.id)
    session.flush()
    findings.resolve(session, researcher, finding, "the site is back")
    source = ExclusionSource(list_name="oig_leie", file_name="UPDATED.csv", file_date=date(2026, 11, 1),
                             sha256="0" * 64, row_count=1, imported_by="system:test")
    session.add(source)
    session.flush()
    session.add(ExclusionRecord(source_id=source.id, list_name="oig_leie", kind=ExclusionRecordKind.EXCLUSION,
                                row_key="1" * 64, last_name="Roe", first_name="Janet", name_key="roe janet",
                                state="IL", city="Springfield", exclusion_type="1128a1",
                                excluded_on=date(2020, 5, 1), raw={"LASTNAME": "ROE", "FIRSTNAME": "JANET"}))
    session.commit()
    return {"provider": provider, "submission": submission, "researcher": researcher}


def model_views(app) -> list[SecuredModelView]:
    return [view for view in app.extensions["admin"][0]._views if isinstance(view, SecuredModelView)]


class PolicyBreaches(HTMLParser):
    """What a strict Content-Security-Policy refuses in markup: inline handlers, `javascript:` URLs, inline
    scripts, style attributes and <style> blocks without the response's nonce."""

    URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._script_open = False
        self._script_text: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if re.fullmatch(r"on[a-z]+", name):
                self.found.append(f"inline handler {name}= on <{tag}>")
            if name in self.URL_ATTRIBUTES and value and re.sub(r"\s", "", value).lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in <{tag} {name}={value!r}>")
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
        attributes = dict(attrs)
        if tag == "script":
            self._script_open = not attributes.get("src")
            self._script_text = []
            if attributes.get("src") and "nonce" not in attributes and not attributes["src"].startswith("/"):
                self.found.append(f"script from elsewhere: {attributes['src']}")
        if tag == "style" and "nonce" not in attributes:
            self.found.append("<style> block without the nonce")

    def handle_data(self, data):
        if self._script_open:
            self._script_text.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script_open:
            self._script_open = False
            self.found.append(f"inline script: {''.join(self._script_text).strip()[:80]!r}")


def policy_breaches(html: str) -> list[str]:
    parser = PolicyBreaches()
    parser.feed(html)
    return parser.found


# What Python or JSON would write, never a person: a list or dict literal, a row's repr, an object address, an
# enum's repr, an actor label.
RAW = {
    "a raw JSON or Python list": re.compile(r"\[\s*(['\"]|\d+\s*,|\{)"),
    "a raw JSON or Python dict": re.compile(r"\{\s*['\"][\w ]+['\"]\s*:"),
    "a row's repr": re.compile(r"<[A-Z][A-Za-z]+ (#?\d+|\(transient|object)"),
    "a class name": re.compile(r"\b[A-Z][a-z]+[A-Z][A-Za-z]* #\d+"),
    "an object address": re.compile(r"0x[0-9a-f]{6,}"),
    "an enum's repr": re.compile(r"<?\b[A-Z][A-Za-z]+\.[A-Z_]{2,}\b(: '[^']*'>)?"),
    "an actor label": re.compile(r"\b(user|system):\w+"),
}


def raw_values(html: str) -> list[str]:
    found = []
    for line in visible_text(html).splitlines():
        for what, pattern in RAW.items():
            match = pattern.search(line)
            if match:
                found.append(f"{what}: {match.group(0)!r} in {line[:160]!r}")
    return found


def test_the_checks_find_what_they_look_for():
    """Each check fails on the thing it is for (a test that cannot fail proves nothing)."""
    page = ('<a href="javascript:void(0)">x</a><a href=" JavaScript:go()">y</a><button onclick="go()">z</button>'
            '<script>alert(1)</script><script src="/static/x.js"></script><div style="color:red">c</div><style>p{}</style>')
    found = policy_breaches(page)
    assert len(found) == 6, found
    assert policy_breaches('<script nonce="n" src="/static/x.js"></script><a href="#">a</a><style nonce="n">p{}</style>') == []
    for text in ("['outpatient', 'iop']", '{"state": "CA"}', "<Licence 3>", "<backoffice.models.Licence object at "
                 "0x7f3a2b1c>", "PrincipalRole.MEDICAL_DIRECTOR", "closed by user:12", "[1, 2]", "ExclusionSource #1"):
        assert raw_values(f"<p>{escape(text)}</p>"), text
    assert raw_values("<p>CA licence 12345 (Residential treatment), expires 1 Dec 2027</p>") == []


def pages(app, session, view) -> list[str]:
    with app.test_request_context():
        key = view.model.__mapper__.primary_key[0].key
        ids = [getattr(row, key) for row in session.query(view.model).order_by(key).limit(5)]
        return [url_for(f"{view.endpoint}.index_view")] + [url_for(f"{view.endpoint}.details_view", id=i) for i in ids]


def test_every_model_page_as_each_staff_role_reads_as_text_and_keeps_to_the_policy(app, session, make_account,
                                                                                   world):
    views = model_views(app)
    assert {view.endpoint for view in views} >= {
        "providers", "submissions", "criteria", "findings", "check_runs", "accounts", "licences", "decisions",
        "exclusion_records"}
    people = {role: make_account(role) for role in (Role.ADMIN, Role.RESEARCHER, Role.AUDITOR)}
    clients = {}
    for role, person in people.items():
        clients[role] = app.test_client()
        login(clients[role], person)
    problems: list[str] = []
    visited = 0
    for view in views:
        roles = [role for role in people if role in view.allowed_roles]
        assert roles, f"{view.endpoint} admits none of the staff roles"
        urls = pages(app, session, view)
        assert len(urls) > 1, f"{view.endpoint} has no row to show"
        for role in roles:
            for url in urls:
                response = clients[role].get(url)
                if response.status_code != 200:
                    problems.append(f"{url} as {role.value}: answered {response.status_code}")
                    continue
                html = response.get_data(as_text=True)
                problems += [f"{url} as {role.value}: {p}" for p in
                             policy_breaches(html) + raw_values(html) + readability_problems(html)]
                visited += 1
    assert not problems, "\n".join(problems)
    assert visited >= 2 * len(views)


def details(client, url: str) -> dict[str, list[str]]:
    """A details page as {heading: the lines of text under it}."""
    page = client.get(url)
    assert page.status_code == 200, url
    rows = re.findall(r"<tr>\s*<td>\s*<b>(.*?)</b>\s*</td>\s*<td>(.*?)</td>\s*</tr>", page.get_data(as_text=True), re.S)
    return {visible_text(k).strip(): visible_text(v).splitlines() for k, v in rows}


def test_a_providers_licences_principals_and_locations_read_as_labelled_text(client, make_account, world):
    login(client, make_account(Role.RESEARCHER))
    shown = details(client, f"/admin/providers/details/?id={world['provider'].id}")
    assert shown["Licences"] == ["CA licence 12345 (Residential treatment), expires 1 Dec 2027",
                                 "IL licence IL-77 (Outpatient substance use), no expiry recorded, issued by IDHS, "
                                 "covering Intensive outpatient (IOP)"]
    assert shown["Principals"] == ["Jane Roe (Medical director)", "John Doe (Clinical director), NPI 1245319599"]
    assert shown["Locations"] == ["123 Main St, Springfield, IL 62701",
                                  "9 Elm Road, Unit 2, Chatham, IL 62629 (Sangamon County), phone +1 217-555-0100"]
    assert shown["Accreditations"] == ["CARF accreditation CARF-55, expires 1 Dec 2027"]
    assert shown["Levels of care"] == ["Residential", "Intensive outpatient (IOP)"]
    assert shown["Services"] == ["Substance use treatment"]
    assert shown["Populations served"] == ["Young adults"]
    assert shown["Payment accepted"] == ["Cash or self-payment"]
    assert shown["Listing status"] == ["listed"]


def test_a_requests_proposal_reads_as_the_same_labelled_text(client, make_account, world):
    login(client, make_account(Role.AUDITOR))
    shown = details(client, f"/admin/submissions/details/?id={world['submission'].id}")
    proposal = shown["Proposed"]
    for heading, line in (("Locations", "123 Main St, Springfield, IL 62701"),
                          ("Licences", "CA licence 12345 (Residential treatment), expires 1 Dec 2027, issued by "
                                       "DHCS, covering Residential"),
                          ("Principals", "Jane Roe (Medical director)")):
        assert proposal[proposal.index(heading) + 1] == line, proposal
    assert proposal[proposal.index("Services") + 1:proposal.index("Services") + 3] == [
        "Substance use treatment", "Naloxone distribution"]
    assert shown["Kind"] == ["update"] and shown["State"] == ["in review"]


def test_the_other_model_pages_name_codes_and_people_in_words(client, app, session, make_account, world):
    login(client, make_account(Role.RESEARCHER))
    researcher = world["researcher"]
    licences = visible_text(client.get("/admin/licences/").get_data(as_text=True))
    assert "2 licences" in licences and "Springfield Recovery" in licences and "Residential treatment" in licences
    decision_id = session.query(Decision.id).scalar()
    shown = details(client, f"/admin/decisions/details/?id={decision_id}")
    assert shown["Outcome"] == ["rejected"] and shown["Status"] == ["awaiting signoff"]
    assert shown["Decided by"] == [f"{researcher.name} <{researcher.email}>"]
    assert shown["Request"] == [f"request #{world['submission'].id}"]
    assert shown["Reasons"] == ["licence missing"]
    run_id = session.query(CheckRun.id).scalar()
    shown = details(client, f"/admin/check_runs/details/?id={run_id}")
    assert shown["Check"] == ["licence expiry"] and shown["Outcome"] == ["warn"]
    assert "Idempotency key" not in shown
    assert shown["Evidence"][:4] == ["Licence ids", "1", "2", "Levels of care"]
    record_id = session.query(ExclusionRecord.id).scalar()
    shown = details(client, f"/admin/exclusion_records/details/?id={record_id}")
    assert shown["Kind"] == ["exclusion"] and shown["Excluded on"] == ["1 May 2020"]
    assert shown["Exclusion list"] == ["OIG LEIE (federal)"] and shown["Source"] == ["UPDATED.csv"]
    assert shown["Row as imported"] == ["Lastname", "ROE", "Firstname", "JANET"]
    search = client.get("/admin/exclusion_records/").get_data(as_text=True)
    assert 'placeholder="Business name, Last name, NPI"' in search


def test_a_view_that_opts_in_to_delete_and_bulk_actions_keeps_the_policy_the_token_and_the_question(
        make_app, make_account):
    """No view deletes today; one that opts in gets the same pages: the delete button and every bulk action are
    plain forms with their CSRF token, the question asked in a <details>, and no script in the markup."""
    from backoffice.extensions import db
    from tests.route_helpers import csrf_token_in
    from tests.test_csrf import sign_in_with_tokens

    app = make_app(WTF_CSRF_ENABLED=True)
    with app.app_context():
        session = db.session
        source = ExclusionSource(list_name="oig_leie", file_name="UPDATED.csv", sha256="2" * 64, row_count=2,
                                 imported_by="system:test")
        session.add(source)
        session.flush()
        records = [ExclusionRecord(source_id=source.id, list_name="oig_leie", kind=ExclusionRecordKind.EXCLUSION,
                                   row_key=str(n) * 64, business_name=f"Clinic {n}", name_key=f"CLINIC {n}", raw={})
                   for n in (3, 4)]
        session.add_all(records)
        session.commit()
        ids = [r.id for r in records]
        view = next(v for v in model_views(app) if v.endpoint == "exclusion_records")
        view.can_delete = True  # the row delete form and the delete endpoint
        marked: list[list[str]] = []
        # A bulk action that asks first, as a view declares one with @action(name, text, confirmation).
        view._actions = [("mark", "Mark as read")]
        view._actions_data = {"mark": (marked.append, "Mark as read", "Mark the ticked records as read?")}
        client = app.test_client()
        sign_in_with_tokens(client, make_account(Role.RESEARCHER))

        page = client.get("/admin/exclusion_records/").get_data(as_text=True)
        assert policy_breaches(page) == []
        assert len(re.findall(r'<input type="checkbox" name="rowid" form="action_form"', page)) == 2
        assert re.search(r'<form id="action_form" action="/admin/exclusion_records/action/" method="POST"', page)
        assert "Mark the ticked records as read?" in visible_text(page)
        assert re.search(r'<details class="mb-1">\s*<summary[^>]*>Mark as read</summary>\s*<p[^>]*>Mark the ticked '
                         r'records as read\?</p>\s*<button type="submit" form="action_form" name="action" value="mark"',
                         page)
        assert page.count('<details class="row-delete">') == 2
        ids_on_page = re.findall(r'\bid="([^"]+)"', page)
        assert len(ids_on_page) == len(set(ids_on_page)), sorted(i for i in ids_on_page if ids_on_page.count(i) > 1)

        # Without the token the action does not run; with it, it gets the ticked rows; with none ticked, a word.
        response = client.post("/admin/exclusion_records/action/", data={"action": "mark", "rowid": [ids[0]]})
        assert response.status_code == 400 and marked == []
        token = csrf_token_in(page)
        response = client.post("/admin/exclusion_records/action/",
                               data={"csrf_token": token, "action": "mark", "url": "/admin/exclusion_records/"})
        assert response.status_code == 302 and marked == []
        shown = visible_text(client.get("/admin/exclusion_records/").get_data(as_text=True))
        assert "Tick at least one row, then choose the action." in shown
        response = client.post("/admin/exclusion_records/action/",
                               data={"csrf_token": token, "action": "mark", "rowid": [ids[0], ids[1]]})
        assert response.status_code == 302 and marked == [[str(ids[0]), str(ids[1])]]
        response = client.post("/admin/exclusion_records/delete/", data={"id": ids[1]})
        assert response.status_code == 400 and session.query(ExclusionRecord).count() == 2
        response = client.post("/admin/exclusion_records/delete/", data={"csrf_token": token, "id": ids[1]})
        assert response.status_code == 302
        session.expire_all()
        assert [r.id for r in session.query(ExclusionRecord)] == [ids[0]]
