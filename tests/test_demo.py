"""`flask seed-demo` and the dashboard a new user sees."""
import re

from sqlalchemy import func, select

from backoffice.demo import DEMO_ACCOUNTS
from backoffice.models import (
    OPEN_STATES,
    Account,
    AdvertisingStatus,
    CriteriaCatalogue,
    Provider,
    Role,
    Submission,
    SubmissionState,
    VerificationStatus,
)
from backoffice.services import audit
from tests.page_text import visible_text


def seed(app):
    return app.test_cli_runner().invoke(args=["seed-demo", "--if-empty"])


def sign_in(client, app, email):
    """The demo as a new user tries it: the published password, then the code `flask demo-code` prints."""
    response = client.post("/login", data={"email": email, "password": app.config["DEMO_PASSWORD"]})
    if response.headers.get("Location") == "/login/code":
        code = app.test_cli_runner().invoke(args=["demo-code", email])
        assert code.exit_code == 0, code.output
        response = client.post("/login/code", data={"code": code.output.strip()})
        assert response.status_code == 302, response.get_data(as_text=True)
    return response


def test_demo_codes_are_only_for_demo_accounts(app, make_account):
    seed(app)
    staff = make_account(Role.RESEARCHER)
    refused = app.test_cli_runner().invoke(args=["demo-code", staff.email])
    assert refused.exit_code != 0 and "Only the demo accounts" in refused.output
    code = app.test_cli_runner().invoke(args=["demo-code", "auditor@demo.example"])
    assert code.exit_code == 0 and re.fullmatch(r"\d{6}\n", code.output)


def test_seed_demo_fills_an_empty_database_once(app, session):
    first = seed(app)
    assert first.exit_code == 0, first.output
    for account in DEMO_ACCOUNTS:
        assert account.email in first.output
    providers = session.scalar(select(func.count()).select_from(Provider))
    assert providers > 1800
    states = set(session.scalars(select(Submission.state)))
    assert {SubmissionState.DRAFT, SubmissionState.SUBMITTED, SubmissionState.IN_REVIEW,
            SubmissionState.NEEDS_INFO, SubmissionState.APPROVED, SubmissionState.REJECTED} <= states
    advertisers = session.scalars(select(Provider).where(Provider.advertising_status == AdvertisingStatus.ACTIVE)).all()
    assert len(advertisers) == 4
    assert all(p.verification_status == VerificationStatus.VERIFIED for p in advertisers)
    open_requests = session.scalars(select(Submission).where(Submission.state.in_(OPEN_STATES))).all()
    assert all(s.decision_due is not None for s in open_requests)
    catalogue = session.scalar(select(CriteriaCatalogue))
    assert catalogue.version == 1 and len(catalogue.criteria) == 13
    assert audit.verify_chain(session).ok

    second = seed(app)
    assert second.exit_code == 0 and "skipped" in second.output
    assert session.scalar(select(func.count()).select_from(Provider)) == providers


def test_every_verified_demo_listing_has_a_receipt_with_its_decision_and_criteria(app, client, session):
    seed(app)
    listed, url = [], "/api/v1/listings?limit=100"
    while url:
        page = client.get(url).get_json()
        listed += [item["id"] for item in page["listings"]]
        url = page.get("next")
    for provider_id in listed:
        receipt = client.get(f"/api/v1/listings/{provider_id}/verification").get_json()
        assert receipt["criteria"], provider_id
        assert {c["code"] for c in receipt["criteria"]} >= {"LEGAL_ENTITY", "NOT_EXCLUDED", "CONTACT_CONFIRMED"}
        assert receipt["verification"]["decided_at"], provider_id
        assert receipt["verification"]["decided_by"] == "Riley Researcher", provider_id
        provider = session.get(Provider, provider_id)
        assert receipt["verification"]["verified_until"] == audit.jsonable(provider.verified_until)
    assert len(listed) == 25  # the 24 the research team verified, and the provider of the approved request


def test_demo_researcher_sees_a_dashboard_with_real_figures(app, client, session):
    seed(app)
    sign_in(client, app, "researcher@demo.example")
    page = client.get("/admin/").get_data(as_text=True)
    table = re.search(r'id="submissions-by-state">(.*?)</table>', page, re.S).group(1)
    counts = dict(re.findall(r"<td>([a-z ]+)</td>\s*<td[^>]*><a[^>]*>(\d+)</a>", table))
    expected = dict(session.execute(select(Submission.state, func.count()).group_by(Submission.state)).all())
    assert int(counts["submitted"]) == expected[SubmissionState.SUBMITTED] > 0
    assert int(counts["needs info"]) == expected[SubmissionState.NEEDS_INFO]
    due = int(re.search(r'id="due-for-recheck"><a href="[^"]+">(\d+)<', page).group(1))
    assert due > 0
    assert "findings-by-severity" in page


def test_demo_provider_sees_its_organisations_and_request_timeline(app, client):
    seed(app)
    sign_in(client, app, "provider@demo.example")
    page = client.get("/portal/").get_data(as_text=True)
    assert page.count('class="card mb-4"') == 9
    assert "needs info" in page and "withdrawn" in page


def test_demo_admin_sees_accounts_not_providers(app, client):
    seed(app)
    sign_in(client, app, "admin@demo.example")
    page = client.get("/admin/").get_data(as_text=True)
    assert "accounts-by-role" in page and "submissions-by-state" not in page
    assert client.get("/admin/providers/").status_code == 403


def test_seed_demo_refuses_production(make_app):
    app = make_app(ENV_NAME="production")
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["seed-demo", "--if-empty"])
    assert result.exit_code == 1 and "never seeded in production" in result.output


def test_the_demo_has_two_admins_so_a_role_one_asks_for_the_other_approves(app, session):
    result = seed(app)
    admins = [a.email for a in DEMO_ACCOUNTS if a.role == Role.ADMIN]
    assert admins == ["admin@demo.example", "admin2@demo.example"]
    assert all(email in result.output for email in admins)
    first, second = app.test_client(), app.test_client()
    sign_in(first, app, "admin@demo.example")
    added = first.post("/admin/staff/new", data={"name": "Nia New", "email": "nia@demo.example",
                                                 "roles": ["researcher"], "reason": "joins the research team"})
    assert added.status_code == 302, added.get_data(as_text=True)
    sign_in(second, app, "admin2@demo.example")
    page = second.get("/admin/staff/").get_data(as_text=True)
    approve = re.search(r'action="(/admin/staff/grants/\d+/approve)"', page).group(1)
    version = re.search(r'name="row_version" value="(\d+)"', page).group(1)
    approved = second.post(approve, data={"row_version": version}, follow_redirects=True)
    assert "Approved: nia@demo.example now has the researcher role." in approved.get_data(as_text=True)
    assert session.scalar(select(Account).where(Account.email == "nia@demo.example")).role_set == {Role.RESEARCHER}


def _headings(page: str) -> list[str]:
    return [visible_text(h).strip() for h in re.findall(r"<h[1-6][^>]*>(.*?)</h[1-6]>", page, re.S)]


def test_each_staff_page_names_itself_once_and_the_navbar_names_roles_in_words(app, session):
    seed(app)
    admin, lead = app.test_client(), app.test_client()
    sign_in(admin, app, "admin@demo.example")
    assert _headings(admin.get("/admin/staff/").get_data(as_text=True)).count("Staff and roles") == 1
    sign_in(lead, app, "lead@demo.example")
    for url, heading in (("/admin/finding-work/", "Open findings"), ("/admin/review/", "Review queue")):
        page = lead.get(url).get_data(as_text=True)
        assert _headings(page).count(heading) == 1, (url, _headings(page))
    navbar = visible_text(re.search(r'<nav.*?</nav>', lead.get("/admin/").get_data(as_text=True), re.S).group(0))
    assert "lead@demo.example (research lead)" in navbar and "research_lead" not in navbar
