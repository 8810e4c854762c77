"""Accessibility checks for the browser journeys: axe-core at WCAG 2.1 AA, and what axe cannot judge.

axe-core is the npm package installed into tests/e2e/node_modules by `make install` (tests/e2e/package.json,
package-lock.json). It is put into the page by the driver (Chromium's DevTools protocol evaluates its source in
the page), not by a <script> tag, so the Content-Security-Policy stays as strict as it is.

Each check returns a list of `Problem`s (page, rule, selector, what); the callers collect them over every page
and fail listing them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
NARROW = {"width": 320, "height": 720}
# The roles a person uses to type, choose or press (WAI-ARIA widget roles that take a value or an action).
CONTROL_ROLES = {"textbox", "searchbox", "combobox", "listbox", "checkbox", "radio", "switch", "spinbutton",
                 "slider", "button", "menuitemcheckbox", "menuitemradio"}


@dataclass(frozen=True)
class Problem:
    page: str
    rule: str
    selector: str
    what: str

    def __str__(self) -> str:
        return f"{self.page} | {self.rule} | {self.selector} | {self.what}"


@cache
def axe_source() -> str:
    if not AXE.exists():
        raise AssertionError(f"{AXE} is missing: run `make install` (npm ci in tests/e2e)")
    return AXE.read_text()


def axe_violations(page, where: str) -> list[Problem]:
    """axe-core's violations of WCAG 2.0/2.1 A and AA on the page as it is now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    results = page.evaluate(
        """async (tags) => {
             const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                     resultTypes: ['violations']});
             return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
               nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))}));
           }""", AXE_TAGS)
    problems = []
    for violation in results:
        for node in violation["nodes"]:
            summary = " ".join((node["summary"] or "").split())[:200]
            problems.append(Problem(where, f"axe:{violation['id']} ({violation['impact']})", node["target"],
                                    f"{violation['help']}: {summary}"))
    return problems


DUPLICATE_IDS = """() => {
  const seen = {};
  for (const el of document.querySelectorAll('[id]')) seen[el.id] = (seen[el.id] || 0) + 1;
  return Object.entries(seen).filter(([, n]) => n > 1).map(([id, n]) => [id, n]);
}"""


def duplicate_ids(page, where: str) -> list[Problem]:
    return [Problem(where, "unique-ids", f"#{name}", f"{count} elements share this id")
            for name, count in page.evaluate(DUPLICATE_IDS)]


def unnamed_controls(page, where: str) -> list[Problem]:
    """Every form control in Chromium's accessibility tree has a non-empty accessible name."""
    client = page.context.new_cdp_session(page)
    try:
        client.send("DOM.getDocument", {"depth": -1})
        nodes = client.send("Accessibility.getFullAXTree")["nodes"]
        problems = []
        for node in nodes:
            role = (node.get("role") or {}).get("value")
            if node.get("ignored") or role not in CONTROL_ROLES:
                continue
            name = ((node.get("name") or {}).get("value") or "").strip()
            if name:
                continue
            selector = role
            if "backendDOMNodeId" in node:
                described = client.send("DOM.describeNode", {"backendNodeId": node["backendDOMNodeId"]})["node"]
                flat = described.get("attributes", [])
                attrs = dict(zip(flat[::2], flat[1::2], strict=True))
                selector = described.get("localName", role)
                for key in ("id", "name", "type"):
                    if attrs.get(key):
                        selector += f"#{attrs[key]}" if key == "id" else f"[{key}={attrs[key]}]"
            problems.append(Problem(where, "control-name", selector, f"a {role} with no accessible name"))
        return problems
    finally:
        client.detach()


def skip_link(page, where: str) -> list[Problem]:
    """The first Tab stop is "Skip to main content", and following it puts the focus on <main>."""
    # Start from the top of the document, as a keyboard user arriving on the page does.
    page.evaluate("""() => { const b = document.body; b.setAttribute('tabindex', '-1'); b.focus();
                            b.removeAttribute('tabindex'); }""")
    page.keyboard.press("Tab")
    first = page.evaluate("""() => { const el = document.activeElement;
        return el ? {tag: el.tagName.toLowerCase(), text: (el.textContent || '').trim(),
                     href: el.getAttribute('href')} : null; }""")
    if not first or first["tag"] != "a" or first["text"] != "Skip to main content" or first["href"] != "#main":
        return [Problem(where, "skip-link", "body", f"the first Tab stop is {first!r}, not the skip link to #main")]
    page.keyboard.press("Enter")
    landed = page.evaluate("""() => { const el = document.activeElement;
        return {tag: el.tagName.toLowerCase(), id: el.id, mains: document.querySelectorAll('main').length}; }""")
    problems = []
    if landed["tag"] != "main" or landed["id"] != "main":
        problems.append(Problem(where, "skip-link", "a[href='#main']",
                                f"following the skip link put the focus on {landed['tag']}#{landed['id']}"))
    return problems


STRUCTURE = """() => ({
  lang: document.documentElement.getAttribute('lang'),
  mains: document.querySelectorAll('main').length,
  h1s: document.querySelectorAll('h1').length,
  title: document.title,
  hiddenFocusable: [...document.querySelectorAll('[aria-hidden="true"]')].filter(el =>
      el.matches('a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])')
      || el.querySelector('a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])'))
    .map(el => el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ').join('.') : '')),
})"""


def structure(page, where: str) -> tuple[list[Problem], str]:
    """One <main>, one <h1>, a language, nothing focusable hidden from assistive technology; returns the title."""
    found = page.evaluate(STRUCTURE)
    problems = []
    if not found["lang"]:
        problems.append(Problem(where, "html-lang", "html", "no lang attribute"))
    if found["mains"] != 1:
        problems.append(Problem(where, "one-main", "main", f"{found['mains']} <main> elements"))
    if found["h1s"] != 1:
        problems.append(Problem(where, "one-h1", "h1", f"{found['h1s']} <h1> headings"))
    for selector in found["hiddenFocusable"]:
        problems.append(Problem(where, "aria-hidden-focus", selector, "focusable but aria-hidden"))
    return problems, found["title"]


OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= width) return null;
  const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
    return false; };
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + (typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const wide = [...document.body.querySelectorAll('*')].filter(el => el.getBoundingClientRect().right > width + 1
      && !scrolls(el) && ![...el.children].some(c => c.getBoundingClientRect().right > width + 1));
  return {scrollWidth: document.documentElement.scrollWidth, width,
          culprits: wide.slice(0, 4).map(el => { const path = []; let e = el;
            for (let i = 0; e && e !== document.body && i < 3; i++, e = e.parentElement) path.unshift(name(e));
            return path.join(' > '); })};
}"""


def reflow(page, where: str, wide: dict) -> list[Problem]:
    """Nothing scrolls sideways at 320 CSS pixels (WCAG 1.4.10: 1280 px at 400 % zoom)."""
    page.set_viewport_size(NARROW)
    try:
        found = page.evaluate(OVERFLOWING)
    finally:
        page.set_viewport_size(wide)
    if not found:
        return []
    return [Problem(where, "reflow-320px", culprit, f"the page is {found['scrollWidth']} px wide at {found['width']} px")
            for culprit in found["culprits"] or ["html"]]


def focus_on_error_summary(page, where: str) -> list[Problem]:
    """After a refused form, the focus is on its error summary (role=alert), which links to each field in error
    and each field in error is marked invalid and described by its message."""
    found = page.evaluate("""() => {
      const summary = document.querySelector('.error-summary');
      if (!summary) return {summary: false};
      const active = document.activeElement;
      const links = [...summary.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1));
      const fields = links.map(id => { const el = document.getElementById(id);
        if (!el) return {id, missing: true};
        const described = (el.getAttribute('aria-describedby') || '').split(/\\s+/).filter(Boolean)
          .map(d => document.getElementById(d)).filter(Boolean).map(d => d.textContent.trim()).join(' ');
        return {id, invalid: el.getAttribute('aria-invalid'), described}; });
      return {summary: true, role: summary.getAttribute('role'), focused: summary.contains(active),
              active: active.tagName.toLowerCase() + (active.id ? '#' + active.id : ''), fields};
    }""")
    if not found["summary"]:
        return [Problem(where, "error-summary", ".error-summary", "a refused form without an error summary")]
    problems = []
    if found["role"] != "alert":
        problems.append(Problem(where, "error-summary", ".error-summary", f"role is {found['role']!r}, not alert"))
    if not found["focused"]:
        problems.append(Problem(where, "error-summary", ".error-summary",
                                f"the focus is on {found['active']}, not on the error summary"))
    if not found["fields"]:
        problems.append(Problem(where, "error-summary", ".error-summary", "links to no field in error"))
    for item in found["fields"]:
        if item.get("missing"):
            problems.append(Problem(where, "error-summary", f"#{item['id']}", "the summary links to no element"))
            continue
        if item["invalid"] != "true":
            problems.append(Problem(where, "aria-invalid", f"#{item['id']}", "a field in error without aria-invalid"))
        if not item["described"]:
            problems.append(Problem(where, "error-describedby", f"#{item['id']}",
                                    "a field in error not described by its message"))
    return problems


def check_page(page, where: str, wide: dict) -> tuple[list[Problem], str]:
    """Every check on the page as loaded; returns the problems and the page's title."""
    problems, title = structure(page, where)
    problems += duplicate_ids(page, where)
    problems += unnamed_controls(page, where)
    problems += axe_violations(page, where)
    problems += reflow(page, where, wide)
    problems += skip_link(page, where)
    return problems, title
