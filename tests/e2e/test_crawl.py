"""The crawl: every page each role reaches from the navigation and from the first rows of each list, read
as a person reads it.

The stack is seeded as `make run` seeds a fresh machine (`flask seed-demo`, the shipped LEIE file imported,
every sweep run when the worker starts), so the pages hold real demo data: verified providers, advertisers,
requests in every state, check runs and findings. Each role signs in through the pages and walks the links
it is shown, breadth first, at most a few pages of each kind (a kind is the path with its numbers taken out
and the names of its query parameters). Every page visited must:

- answer without an error status (a link shown to a role that then refuses it is a defect too);
- raise no script error, console error or Content-Security-Policy violation;
- show no Python object text (`object at 0x`), no `None`, no raw code where the vocabulary has words for it
  (`in_review`, `substance_use_treatment`, `research_lead`, ...), and no timestamp with microseconds;
- for a listed provider's portal page, show under "Listing as the directory has it" what the directory has.

The text judged is what a person reads: rendered text (nothing hidden), with the contents of text areas (what
a person types) and elements marked `as-recorded` (the audit record exactly as stored, which an auditor needs
verbatim) left out of the raw-code check only. Problems are collected over the
whole walk and reported together; the figures (pages per role, problems) and one screenshot of each kind of
page are kept in artifacts/e2e/<backend>/crawl/.
"""
from __future__ import annotations

import json
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from sqlalchemy import text

from backoffice import vocab
from backoffice.models import base as model_base
from backoffice.services import listing_rules
from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

STACK_SETUP = "demo"
DEMO_PASSWORD = "demo-password-2026"
ROLES = {
    "provider": "provider@demo.example",
    "researcher": "researcher@demo.example",
    "lead": "lead@demo.example",
    "auditor": "auditor@demo.example",
    "admin": "admin@demo.example",
}
PER_KIND = 2
# A provider's own organisations and requests are few and each is in another state: read them all.
KIND_LIMITS = {"/portal/organisations/N": 12, "/portal/requests/N": 12, "/portal/requests/N/edit": 4}
MAX_PAGES = 90
MAX_DEPTH = 3
# Not pages to read: signing out, files, exports and the JSON API (the API has its own tests).
SKIPPED = re.compile(r"^/(logout|static/|admin/static/|api/)|/documents/\d+|/export|\.(csv|jsonl|json|png|pdf)$")

MICROSECONDS = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\.\d{3,}")
PYTHON_OBJECT = re.compile(r"object at 0x[0-9a-f]+")
NONE_TEXT = re.compile(r"\bNone\b")


def raw_codes() -> set[str]:
    """Codes a person should never read raw: every multi-word enum value and vocabulary code, and the
    abbreviations the vocabularies spell out."""
    codes: set[str] = set()
    for vocabulary in (vocab.LEVELS_OF_CARE, vocab.SERVICES, listing_rules.POPULATIONS,
                       listing_rules.PAYMENT_ACCEPTED, listing_rules.PRINCIPAL_ROLES):
        codes |= set(vocabulary)
    for enum_cls in model_base.StrEnum.__subclasses__():
        codes |= {member.value for member in enum_cls}
    return {code for code in codes if "_" in code} | {"iop", "php", "otp", "moud"}


CODE_PATTERN = re.compile(r"(?<![\w.:/-])(" + "|".join(sorted(map(re.escape, raw_codes()), key=len, reverse=True))
                          + r")(?![\w-])")

# The text a person reads: visible text nodes, without scripts and styles; `recorded` also leaves out the
# elements that show the audit record exactly as stored.
VISIBLE_TEXT = """(skipRecorded) => {
  const parts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || parent.closest('script, style, template, noscript')) continue;
    // Not rendered (display: none, a collapsed part): nobody reads it. An option is read in its select.
    const shown = parent.closest('option') ? parent.closest('select') : parent;
    if (!shown || shown.getClientRects().length === 0) continue;
    // What a person types into a form, and the audit record exactly as stored, are not our wording.
    if (skipRecorded && parent.closest('.as-recorded, textarea')) continue;
    parts.push(node.textContent);
  }
  return parts.join(' ').replace(/\\s+/g, ' ');
}"""


@dataclass
class Walk:
    role: str
    visited: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    shots: list[str] = field(default_factory=list)


WALKS: dict[str, Walk] = {}


# Query parameters that only sort or page what is already there: they do not make another kind of page.
ORDERING = {"sort", "desc", "page", "page_size", "before", "cursor", "url"}


def kind_of(path_and_query: str) -> str:
    parts = urlsplit(path_and_query)
    keys = sorted({key for key, _ in parse_qsl(parts.query, keep_blank_values=True)} - ORDERING)
    return re.sub(r"\d+", "N", parts.path) + ("?" + "&".join(keys) if keys else "")


def local_target(base_url: str, href: str) -> str | None:
    """The path and query of a same-site link worth visiting, or None."""
    if not href or href.startswith(("mailto:", "tel:", "javascript:", "#")):
        return None
    parts = urlsplit(href)
    if parts.scheme and f"{parts.scheme}://{parts.netloc}" != base_url:
        return None
    if SKIPPED.search(parts.path):
        return None
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return parts.path + (f"?{query}" if query else "")


def sign_in(person, stack, role: str) -> None:
    page = person.page
    person.goto("/login")
    page.fill("[name=email]", ROLES[role])
    page.fill("[name=password]", DEMO_PASSWORD)
    person.click("form [type=submit]")
    for attempt in range(2):
        if "/login/code" not in page.url:
            break
        if attempt:  # this half-minute's code was used by an earlier sign-in of the same person: wait for the next
            time.sleep(30.5 - time.time() % 30)
        page.fill("[name=code]", stack.flask("demo-code", ROLES[role]).strip())
        person.click("form [type=submit]")
    assert "/login" not in page.url, f"{role} could not sign in: {page.inner_text('main')[:500]}"


def read_page(person, stack, walk: Walk, target: str, response) -> list[str]:
    """Judge one page; returns the links it shows."""
    page = person.page
    where = target
    status = response.status if response is not None else 0
    if status >= 400:
        walk.problems.append(f"{where}: answered {status}")
    content_type = (response.headers.get("content-type", "") if response is not None else "")
    if not content_type.startswith("text/html"):
        return []
    text = page.evaluate(VISIBLE_TEXT, False)
    for pattern, what in ((PYTHON_OBJECT, "Python object text"), (NONE_TEXT, "'None' shown as text"),
                          (MICROSECONDS, "a timestamp with microseconds")):
        for match in sorted(set(pattern.findall(text)))[:3]:
            walk.problems.append(f"{where}: {what}: {match!r}")
    readable = page.evaluate(VISIBLE_TEXT, True)
    for code in sorted(set(CODE_PATTERN.findall(readable)))[:5]:
        walk.problems.append(f"{where}: raw code shown instead of its words: {code!r}")
    if re.fullmatch(r"/portal/organisations/\d+", urlsplit(target).path):
        walk.problems.extend(f"{where}: {p}" for p in listing_panel_problems(page, stack, target))
    for problem in person.problems:
        walk.problems.append(problem)
    person.problems.clear()
    kind = kind_of(target)
    if walk.kinds[kind] == 1:
        name = f"{len(walk.shots):02d}-" + re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")[:60]
        shot = ARTIFACTS / "crawl" / walk.role / f"{name}.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        walk.shots.append(str(shot.relative_to(ARTIFACTS)))
    return page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")


def listing_panel_problems(page, stack, target: str) -> list[str]:
    """A listed provider's portal page shows, under "Listing as the directory has it", what the directory has."""
    provider_id = int(target.rstrip("/").rsplit("/", 1)[1])
    with stack.engine.connect() as conn:
        row = conn.execute(text("select legal_name, public_name, website, phone, npi, listing_status from provider "
                                "where id = :id"), {"id": provider_id}).one()
        cities = conn.execute(text("select city from location where provider_id = :id"),
                              {"id": provider_id}).scalars().all()
    if row.listing_status != "listed":
        return []
    panel = page.locator("xpath=//h2[contains(., 'as the directory has it')]/following-sibling::*[self::dl or "
                         "self::div or self::section][1]")
    if panel.count() != 1:
        return ["no listing under 'Listing as the directory has it' on a listed provider's page"]
    shown = panel.inner_text()
    problems = [f"the directory's {name} ({value!r}) is not shown under 'Listing as the directory has it'"
                for name, value in (("legal name", row.legal_name), ("public name", row.public_name),
                                    ("website", row.website), ("phone", row.phone), ("NPI", row.npi))
                if value and value not in shown]
    problems += [f"the directory's location in {city} is not shown" for city in cities if city not in shown]
    return problems


def crawl(person, stack, walk: Walk) -> None:
    queue: deque[tuple[str, int]] = deque([(urlsplit(person.page.url).path, 0)])
    seen: set[str] = set()
    while queue and len(walk.visited) < MAX_PAGES:
        target, depth = queue.popleft()
        if target in seen:
            continue
        kind = kind_of(target)
        if walk.kinds[kind] >= KIND_LIMITS.get(kind, PER_KIND):
            continue
        seen.add(target)
        walk.kinds[kind] += 1
        walk.visited.append(target)
        response = person.page.goto(target)
        person.page.wait_for_load_state()
        links = read_page(person, stack, walk, target, response)
        if depth < MAX_DEPTH:
            for href in links:
                found = local_target(stack.base_url, href)
                if found and found not in seen:
                    queue.append((found, depth + 1))


@pytest.fixture(scope="module")
def demo_ready(stack):
    """Wait until the start-up sweeps have re-checked the due providers and screened against the LEIE."""
    stack.wait_for(lambda: (stack.scalar("select count(*) from check_run where \"check\" = 'exclusion'") or 0) > 0
                   and (stack.scalar("select count(*) from check_run where \"check\" = 'website'") or 0) > 0,
                   "the start-up re-checks to record runs", 120)
    yield stack
    summary = {role: {"pages": len(w.visited), "kinds": len(w.kinds), "problems": w.problems,
                      "visited": w.visited, "screenshots": w.shots} for role, w in WALKS.items()}
    (ARTIFACTS / "crawl").mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "crawl" / "summary.json").write_text(json.dumps(summary, indent=2))


@pytest.mark.parametrize("role", list(ROLES))
def test_every_page_reads_right(demo_ready, people, role):
    """Sign in as the role and walk every page it is shown; report every problem found on the way."""
    stack = demo_ready
    person = people(f"crawl-{role}")
    sign_in(person, stack, role)
    walk = WALKS[role] = Walk(role)
    crawl(person, stack, walk)
    assert len(walk.visited) >= 3, f"{role} reached only {walk.visited}"
    assert not walk.problems, (f"{len(walk.problems)} problems on {len(walk.visited)} pages seen as {role}:\n"
                               + "\n".join(walk.problems))
