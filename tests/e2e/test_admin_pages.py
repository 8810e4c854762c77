"""Every staff list and details page, in Chromium, as each staff role: no console error, no script error and no
Content-Security-Policy violation, also once the page's own scripts have run (a list's filter added, a details
page's filter box typed in).

The pages are found, not listed: every link of the staff menu a role is shown (so a view added later is
visited without being named here), then from each of those pages the links to single rows (a details page, a
case, a finding), at most PER_KIND of each kind. Violations are caught twice: Chromium's own console report,
and a `securitypolicyviolation` listener the driver adds to every document before the page's scripts run
(the driver injects it, so the policy does not block it). The stack is seeded as `make run` seeds it, plus
one provider with licences, principals and an accreditation, whose details page must read as labelled text.
"""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

import pytest

pytestmark = pytest.mark.e2e

STACK_SETUP = "demo"
DEMO_PASSWORD = "demo-password-2026"
STAFF = {"researcher": "researcher@demo.example", "research lead": "lead@demo.example",
         "auditor": "auditor@demo.example", "admin": "admin@demo.example"}
PER_KIND = 2
# Not pages: signing out, files, exports, the API, static files.
SKIPPED = re.compile(r"^/(logout|static/|admin/static/|api/)|/documents/\d+|/export|\.(csv|jsonl|json|png|pdf)$")
# Query parameters that only sort, page or filter a list already visited.
ORDERING = {"sort", "desc", "page", "page_size", "before", "cursor", "url", "search"}

WATCH = """
window.__policyViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__policyViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || 'inline'}`
    + (event.sample ? ` (${event.sample})` : '') + ` at line ${event.lineNumber}`);
});
"""
MENU_LINKS = """() => Array.from(document.querySelectorAll('nav a[href], .navbar a[href]'))
  .map(a => a.getAttribute('href'))"""
ALL_LINKS = "() => Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"


@pytest.fixture(scope="module")
def listed_parts(stack):
    """One demo provider with two licences, two principals and an accreditation (the demo has none)."""
    provider_id = stack.scalar("select min(id) from provider")
    stack.execute("insert into licence (provider_id, state, number, licence_type, issuing_agency, levels_of_care, "
                  "expires_on) values (:p, 'CA', '12345', 'Residential treatment', null, '[]', '2027-12-01'), "
                  "(:p, 'VA', 'VA-88', 'Outpatient substance use', 'DBHDS', '[\"outpatient\"]', null)", p=provider_id)
    stack.execute("insert into principal (provider_id, name, role, npi) values (:p, 'Jane Roe', 'medical_director', "
                  "null), (:p, 'John Doe', 'owner', '1245319599')", p=provider_id)
    stack.execute("insert into accreditation (provider_id, body, accreditation_id, expires_on) values "
                  "(:p, 'CARF', 'CARF-55', '2027-06-19')", p=provider_id)
    return provider_id


def sign_in(person, stack, email: str) -> None:
    page = person.page
    page.goto("/login")
    page.fill("[name=email]", email)
    page.fill("[name=password]", DEMO_PASSWORD)
    page.click("form [type=submit]")
    page.wait_for_load_state()
    if "/login/code" in page.url:
        page.fill("[name=code]", stack.flask("demo-code", email).strip())
        page.click("form [type=submit]")
        page.wait_for_load_state()
    assert "/login" not in page.url, f"{email} could not sign in"


def local(stack, href: str | None) -> str | None:
    """A same-site staff page worth reading, as path and query, or None."""
    if not href or href.startswith(("#", "mailto:", "tel:", "javascript:")):
        return None
    parts = urlsplit(href)
    if (parts.scheme and f"{parts.scheme}://{parts.netloc}" != stack.base_url) or SKIPPED.search(parts.path):
        return None
    if not parts.path.startswith("/admin"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def kind_of(target: str) -> str:
    parts = urlsplit(target)
    keys = sorted({key for key, _ in parse_qsl(parts.query)} - ORDERING - {"id"})
    return re.sub(r"\d+", "N", parts.path) + ("?" + "&".join(keys) if keys else "")


def is_single_row(target: str) -> bool:
    """A page about one row: a number in its path or an `id=` in its query."""
    parts = urlsplit(target)
    return bool(re.search(r"/\d+(/|$)", parts.path)) or "id" in dict(parse_qsl(parts.query))


class Visit:
    def __init__(self, person):
        self.person = person
        self.page = person.page
        self.page.add_init_script(WATCH)
        self.problems: list[str] = []
        self.visited: list[str] = []

    def collect(self, where: str) -> None:
        violations = self.page.evaluate("() => window.__policyViolations || []")
        self.problems += [f"{where}: Content-Security-Policy violation: {v}" for v in violations]
        self.page.evaluate("() => { window.__policyViolations = []; }")
        self.problems += [f"{where}: {p}" for p in self.person.problems]
        self.person.problems.clear()

    def read(self, target: str) -> list[str]:
        response = self.page.goto(target)
        self.page.wait_for_load_state("networkidle")
        self.visited.append(target)
        status = response.status if response is not None else 0
        if status != 200:
            self.problems.append(f"{target}: answered {status}")
        self.exercise(target)
        self.collect(target)
        return self.page.evaluate(ALL_LINKS)

    def exercise(self, target: str) -> None:
        """Let the page's own scripts run where a person would set them off."""
        page = self.page
        toggle = page.locator(".field-filters").locator("xpath=preceding-sibling::a[1]")
        if toggle.count():
            toggle.first.click()
            page.locator(".field-filters a.filter").first.click()
            page.wait_for_timeout(200)
            if page.locator("#filter_form .filters tr").count() == 0:
                self.problems.append(f"{target}: adding a filter added no filter row")
        box = page.locator("#fa_filter")
        if box.count():
            box.fill("a")
            page.wait_for_timeout(100)
            box.fill("")


def test_the_watch_sees_a_violation(stack, people):
    """The listener reports what the policy refuses: without this the walk below could pass on a blind watch."""
    person = people("csp-probe")
    visit = Visit(person)
    person.page.goto("/login")
    person.page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
        '<img src="/static/favicon.svg" onload="window.__ran = 1">')""")
    person.page.wait_for_timeout(300)
    visit.collect("/login")
    assert any("script-src" in p for p in visit.problems), visit.problems
    assert person.page.evaluate("() => window.__ran") is None


@pytest.mark.parametrize("role", list(STAFF))
def test_no_staff_list_or_details_page_breaks_the_policy(stack, people, listed_parts, role):
    person = people(f"admin-pages-{role}")
    visit = Visit(person)
    sign_in(person, stack, STAFF[role])
    menu = sorted({t for t in map(lambda h: local(stack, h), person.page.evaluate(MENU_LINKS)) if t})
    assert len(menu) >= 3, f"{role} is shown only {menu}"
    kinds: dict[str, int] = {}
    rows: list[str] = []
    for target in menu:
        for href in visit.read(target):
            found = local(stack, href)
            if found and is_single_row(found) and found not in rows and found not in menu:
                kind = kind_of(found)
                if kinds.get(kind, 0) < PER_KIND:
                    kinds[kind] = kinds.get(kind, 0) + 1
                    rows.append(found)
    for target in rows:
        visit.read(target)
    model_lists = [t for t in menu if re.fullmatch(r"/admin/[a-z_]+/", urlsplit(t).path)]
    print(f"\n{role}: {len(visit.visited)} staff pages visited ({len(menu)} from the menu, {len(rows)} single rows "
          f"of {len(kinds)} kinds)")
    assert rows, f"{role} reached no single row from {menu}"
    assert not visit.problems, f"{len(visit.problems)} problems on {len(visit.visited)} pages seen as {role}:\n" + \
        "\n".join(visit.problems)
    assert model_lists, menu

    if role == "researcher":
        person.page.goto(f"/admin/providers/details/?id={listed_parts}")
        shown = {
            row.locator("td").nth(0).inner_text().strip(): row.locator("td").nth(1).inner_text().strip()
            for row in person.page.locator("table.searchable tr").all()}
        assert shown["Licences"].splitlines() == [
            "CA licence 12345 (Residential treatment), expires 1 Dec 2027",
            "VA licence VA-88 (Outpatient substance use), no expiry recorded, issued by DBHDS, covering Outpatient"]
        assert shown["Principals"].splitlines() == ["Jane Roe (Medical director)", "John Doe (Owner), NPI 1245319599"]
        assert shown["Accreditations"] == "CARF accreditation CARF-55, expires 19 Jun 2027"
        assert re.fullmatch(r"[^\[\]{}]+, [A-Z]{2} \d{5}", shown["Locations"].splitlines()[0]), shown["Locations"]
        visit.collect("provider details")
        assert not visit.problems, visit.problems
        person.shot("admin-pages-provider-details")
