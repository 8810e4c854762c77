"""Every page meets WCAG 2.1 AA: axe-core (rules wcag2a, wcag2aa, wcag21a, wcag21aa) in Chromium, plus what
axe cannot judge (tests/e2e/a11y.py): unique ids, a non-empty accessible name on every form control (read from
Chromium's accessibility tree), one <main> and one <h1>, a language on <html>, a skip link that moves the focus
to <main>, nothing scrolling sideways at 320 px, a title of its own on each kind of page, and, after a refused
form, the focus on an error summary that links to each field in error.

The stack is seeded as `make run` seeds a fresh machine (as the crawl, tests/e2e/test_crawl.py, which shows
how pages are visited). Each role (anonymous, provider, researcher, lead, auditor, admin) signs in through the
pages and walks the links it is shown, one or two pages of each kind; every problem on every page is collected
and the test fails listing them all (page | rule | selector | what). The figures per role (pages, problems)
land in artifacts/e2e/<backend>/accessibility.json.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict, deque
from urllib.parse import urlsplit

import pytest

from tests.e2e import a11y
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.test_crawl import ROLES, kind_of, local_target, sign_in

pytestmark = pytest.mark.e2e

STACK_SETUP = "demo"
WIDE = {"width": 1280, "height": 900}
PER_KIND = 1
KIND_LIMITS = {"/portal/organisations/N": 4, "/portal/requests/N": 4}
MAX_PAGES = 60
MAX_DEPTH = 3
ANONYMOUS_PAGES = ["/login", "/register", "/reset", "/confirm", "/criteria", "/no-such-page"]

RESULTS: dict[str, dict] = {}


class Audit:
    """The pages one role saw and every problem found on them, enforced or reported only."""

    def __init__(self, role: str):
        self.role = role
        self.pages: list[str] = []
        self.problems: list[a11y.Problem] = []
        self.titles: dict[str, set[str]] = defaultdict(set)

    def judge(self, person, target: str) -> None:
        page = person.page
        self.pages.append(target)
        found, title = a11y.check_page(page, target, WIDE)
        found += [a11y.Problem(target, "page-health", "", problem) for problem in person.problems]
        person.problems.clear()
        self.problems += found
        # A list filtered or sorted is the same page; another path is another page and needs its own title.
        self.titles[title].add(kind_of(urlsplit(page.url).path))

    def same_titles(self) -> list[a11y.Problem]:
        return [a11y.Problem(", ".join(sorted(kinds)), "unique-title", "title", f"kinds of page share the title "
                             f"{title!r}") for title, kinds in self.titles.items() if len(kinds) > 1]

    def record(self) -> None:
        RESULTS[self.role] = {
            "pages": len(self.pages), "problems": len(self.problems),
            "pages with problems": len({p.page for p in self.problems}),
            "by rule": Counter(p.rule for p in self.problems),
            "visited": self.pages, "list": [str(p) for p in self.problems],
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "accessibility.json").write_text(json.dumps(RESULTS, indent=2))

    def verdict(self) -> None:
        self.problems += self.same_titles()
        self.record()
        assert not self.problems, (f"{len(self.problems)} accessibility problems on "
                                   f"{len({p.page for p in self.problems})} of {len(self.pages)} pages seen as "
                                   f"{self.role} (page | rule | selector | what):\n"
                                   + "\n".join(map(str, self.problems)))


def walk(person, stack, audit: Audit, start: list[str]) -> None:
    """Breadth first over the links shown, at most PER_KIND pages of a kind."""
    queue: deque[tuple[str, int]] = deque((path, 0) for path in start)
    seen: set[str] = set()
    kinds: Counter = Counter()
    while queue and len(audit.pages) < MAX_PAGES:
        target, depth = queue.popleft()
        kind = kind_of(target)
        if target in seen or kinds[kind] >= KIND_LIMITS.get(kind, PER_KIND):
            continue
        seen.add(target)
        kinds[kind] += 1
        response = person.page.goto(target)
        person.page.wait_for_load_state()
        if response is None or not response.headers.get("content-type", "").startswith("text/html"):
            continue
        links = person.page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        audit.judge(person, target)
        if depth < MAX_DEPTH:
            for href in links:
                found = local_target(stack.base_url, href)
                if found and found not in seen:
                    queue.append((found, depth + 1))


def refused(person, audit: Audit, where: str) -> None:
    """The page after a refused form: every check, and the focus on its error summary."""
    audit.problems += a11y.focus_on_error_summary(person.page, where)
    audit.judge(person, where)


@pytest.fixture(scope="module")
def demo(stack):
    stack.wait_for(lambda: (stack.scalar("select count(*) from check_run where \"check\" = 'website'") or 0) > 0,
                   "the start-up re-checks to record runs", 120)
    return stack


def test_anonymous_pages(demo, people):
    person = people("a11y-anonymous")
    audit = Audit("anonymous")
    walk(person, demo, audit, ANONYMOUS_PAGES)
    page = person.page
    # A wrong password: the summary has the focus and names the field in error.
    person.goto("/login")
    page.fill("[name=email]", ROLES["provider"])
    page.fill("[name=password]", "not the password")
    page.click("main form [type=submit]")
    page.wait_for_load_state()
    refused(person, audit, "/login (wrong password)")
    # An empty registration: four fields in error, each linked from the summary.
    person.goto("/register")
    page.click("main form [type=submit]")
    page.wait_for_load_state()
    refused(person, audit, "/register (empty)")
    audit.verdict()


@pytest.mark.parametrize("role", list(ROLES))
def test_signed_in_pages(demo, people, role):
    person = people(f"a11y-{role}")
    sign_in(person, demo, role)
    audit = Audit(role)
    walk(person, demo, audit, [urlsplit(person.page.url).path])
    if role == "provider":
        page = person.page
        person.goto("/portal/organisations/new")
        page.click("main form [type=submit]")
        page.wait_for_load_state()
        refused(person, audit, "/portal/organisations/new (empty)")
        # A new organisation's draft request: the longest form, then refused for a wrong NPI and website.
        page.fill("[name=legal_name]", "Reflow Test Clinic LLC")
        page.fill("[name=public_name]", "Reflow Test Clinic")
        page.click("main form [type=submit]")
        page.wait_for_load_state()
        draft = urlsplit(page.url).path
        assert re.fullmatch(r"/portal/requests/\d+/edit", draft), page.url
        audit.judge(person, draft)
        page.fill("[name=npi]", "12345")
        page.fill("[name=website]", "javascript:alert(1)")
        page.click("main form [name=submit_request]")
        page.wait_for_load_state()
        refused(person, audit, f"{draft} (a wrong NPI and website)")
    audit.verdict()


SHOTS = {"anonymous": ["/login"], "provider": ["/portal/"], "researcher": ["/admin/review/"],
         "auditor": ["/admin/audit/"]}


def test_screenshots_wide_and_narrow(demo, people):
    """The sign-in page, the portal's home, the review queue and the audit log at 1280 px and at 320 px, kept in
    artifacts/e2e/<backend>/accessibility/; at 320 px none scrolls sideways."""
    folder = ARTIFACTS / "accessibility"
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    for role, paths in SHOTS.items():
        person = people(f"a11y-shots-{role}")
        if role != "anonymous":
            sign_in(person, demo, role)
        for path in paths:
            name = re.sub(r"[^a-z0-9]+", "-", path).strip("-") or "home"
            for label, size in (("wide", WIDE), ("320px", a11y.NARROW)):
                person.page.set_viewport_size(size)
                person.goto(path)
                person.page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
            person.page.set_viewport_size(WIDE)
            problems += a11y.reflow(person.page, path, WIDE)
    assert not problems, "\n".join(map(str, problems))


class Keyboard:
    """A person with a keyboard only: Tab (and Shift+Tab) to move, typing, Space, arrows and Enter; each step kept
    in words for the record."""

    def __init__(self, person):
        self.person = person
        self.page = person.page
        self.steps: list[str] = []

    def focused(self) -> str:
        return self.page.evaluate("""() => { const el = document.activeElement;
            const label = el.labels && el.labels[0] ? el.labels[0].textContent.trim()
                        : (el.getAttribute('aria-label') || el.value || el.textContent || '').trim();
            return `${el.tagName.toLowerCase()}${el.name ? '[name=' + el.name + ']' : ''} "${label.slice(0, 60)}"`; }""")

    def tab_to(self, selector: str, what: str, limit: int = 400) -> None:
        for presses in range(1, limit + 1):
            self.page.keyboard.press("Tab")
            if self.page.evaluate("(s) => document.activeElement.matches(s)", selector):
                self.steps.append(f"Tab x{presses} to {what}: focus on {self.focused()}")
                return
        raise AssertionError(f"{limit} Tab presses did not reach {what} ({selector}) on {self.page.url}")

    def type(self, text: str) -> None:
        self.page.keyboard.type(text)
        self.steps.append(f"  type {text!r}")

    def press(self, key: str, why: str) -> None:
        self.page.keyboard.press(key)
        self.steps.append(f"  {key}: {why}")

    def choose(self, value: str) -> None:
        """A select: arrow down through its options until the one wanted."""
        for presses in range(1, 80):
            self.page.keyboard.press("ArrowDown")
            if self.page.evaluate("() => document.activeElement.value") == value:
                self.steps.append(f"  ArrowDown x{presses} to the option {value!r}")
                return
        raise AssertionError(f"no option {value!r} in {self.focused()}")

    def follow(self, key: str, why: str) -> None:
        with self.page.expect_navigation():
            self.page.keyboard.press(key)
        self.page.wait_for_load_state()
        self.person.check()
        self.steps.append(f"  {key}: {why}; now on {urlsplit(self.page.url).path} ({self.page.title()!r})")


def test_keyboard_only_submission(demo, people):
    """The provider's listing request from the portal by keyboard only: the skip link, a new organisation, every
    field of the request, the attestation, Submit; a refused step shows the summary with the focus on it."""
    from datetime import date, timedelta

    person = people("a11y-keyboard-provider")
    sign_in(person, demo, "provider")
    keys = Keyboard(person)
    page = person.page
    person.goto("/portal/")
    keys.steps.append("open /portal/ (signed in as the provider)")
    keys.tab_to("a.skip-link", "the skip link (first Tab stop)")
    keys.press("Enter", "follow it")
    assert page.evaluate("() => document.activeElement.id") == "main"
    keys.steps.append("  the focus is on <main id=main>")
    keys.tab_to('a[href$="/portal/organisations/new"]', "Add an organisation")
    keys.follow("Enter", "open it")
    # Refused first: nothing typed, Enter on the button.
    keys.tab_to("main form [type=submit]", "the Create button")
    keys.follow("Enter", "send the empty form")
    assert page.evaluate("() => document.activeElement.closest('.error-summary') !== null"), keys.focused()
    keys.steps.append(f"  refused: the focus is on the error summary ({page.inner_text('.error-summary')!r})")
    keys.tab_to('.error-summary a[href="#legal_name"]', "the summary's link to the legal name")
    keys.press("Enter", "follow it")
    assert page.evaluate("() => document.activeElement.id") == "legal_name", keys.focused()
    keys.steps.append("  the focus is on the legal name field")
    keys.type("Keyboard Recovery Center LLC")
    keys.tab_to("#public_name", "the public name")
    keys.type("Keyboard Recovery Center")
    keys.tab_to("main form [type=submit]", "the Create button")
    keys.follow("Enter", "create the organisation")
    assert re.fullmatch(r"/portal/requests/\d+/edit", urlsplit(page.url).path), page.url

    expires = date.today() + timedelta(days=365)
    typed = {"npi": "1234567893", "website": demo.site.url, "phone": "(434) 296-1234",
             "email": "admissions@keyboard.example"}
    for name, value in typed.items():
        keys.tab_to(f'[name="{name}"]', name)
        keys.type(value)
    for name, values in (("levels_of_care", ["outpatient"]), ("services", ["substance_use_treatment"]),
                         ("populations", ["adults"]), ("payment_accepted", ["medicaid"])):
        for value in values:
            keys.tab_to(f'input[name="{name}"][value="{value}"]', f"{name}: {value}")
            keys.press("Space", "tick it")
    for name, value in (("locations-0-street1", "1 Main Street"), ("locations-0-city", "Charlottesville")):
        keys.tab_to(f'[name="{name}"]', name)
        keys.type(value)
    keys.tab_to('[name="locations-0-state"]', "the location's state")
    keys.choose("VA")
    keys.tab_to('[name="locations-0-zip"]', "the ZIP code")
    keys.type("22902")
    keys.tab_to('[name="licences-0-state"]', "the licence's state")
    keys.choose("VA")
    for name, value in (("licences-0-number", "L-123"), ("licences-0-licence_type", "Outpatient SUD")):
        keys.tab_to(f'[name="{name}"]', name)
        keys.type(value)
    keys.tab_to('input[name="licences-0-levels_of_care"][value="outpatient"]', "the licence covers outpatient")
    keys.press("Space", "tick it")
    keys.tab_to('[name="licences-0-expires_on"]', "the licence's expiry date")
    keys.type(expires.strftime("%m%d%Y"))
    keys.tab_to('[name="principals-0-name"]', "the principal's name")
    keys.type("Dr. Ada Keys")
    keys.tab_to('[name="principals-0-role"]', "the principal's role")
    keys.choose("medical_director")
    for name in ("no_referral_fees", "no_lead_generation", "no_patient_brokering"):
        keys.tab_to(f'[name="{name}"]', f"the attestation {name}")
        keys.press("Space", "tick it")
    keys.tab_to('[name="signed_by"]', "signed by")
    keys.type("Ada Keys")
    keys.tab_to('[name="submit_request"]', "Submit the request")
    keys.follow("Enter", "submit")
    (ARTIFACTS / "accessibility").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "accessibility" / "keyboard-submission.txt").write_text("\n".join(keys.steps) + "\n")
    assert re.fullmatch(r"/portal/requests/\d+", urlsplit(page.url).path), (page.url, page.inner_text("main")[:800])
    assert page.inner_text("#submission-state").strip().lower() == "submitted"


def test_keyboard_only_decision(demo, people):
    """The researcher's decision by keyboard only: from the queue to a submitted request, claim it, assess every
    criterion in the one assessment form, approve; every step reached with Tab and chosen with the keys."""
    from sqlalchemy import text

    with demo.engine.connect() as conn:
        waiting = conn.scalar(text("SELECT id FROM submission WHERE state = 'submitted' AND kind = 'new_listing' "
                                   "ORDER BY id LIMIT 1"))
    assert waiting is not None, "the demo data has no submitted listing request"
    person = people("a11y-keyboard-researcher")
    sign_in(person, demo, "researcher")
    keys = Keyboard(person)
    page = person.page
    person.goto("/admin/review/")
    keys.steps.append("open the review queue (signed in as a researcher)")
    keys.tab_to("a.skip-link", "the skip link (first Tab stop)")
    keys.press("Enter", "follow it")
    assert page.evaluate("() => document.activeElement.id") == "main"
    keys.tab_to(f'a[href$="/admin/review/case/{waiting}"]', f"request #{waiting} in the queue")
    keys.follow("Enter", "open the case")
    keys.tab_to("#claim-form [type=submit]", "Claim this request")
    keys.follow("Enter", "claim it")
    codes = page.eval_on_selector_all('#assess-form select[name$="-status"]',
                                      "els => els.map(el => el.name.slice(7, -7))")
    assert codes, page.inner_text("main")[:800]
    for code in codes:
        keys.tab_to(f'[name="assess-{code}-status"]', f"the assessment of {code}")
        keys.choose("met")
        keys.tab_to(f'[name="assess-{code}-note"]', f"the note on {code}")
        keys.type(f"{code.replace('_', ' ').lower()} checked against the primary source")
    keys.tab_to("#assess-form [type=submit]", "Save assessments")
    keys.follow("Enter", f"save the {len(codes)} assessments in one post")
    assert "Every required criterion is met" in page.inner_text("main"), page.inner_text("main")[:1500]
    keys.tab_to('#decide-form input[name="outcome"]', "the decision's first choice (Approve)")
    keys.press("Space", "choose Approve")
    keys.tab_to("#decide-form [type=submit]", "Record decision")
    keys.follow("Enter", "record it")
    (ARTIFACTS / "accessibility").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "accessibility" / "keyboard-decision.txt").write_text("\n".join(keys.steps) + "\n")
    assert "approved" in page.inner_text("#final-decision").lower(), page.inner_text("main")[:1500]
