"""XSS: provider- and staff-typed text carrying payloads is inert on every page of the app.

Every GET route from the url_map is opened, filled with the ids of rows whose text carries payloads, by
every role that may open it (anonymous for public pages); once more with payloads in the query string.
No page may hold a live payload, every HTML page is under a Content-Security-Policy without
'unsafe-inline' scripts, and every script on a page carries that response's nonce (or, outside
Flask-Admin, is loaded from this site).
"""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest

from backoffice.extensions import db
from tests.route_helpers import (
    ALL_ROLES,
    IMG,
    JS_URL,
    SCRIPT,
    build_world,
    routes,
    serves_static_files,
    signed_in_client,
    urls,
    view_roles,
)

LIVE = {
    "a raw <script>alert": re.compile(r"<script>alert", re.I),
    "a raw <img src=x onerror": re.compile(r"<img src=x onerror", re.I),
    # Flask-Admin's own templates use the inert href="javascript:void(0)"; anything else is a payload.
    "a javascript: URL in an attribute": re.compile(
        r"""\b(?:href|src|action|formaction|xlink:href)\s*=\s*["']?\s*javascript:(?!void\(0\)["'\s>])""", re.I),
}
ESCAPED = ("&lt;script&gt;alert(1)", "&lt;img src=x onerror=alert(1)&gt;")
# Query parameters the pages read, each given a payload: whatever a page echoes back must be inert too.
HOSTILE_QUERY = {name: payload for name, payload in zip(
    ("search", "next", "state", "kind", "assignee", "actor", "action", "entity_type", "entity_id", "cursor",
     "before", "date_from", "date_to", "provider_id", "level_of_care", "service", "sort", "page", "flt0_0"),
    (SCRIPT, JS_URL, IMG) * 7, strict=False)}


class Scripts(HTMLParser):
    """The attributes of every <script> tag of a page, and every place the policy would refuse to run script
    written into the markup itself: an inline event handler (onclick=...) or a javascript: address."""

    def __init__(self):
        super().__init__()
        self.tags: list[dict] = []
        self.refused: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self.tags.append(dict(attrs))
        for name, value in attrs:
            if name.startswith("on"):
                self.refused.append(f"<{tag} {name}=...>")
            elif name in ("href", "src", "action", "formaction") and (value or "").strip().lower().startswith(
                    "javascript:"):
                self.refused.append(f"<{tag} {name}={value!r}>")


def csp_problems(response, path: str, who: str) -> list[str]:
    policy = response.headers.get("Content-Security-Policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.split()}
    script_src = directives.get("script-src", directives.get("default-src"))
    if not script_src:
        return [f"{who}: no Content-Security-Policy with a script-src ({policy!r})"]
    problems = []
    if "'unsafe-inline'" in script_src or "*" in script_src:
        problems.append(f"{who}: script-src allows inline or any script: {' '.join(script_src)}")
    nonces = [value[len("'nonce-"):-1] for value in script_src if value.startswith("'nonce-")]
    parser = Scripts()
    parser.feed(response.get_data(as_text=True))
    for attrs in parser.tags:
        has_nonce = bool(nonces) and attrs.get("nonce") == nonces[0]
        if path.startswith("/admin/") and not has_nonce:
            problems.append(f"{who}: a Flask-Admin <script> without the response's nonce: {attrs}")
        elif not has_nonce and not attrs.get("src"):
            problems.append(f"{who}: an inline <script> without the response's nonce")
    problems += [f"{who}: script in the markup the policy refuses: {where}" for where in sorted(set(parser.refused))]
    return problems


MACHINE_READABLE = frozenset({"application/json", "text/plain"})
COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def page_problems(response, path: str, who: str, static: bool) -> list[str]:
    """What makes a response unsafe: a live payload, a missing policy, a script that would run unasked."""
    body = response.get_data(as_text=True)
    mimetype = response.mimetype
    problems = [f"{who}: {what}" for what, pattern in LIVE.items() if pattern.search(body)]
    if path.startswith("/api/"):
        if mimetype == "application/jose":  # a signed answer (the status list, a receipt): base64url, nothing more
            if not COMPACT_JWS.fullmatch(body.strip()):
                problems.append(f"{who}: an application/jose answer that is not a compact JWS")
        elif mimetype != "application/json":
            problems.append(f"{who}: the feed answered {response.content_type}, not application/json")
        else:
            json.loads(body)
        if "<" in body or ">" in body:
            problems.append(f"{who}: raw < or > in the feed's bytes")
    elif mimetype == "text/html":
        problems += csp_problems(response, path, who)
    elif response.headers.get("Content-Disposition", "").startswith("attachment"):
        if response.headers.get("X-Content-Type-Options") != "nosniff":
            problems.append(f"{who}: a download without X-Content-Type-Options: nosniff")
    elif mimetype in MACHINE_READABLE:
        # The probes (JSON) and the metrics (Prometheus text), read by machines: a browser must not sniff them
        # into a page.
        if response.headers.get("X-Content-Type-Options") != "nosniff":
            problems.append(f"{who}: {mimetype} without X-Content-Type-Options: nosniff")
        if mimetype == "application/json":
            json.loads(body)
    elif not static:
        problems.append(f"{who}: neither HTML, JSON nor a download: {response.content_type}")
    return problems


@pytest.fixture
def signed_in_app(app, make_app):
    """An app whose sign-in limit lets every role sign in within the same minute."""
    many = make_app(LOGIN_RATE_LIMIT="1000 per minute")
    with many.app_context():
        yield many
        db.session.rollback()


def test_no_page_carries_a_live_payload(signed_in_app, make_account, make_provider):
    app = signed_in_app
    world = build_world(db.session, make_account, make_provider, app.config["UPLOAD_FOLDER"])
    clients = {None: app.test_client()}
    clients.update({role: signed_in_client(app, world.account(role, make_account)) for role in ALL_ROLES})

    problems, opened, shown = [], [], set()
    for route in routes(app):
        if route.method != "GET":
            continue
        closed = not route.public and not route.roles
        if route.public:
            visitors = [None]
        elif closed:  # nobody may use it: its 403 page, as seen by one role of its view, is checked too
            visitors = [min(view_roles(app, route.endpoint))]
        else:
            visitors = [role for role in ALL_ROLES if role in route.roles]
        targets = urls(app, route, world, every_row=True)
        hostile = targets[0] + ("&" if "?" in targets[0] else "?") + urlencode(HOSTILE_QUERY)
        for role in visitors:
            for target in targets + ([hostile] if role == visitors[0] else []):
                response = clients[role].get(target)
                shown_as = f"{targets[0]} with payloads in the query" if target == hostile else target
                who = f"{role.value if role else 'anonymous'} {shown_as}"
                opened.append(who)
                if response.status_code >= 500 or (response.status_code == 403) != closed:
                    problems.append(f"{who}: answered {response.status_code}")
                problems += page_problems(response, target, who, serves_static_files(app, route.endpoint))
                body = response.get_data(as_text=True)
                if any(escaped in body for escaped in ESCAPED):
                    shown.add(target)
    assert problems == [], f"{len(problems)} problems on {len(opened)} pages:\n" + "\n".join(problems)

    # The payloads were there to be found, escaped, on every page that shows the rows carrying them.
    ids = {kind: rows[0] for kind, rows in world.ids.items()}
    provider = ids["provider"]
    expected_on = {
        "/admin/providers/", f"/admin/providers/details/?id={provider}", "/admin/submissions/",
        f"/admin/submissions/details/?id={ids['submission']}", "/admin/findings/",
        f"/admin/findings/details/?id={ids['finding']}", f"/admin/check_runs/details/?id={ids['check_run']}",
        "/admin/accounts/", f"/admin/accounts/details/?id={ids['staff_account']}", "/admin/review/",
        f"/admin/review/provider/{provider}", "/admin/finding-work/", f"/admin/finding-work/provider/{provider}",
        "/admin/staff/", f"/admin/staff/{ids['staff_account']}", "/admin/audit/", f"/admin/audit/provider/{provider}",
        f"/admin/audit/event/{ids['audit_event']}", "/portal/", f"/portal/organisations/{provider}",
        f"/portal/organisations/{provider}/advertise", f"/portal/requests/{world.ids['submission'][-1]}/edit",
        *(f"/admin/review/case/{i}" for i in world.ids["submission"]),
        *(f"/portal/requests/{i}" for i in world.ids["submission"]),
        *(f"/admin/finding-work/{i}" for i in world.ids["finding"]),
    }
    assert sorted(expected_on - shown) == []
    assert len(opened) > 150

    # The feed carries them as data: the same text, with no raw markup in its bytes.
    feed = clients[None].get("/api/v1/listings")
    listing = next(item for item in feed.get_json()["listings"] if item["id"] == provider)
    assert listing["public_name"] == f"Public {IMG}"
    assert "\\u003cimg src=x onerror=alert(1)\\u003e" in feed.get_data(as_text=True)
