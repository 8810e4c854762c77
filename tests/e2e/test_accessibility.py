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

# Pages whose templates are being reworked elsewhere (the case page's unique ids and labels, the catalogue
# editor's move, the advertising application, Flask-Admin's model list and detail pages): their problems are
# printed on every run but do not fail it yet. Remove an entry once its page is reworked.
NOT_YET_ENFORCED = {
    "review case page": re.compile(r"^/admin/review/case/N$"),
    "criteria catalogue": re.compile(r"^/admin/catalogue/$"),
    "portal advertising application": re.compile(r"^/portal/organisations/N/advertise$"),
    "Flask-Admin model list and detail": re.compile(
        r"^/admin/(accounts|check_runs|criteria|findings|providers|submissions)/(details/)?(\?.*)?$"),
}

RESULTS: dict[str, dict] = {}


def pending_owner(kind: str) -> str | None:
    return next((name for name, pattern in NOT_YET_ENFORCED.items() if pattern.search(kind)), None)


class Audit:
    """The pages one role saw and every problem found on them, enforced or reported only."""

    def __init__(self, role: str):
        self.role = role
        self.pages: list[str] = []
        self.problems: list[a11y.Problem] = []
        self.pending: list[a11y.Problem] = []
        self.titles: dict[str, set[str]] = defaultdict(set)

    def judge(self, person, target: str) -> None:
        page = person.page
        self.pages.append(target)
        found, title = a11y.check_page(page, target, WIDE)
        found += [a11y.Problem(target, "page-health", "", problem) for problem in person.problems]
        person.problems.clear()
        owner = pending_owner(kind_of(target.split(" (")[0]))
        if owner:
            self.pending += found
        else:
            self.problems += found
            shown = urlsplit(page.url)
            self.titles[title].add(kind_of(shown.path + (f"?{shown.query}" if shown.query else "")))

    def same_titles(self) -> list[a11y.Problem]:
        return [a11y.Problem(", ".join(sorted(kinds)), "unique-title", "title", f"kinds of page share the title "
                             f"{title!r}") for title, kinds in self.titles.items() if len(kinds) > 1]

    def record(self) -> None:
        RESULTS[self.role] = {
            "pages": len(self.pages), "problems": len(self.problems), "pending problems": len(self.pending),
            "pages with problems": len({p.page for p in self.problems}),
            "by rule": Counter(p.rule for p in self.problems),
            "visited": self.pages, "list": [str(p) for p in self.problems],
            "pending": [str(p) for p in self.pending],
        }
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "accessibility.json").write_text(json.dumps(RESULTS, indent=2))

    def verdict(self) -> None:
        self.problems += self.same_titles()
        self.record()
        if self.pending:
            print(f"\n{len(self.pending)} problems on pages not yet enforced, seen as {self.role}:")
            print("\n".join(map(str, self.pending)))
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
    page.click("form [type=submit]")
    page.wait_for_load_state()
    refused(person, audit, "/login (wrong password)")
    # An empty registration: four fields in error, each linked from the summary.
    person.goto("/register")
    page.click("form [type=submit]")
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
        page.click("form [type=submit]")
        page.wait_for_load_state()
        refused(person, audit, "/portal/organisations/new (empty)")
    audit.verdict()
