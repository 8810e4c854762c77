"""Every route of the app as data: who it admits, a URL that reaches its code, and one world of rows to fill it.

The route matrix, the CSRF test and the XSS walk all read the app's own url_map through these helpers, so a
route added tomorrow is covered by all three without anyone remembering to list it.
"""
from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select
from werkzeug.routing import PathConverter, Rule
from werkzeug.routing.converters import NumberConverter

from backoffice.admin.base import SecuredMixin
from backoffice.extensions import db
from backoffice.models import (
    Account,
    Accreditation,
    AssessmentStatus,
    AuditEvent,
    CheckKind,
    CheckOutcome,
    CheckRun,
    Criterion,
    Decision,
    DecisionOutcome,
    DeliveryState,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    Finding,
    FindingSeverity,
    Licence,
    ListingStatus,
    Principal,
    PrincipalRole,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    VerificationStatus,
    Work,
    WorkKind,
    WorkState,
    utcnow,
)
from backoffice.services import audit, documents, findings, listing_requests, outbox, review, staff, submissions
from backoffice.services.review import Evidence
from tests.conftest import login
from tests.portal_helpers import PDF
from tests.review_helpers import POLICY, provider_member, publish_catalogue

PUBLIC = "public"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALL_ROLES = tuple(Role)

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(1)"

# URL arguments that name a row, and the world's key for the rows that fill them. A route whose argument is
# not here fails the tests that walk it, until the world has a row of that kind.
ID_ARGUMENTS = {
    "provider_id": "provider", "submission_id": "submission", "document_id": "document", "finding_id": "finding",
    "seq": "audit_event", "action_id": "revocation", "account_id": "staff_account", "grant_id": "grant",
    "note_id": "notification", "work_id": "work", "version": "catalogue_version",
}
# String arguments with a value that reaches the view's code; any other string argument gets a plain word.
STRING_ARGUMENTS = {"export_type": "csv", "action": "acknowledge", "schema_name": "organization.json",
                    "taxonomy_id": "0d5e7c0a-2000-8000-8000-000000000000", "term_id": "0d5e7c0b-2a5a-83d8-8000-000000000000"}
PLAIN_STRING = "anything"
# Flask-Admin model views take the row in the query string.
MODEL_KEYS = {Provider: "provider", Submission: "submission", Finding: "finding", CheckRun: "check_run",
              Criterion: "criterion", Account: "staff_account", Licence: "licence", Decision: "decision",
              ExclusionRecord: "exclusion_record"}
ROW_IN_QUERY = frozenset({"details_view", "edit_view"})


# -- who may use a route ---------------------------------------------------------------------------


def admin_views(app: Flask) -> dict:
    return {view.endpoint: view for view in app.extensions["admin"][0]._views}


def serves_static_files(app: Flask, endpoint: str) -> bool:
    """Flask's own static-file routes (the app's and a blueprint's): files anyone may fetch, no view code."""
    if endpoint == "static":
        return app.has_static_folder
    if endpoint == "public.favicon":  # the icon in static/, under the path browsers ask for on their own
        return True
    blueprint, _, name = endpoint.rpartition(".")
    return name == "static" and blueprint in app.blueprints and \
        getattr(app.view_functions[endpoint], "__name__", None) == "send_static_file"


def expected_roles(app: Flask, endpoint: str) -> frozenset[Role] | str | None:
    """The roles the endpoint admits (an empty set: nobody), PUBLIC, or None when it declares nothing."""
    if serves_static_files(app, endpoint):
        return PUBLIC
    blueprint, _, method = endpoint.rpartition(".")
    view = admin_views(app).get(blueprint)
    if view is not None:
        if not isinstance(view, SecuredMixin) or not view.allowed_roles:
            return None
        return frozenset(view.roles_for(method))
    declared = getattr(app.view_functions[endpoint], "allowed_roles", None)
    if declared == PUBLIC:
        return PUBLIC
    if isinstance(declared, frozenset) and declared and all(isinstance(role, Role) for role in declared):
        return declared
    return None


def view_roles(app: Flask, endpoint: str) -> frozenset[Role]:
    """The roles the endpoint's Flask-Admin view admits as a whole (empty outside Flask-Admin)."""
    view = admin_views(app).get(endpoint.rpartition(".")[0])
    return frozenset(getattr(view, "allowed_roles", frozenset()))


@dataclass(frozen=True)
class Route:
    rule: Rule
    method: str
    roles: frozenset[Role] | str | None

    @property
    def endpoint(self) -> str:
        return self.rule.endpoint

    @property
    def public(self) -> bool:
        return self.roles == PUBLIC

    def __str__(self) -> str:
        return f"{self.method} {self.rule.rule}"


def routes(app: Flask) -> list[Route]:
    """Every rule and method of the app (HEAD and OPTIONS aside), in a stable order."""
    return [Route(rule, method, expected_roles(app, rule.endpoint))
            for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))
            for method in sorted(rule.methods - IGNORED_METHODS)]


def undeclared(app: Flask) -> list[str]:
    return sorted({route.rule.rule for route in routes(app) if route.roles is None})


# -- a URL for each route --------------------------------------------------------------------------


def _static_file(app: Flask, endpoint: str) -> str:
    """A file that exists in the static folder the endpoint serves."""
    blueprint = endpoint.rpartition(".")[0]
    folder = app.blueprints[blueprint].static_folder if blueprint else app.static_folder
    root = Path(folder)
    return next(str(p.relative_to(root)) for p in sorted(root.rglob("*")) if p.is_file())


def _rows(world: World, key: str, route: Route, every_row: bool) -> list[int]:
    rows = world.ids.get(key)
    if not rows:
        raise KeyError(f"{route}: the world has no {key} row to fill it with")
    return rows if every_row else rows[:1]


def urls(app: Flask, route: Route, world: World, every_row: bool = False) -> list[str]:
    """The route's URL filled with the world's rows: the first row of each kind, or every combination."""
    choices: dict[str, list] = {}
    for name, converter in route.rule._converters.items():  # werkzeug keeps a rule's converters here
        if name in ID_ARGUMENTS:
            choices[name] = _rows(world, ID_ARGUMENTS[name], route, every_row)
        elif isinstance(converter, NumberConverter):
            raise KeyError(f"{route}: no row kind fills the id argument <{name}>; add it to ID_ARGUMENTS")
        elif isinstance(converter, PathConverter):
            choices[name] = [_static_file(app, route.endpoint)]
        else:
            choices[name] = [STRING_ARGUMENTS.get(name, PLAIN_STRING)]
    blueprint, _, method = route.endpoint.rpartition(".")
    model = getattr(admin_views(app).get(blueprint), "model", None)
    if method in ROW_IN_QUERY and model is not None:
        if model not in MODEL_KEYS:
            raise KeyError(f"{route}: no row kind fills ?id= for {model.__name__}; add it to MODEL_KEYS")
        choices["id"] = _rows(world, MODEL_KEYS[model], route, every_row)
    names = sorted(choices)
    return [route.rule.build(dict(zip(names, values, strict=True)), append_unknown=True)[1]
            for values in itertools.product(*(choices[n] for n in names))]


def url(app: Flask, route: Route, world: World) -> str:
    return urls(app, route, world)[0]


# -- the world every route test runs against -------------------------------------------------------


@dataclass
class World:
    """One row of every kind a route names, its provider-supplied text carrying XSS payloads."""

    ids: dict[str, list[int]]
    accounts: dict[Role, Account] = field(default_factory=dict)

    def account(self, role: Role, make_account) -> Account:
        """The world's account for the role, made once on first use."""
        if role not in self.accounts:
            self.accounts[role] = make_account(role)
        return self.accounts[role]


def build_world(session, make_account, make_provider, upload_folder: str) -> World:
    """A listed provider with its member, an open update request (document, question, answer, assessment),
    a draft, a rejected request, two findings and a check run, a revocation awaiting sign-off, a pending role
    grant and an audit event; every text a provider or staff member types carries a payload."""
    future = date.today() + timedelta(days=365)
    catalogue = publish_catalogue(session)
    provider = make_provider(legal_name=f"Legal {SCRIPT}", public_name=f"Public {IMG}", website=JS_URL,
                             npi="1234567893", phone="(434) 296-1234", email="intake@harbor.example.org")
    provider.locations[0].street1 = f"1 {SCRIPT} Street"
    provider.locations[0].city = IMG
    provider.licences.append(Licence(state="VA", number=IMG, licence_type=SCRIPT, issuing_agency=IMG,
                                     levels_of_care=["outpatient"], expires_on=future))
    provider.accreditations.append(Accreditation(body=SCRIPT, accreditation_id=IMG, expires_on=future))
    provider.principals.append(Principal(name=IMG, role=PrincipalRole.MEDICAL_DIRECTOR, npi="1245319599",
                                         notes=SCRIPT))
    provider.verification_status = VerificationStatus.VERIFIED
    provider.listing_status = ListingStatus.LISTED
    provider.verified_at = utcnow()
    provider.verified_until = utcnow() + timedelta(days=100)
    provider.verified_catalogue_id = catalogue.id
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    admin = make_account(Role.ADMIN)
    member.name, researcher.name, admin.name = f"Member {IMG}", f"Researcher {SCRIPT}", f"Admin {IMG}"
    session.commit()

    # The open request. Its proposed data is written as stored rows could hold it (the portal's own checks
    # would refuse the javascript: website): the pages must be safe whatever the database holds.
    proposed = {
        "legal_name": f"Proposed legal {SCRIPT}", "public_name": f"Proposed {IMG}", "website": JS_URL,
        "locations": [{"street1": IMG, "city": SCRIPT, "state": "VA", "zip": "22902"}],
        "licences": [{"state": "VA", "number": SCRIPT, "licence_type": IMG, "levels_of_care": ["outpatient"],
                      "expires_on": future.isoformat()}],
        "principals": [{"name": SCRIPT, "role": "owner", "npi": None}],
        listing_requests.ATTESTATION_KEY: {"no_referral_fees": True, "no_lead_generation": True,
                                           "no_patient_brokering": True, "signed_by": SCRIPT,
                                           "account_id": member.id, "signed_at": utcnow().isoformat()},
    }
    submission = submissions.create_draft(session, member, provider, SubmissionKind.UPDATE, proposed)
    document = documents.store(session, member, submission, io.BytesIO(PDF), f"{IMG}.pdf", upload_folder,
                               10 * 1024 * 1024)
    review.submit(session, member, submission, POLICY)
    review.claim(session, researcher, submission, None)
    review.request_info(session, researcher, submission, f"Question {SCRIPT}", None)
    listing_requests.answer(session, member, submission, f"Answer {IMG}")
    code = review.applicable_criteria(session, submission)[0].code
    assessment = review.record_assessment(
        session, researcher, submission, code, AssessmentStatus.MET,
        Evidence(note=f"Note {SCRIPT}", source=f"Source {IMG}", url="https://evidence.example.org/",
                 document_id=document.id), None)
    session.commit()
    assessment.url = JS_URL  # the service refuses it; a row written another way must still never become a link

    draft = submissions.create_draft(session, member, provider, SubmissionKind.UPDATE,
                                     {**proposed, "public_name": f"Draft {SCRIPT}", "phone": IMG})

    rejected = submissions.create_draft(session, member, provider, SubmissionKind.UPDATE,
                                        {"public_name": f"Second {IMG}"})
    review.submit(session, member, rejected, POLICY)
    review.claim(session, researcher, rejected, None)
    review.record_assessment(session, researcher, rejected, code, AssessmentStatus.NOT_MET,
                             Evidence(note=f"Not met {IMG}"), None)
    review.decide(session, researcher, rejected, DecisionOutcome.REJECTED, [code], f"To the provider {SCRIPT}",
                  f"Internal {IMG}", POLICY, None)

    run = CheckRun(provider_id=provider.id, check=CheckKind.WEBSITE, outcome=CheckOutcome.WARN,
                   summary=f"Summary {SCRIPT}", evidence={"final_url": JS_URL, "title": IMG},
                   started_at=utcnow(), finished_at=utcnow(), duration_ms=12)
    session.add(run)
    session.flush()
    website_finding, _ = findings.open_or_update(
        session, "system:test", provider, CheckKind.WEBSITE, "website", FindingSeverity.WARNING,
        f"Title {SCRIPT}", {"message": IMG, "url": JS_URL}, check_run_id=run.id)
    source = ExclusionSource(list_name="oig_leie", file_name=f"{IMG}.csv", sha256="a" * 64, row_count=1,
                             imported_by="system:test")
    session.add(source)
    session.flush()
    record = ExclusionRecord(source_id=source.id, list_name="oig_leie", kind=ExclusionRecordKind.EXCLUSION,
                             row_key="b" * 64, business_name=SCRIPT, name_key="HARBOR", state="VA", city=IMG,
                             raw={"ADDRESS": IMG, "NAME": SCRIPT})
    session.add(record)
    session.flush()
    exclusion_finding, _ = findings.open_or_update(
        session, "system:test", provider, CheckKind.EXCLUSION, f"exclusion:{record.row_key}",
        FindingSeverity.WARNING, f"Match {IMG}",
        {"exclusion_record_id": record.id, "matched_by": SCRIPT, "confidence": 0.75,
         "party": {"role": "organisation", "name": IMG},
         "record": {"name": SCRIPT, "state": "VA", "address": IMG, "source_file": JS_URL}})

    failed_work = Work(kind=WorkKind.RECHECK_NOW, target_type="provider", target_id=str(provider.id),
                       params={"check": "website", "window": f"manual {IMG}"}, idempotency_key=f"website:{SCRIPT}",
                       state=WorkState.FAILED, attempts=5, max_attempts=5, last_error=f"Error {SCRIPT}",
                       requested_by="system:test")
    session.add(failed_work)
    revocation = review.request_revocation(session, researcher, provider, f"Revoke {SCRIPT}")
    grant = staff.request_role(session, admin, researcher, Role.AUDITOR, f"Grant {IMG}")
    undelivered = outbox.enqueue(session, kind="decided", account=member, subject=f"Decision {SCRIPT}",
                                 body=f"Body {IMG}", link=JS_URL)
    undelivered.delivery_state, undelivered.attempts = DeliveryState.FAILED, 1
    undelivered.failed_at, undelivered.last_error = utcnow(), f"550 5.1.1 {SCRIPT}"
    audit.record(session, "system:test", "note.recorded", "provider", provider.id, before={"note": SCRIPT},
                 after={"website": JS_URL, "note": IMG}, reason=f"Reason {SCRIPT}", provider_id=provider.id)
    session.commit()
    audit.run_verification(session, researcher)  # the verification history has a run, by a person, to show
    session.commit()

    events = list(session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())))
    criterion = session.scalar(select(Criterion.id).where(Criterion.code == code))
    return World(
        ids={"provider": [provider.id], "submission": [submission.id, rejected.id, draft.id],
             "document": [document.id], "finding": [website_finding.id, exclusion_finding.id], "check_run": [run.id],
             "criterion": [criterion], "audit_event": events, "revocation": [revocation.id],
             "staff_account": [researcher.id, admin.id], "grant": [grant.id],
             "notification": [undelivered.id], "work": [failed_work.id],
             "licence": [provider.licences[0].id], "decision": [rejected.decisions[0].id],
             "exclusion_record": [record.id], "catalogue_version": [catalogue.version]},
        accounts={Role.PROVIDER: member, Role.RESEARCHER: researcher, Role.ADMIN: admin},
    )


# -- what the database holds -----------------------------------------------------------------------


def row_counts(session) -> dict[str, int]:
    """The number of rows in every table, read in one statement."""
    tables = db.metadata.sorted_tables
    columns = [select(func.count()).select_from(table).scalar_subquery().label(table.name) for table in tables]
    row = session.execute(select(*columns)).one()
    return dict(zip((t.name for t in tables), row, strict=True))


def changed_tables(before: dict[str, int], after: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {name: (before[name], after[name]) for name in before if before[name] != after[name]}


def audit_event_count(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent))


# -- signing in --------------------------------------------------------------------------------------


def signed_in_client(app: Flask, account: Account):
    client = app.test_client()
    response = login(client, account)
    assert response.status_code == 302 and "/login" not in response.headers["Location"], \
        f"{account.email} could not sign in: {response.status_code} {response.headers.get('Location')}"
    return client


CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token_in(page: str) -> str:
    found = CSRF_INPUT.search(page)
    assert found, "the page has no csrf_token input"
    return found.group(1) or found.group(2)

