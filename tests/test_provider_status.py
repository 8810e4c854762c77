"""The provider's statuses have one owner: services/provider_status.py, from one table of allowed transitions.

The code is read to make sure no other module assigns the three status columns; a refused transition says
why and changes nothing; and the tables allow what the services' own rules let through, no more.
"""
from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backoffice.models import (
    AdvertisingStatus,
    AuditEvent,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ListingStatus,
    Provider,
    Role,
    SubmissionKind,
    VerificationStatus,
    utcnow,
)
from backoffice.services import advertising, expiry, provider_status, review
from backoffice.services.errors import DomainError, InvalidTransition
from tests.review_helpers import POLICY, ad_copy, assess_all, in_review, provider_member, publish_catalogue, submitted

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = frozenset({"listing_status", "verification_status", "advertising_status"})
OWNER = ROOT / "backoffice" / "services" / "provider_status.py"
# Where an assignment would be allowed besides the owner: nowhere (models, demo data and importers create
# providers with the column defaults and change them through the owner like everyone else).
ALLOWED_ELSEWHERE: frozenset[Path] = frozenset()
STATES = {"listing": ListingStatus, "verification": VerificationStatus, "advertising": AdvertisingStatus}


# -- nobody else assigns them ---------------------------------------------------------------------


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def status_writes(source: str) -> list[tuple[int, str]]:
    """(line, what) for every assignment of a status column in this source: `x.listing_status = ...` (also
    augmented, annotated or unpacked), `setattr(x, "listing_status", ...)`, and keyword or dict-key writes in
    `.values(...)`, `.update(...)` and similar bulk writes (`update(Provider).values(listing_status=...)`)."""
    found: list[tuple[int, str]] = []

    def targets(node: ast.AST):
        if isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                yield from targets(element)
        elif isinstance(node, ast.Starred):
            yield from targets(node.value)
        else:
            yield node

    for node in ast.walk(ast.parse(source)):
        assigned = (node.targets if isinstance(node, ast.Assign)
                    else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For)) else [])
        for target in (t for each in assigned for t in targets(each)):
            if isinstance(target, ast.Attribute) and target.attr in COLUMNS:
                found.append((node.lineno, f"assigns .{target.attr}"))
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
        if name == "setattr" and len(node.args) >= 2 and _constant(node.args[1]) in COLUMNS:
            found.append((node.lineno, f"setattr(..., {_constant(node.args[1])!r})"))
        if name in ("values", "update", "bulk_update_mappings", "Provider", "insert"):
            for keyword in node.keywords:
                if keyword.arg in COLUMNS:
                    found.append((node.lineno, f"{name}({keyword.arg}=...)"))
            for argument in node.args:
                for item in argument.elts if isinstance(argument, (ast.List, ast.Tuple)) else [argument]:
                    if isinstance(item, ast.Dict):
                        for key in item.keys:
                            if key is not None and _constant(key) in COLUMNS:
                                found.append((node.lineno, f"{name}({{{_constant(key)!r}: ...}})"))
    return found


def test_the_reader_finds_every_form_of_writing_a_status():
    source = '''
provider.listing_status = ListingStatus.LISTED
a, b.verification_status = 1, 2
provider.advertising_status: AdvertisingStatus = AdvertisingStatus.NONE
setattr(provider, "listing_status", ListingStatus.SUSPENDED)
session.execute(update(Provider).where(Provider.id == 1).values(advertising_status=AdvertisingStatus.ENDED))
session.execute(update(Provider).values({"verification_status": VerificationStatus.EXPIRED}))
session.query(Provider).update({"listing_status": "delisted"})
if provider.listing_status == ListingStatus.LISTED and provider.listing_status != 1:
    select(Provider).where(Provider.verification_status == VerificationStatus.VERIFIED)
'''
    assert sorted(line for line, _ in status_writes(source)) == [2, 3, 4, 5, 6, 7, 8]


def test_no_module_but_provider_status_assigns_a_status_column():
    offenders = []
    for folder in ("backoffice", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == OWNER or path in ALLOWED_ELSEWHERE:
                continue
            for line, what in status_writes(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert offenders == [], ("Only backoffice/services/provider_status.py changes a provider's listing, "
                             "verification or advertising status; call it instead:\n" + "\n".join(offenders))


# -- a refused transition says why and changes nothing --------------------------------------------


def _provider(listing=ListingStatus.UNLISTED, verification=VerificationStatus.UNVERIFIED,
              advertising=AdvertisingStatus.NONE) -> Provider:
    return Provider(listing_status=listing, verification_status=verification, advertising_status=advertising)


def _statuses(provider: Provider) -> tuple:
    return provider.listing_status, provider.verification_status, provider.advertising_status


@pytest.mark.parametrize("status,name,state", [
    (status, name, state)
    for status, table in provider_status.TABLES.items()
    for name, (sources, _target) in table.items()
    for state in STATES[status] if state not in sources
])
def test_every_transition_the_table_does_not_allow_is_refused_and_changes_nothing(status, name, state):
    provider = _provider(**{status: state})
    before = _statuses(provider)
    message = provider_status.refusal(provider, **{status: name})
    assert message and state.label in message
    with pytest.raises(InvalidTransition) as refused:
        provider_status._move(provider, **{status: name})
    assert str(refused.value) == message
    assert _statuses(provider) == before


@pytest.mark.parametrize("status,name,state", [
    (status, name, state)
    for status, table in provider_status.TABLES.items()
    for name, (sources, _target) in table.items()
    for state in sorted(sources)
])
def test_every_transition_the_table_allows_leads_where_it_says(status, name, state):
    provider = _provider(**{status: state})
    assert provider_status.refusal(provider, **{status: name}) is None
    assert provider_status._move(provider, **{status: name}) == {status: state}
    assert getattr(provider, f"{status}_status") == provider_status.TABLES[status][name][1]


def test_a_transition_of_two_statuses_refused_by_one_assigns_neither():
    provider = _provider(listing=ListingStatus.LISTED, verification=VerificationStatus.UNVERIFIED)
    with pytest.raises(InvalidTransition, match="Verification is unverified; it cannot become revoked"):
        provider_status._move(provider, listing="delist", verification="revoke")
    assert _statuses(provider) == (ListingStatus.LISTED, VerificationStatus.UNVERIFIED, AdvertisingStatus.NONE)


def _events(session) -> int:
    """How many events the trail holds, once this transaction's (chained when it commits) are in."""
    session.commit()
    return session.scalar(select(func.count()).select_from(AuditEvent))


def test_refused_transitions_through_the_functions_keep_their_words_write_no_event(session, make_provider):
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.UNLISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=30),
                             advertising_status=AdvertisingStatus.ACTIVE)
    events, before = _events(session), _statuses(provider)
    with pytest.raises(InvalidTransition, match=r"^Only a listed provider can be suspended; this one is unlisted\.$"):
        provider_status.suspend_listing(session, "system:test", provider, "complaint")
    with pytest.raises(InvalidTransition, match=r"^Advertising is active; it cannot become pending \(apply\)\.$"):
        provider_status.apply_for_advertising(session, "system:test", provider, review_submission_stub())
    assert (_statuses(provider), _events(session)) == (before, events)

    provider_status.end_advertising(session, "system:test", provider, "stops")
    assert _events(session) == events + 1  # one event for one transition
    events, before = _events(session), _statuses(provider)
    with pytest.raises(InvalidTransition, match=r"^Advertising is ended; there is nothing to end\.$"):
        provider_status.end_advertising(session, "system:test", provider, "again")
    with pytest.raises(InvalidTransition, match=r"^Advertising is ended; there is nothing to suspend\.$"):
        provider_status.suspend_advertising(session, "system:test", provider, "again", strict=True)
    # The automatic ones do nothing, and say so.
    assert provider_status.suspend_advertising(session, "system:test", provider, "critical finding") is False
    assert provider_status.suspend_listing(session, "system:test", provider, "critical", automatic=True) is False
    assert provider_status.withdraw_advertising(session, "system:test", provider, review_submission_stub()) is False
    assert provider_status.reject_advertising(session, "system:test", provider, review_submission_stub()) is False
    assert (_statuses(provider), _events(session)) == (before, events)


def review_submission_stub():
    class Application:
        id = 0
    return Application()


def test_an_advertiser_needs_a_verification_in_force(session, make_provider):
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now - timedelta(days=400), verified_until=now - timedelta(days=1),
                             advertising_status=AdvertisingStatus.PENDING)
    events = _events(session)
    with pytest.raises(DomainError, match=r"^Only a currently verified provider can advertise; this one is expired\.$"):
        provider_status.approve_advertising(session, "system:test", provider, review_submission_stub())
    assert provider.advertising_status == AdvertisingStatus.PENDING and _events(session) == events


# -- the tables allow what the services' rules let through ----------------------------------------


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)


def test_every_transition_in_the_tables_is_one_a_function_makes_and_a_service_calls():
    tree = ast.parse(OWNER.read_text())
    made = set()
    for node, name in _calls(tree):
        if name == "_move":
            # _advertising()'s own _move(advertising=name) passes its caller's name on: those are counted below.
            made |= {(k.arg, _constant(k.value)) for k in node.keywords if _constant(k.value)}
        if name == "_advertising":
            made.add(("advertising", _constant(node.args[3])))
    assert made == {(status, name) for status, table in provider_status.TABLES.items() for name in table}

    public = {f.name for f in tree.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")
              and any(name in ("_move", "_advertising") for _, name in _calls(f))}
    called = set()
    for folder in ("backoffice", "tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            if path != OWNER:
                called |= {node.func.attr for node, _ in _calls(ast.parse(path.read_text()))
                           if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                           and node.func.value.id == "provider_status"}
    assert public - called == set(), "transitions nothing calls"


@pytest.fixture
def listed(session, make_account, make_provider):
    publish_catalogue(session)
    now = utcnow()
    provider = make_provider(listing_status=ListingStatus.LISTED, verification_status=VerificationStatus.VERIFIED,
                             verified_at=now, verified_until=now + timedelta(days=200))
    return {"provider": provider, "member": provider_member(session, make_account, provider),
            "researcher": make_account(Role.RESEARCHER), "lead": make_account(Role.RESEARCH_LEAD)}


def test_apply_starts_from_exactly_the_states_the_advertising_rules_let_apply(session, listed):
    provider = listed["provider"]
    can_apply = set()
    for state in AdvertisingStatus:
        provider.advertising_status = state  # test set-up, as the fixtures do
        if advertising.why_not(session, provider) is None:
            can_apply.add(state)
    assert can_apply == provider_status.ADVERTISING["apply"][0]


def test_approval_starts_from_exactly_the_states_an_approvable_application_may_be_in(session, listed):
    provider = listed["provider"]
    application = advertising.apply(session, listed["member"], provider, POLICY, ad_copy(provider))
    session.commit()
    in_review(session, listed["researcher"], application)
    assess_all(session, listed["researcher"], application)
    approvable = set()
    for state in AdvertisingStatus:
        provider.advertising_status = state  # test set-up
        try:
            review.require_approvable(session, application)
        except DomainError:
            continue
        approvable.add(state)
    assert approvable == provider_status.ADVERTISING["approve"][0]


def test_a_revocation_asked_for_while_verified_applies_after_the_verification_lapsed(session, listed):
    """The table lets a revocation start from expired: the sweep may expire a provider between the request
    (which needs it verified) and the second researcher's sign-off."""
    provider = listed["provider"]
    action = review.request_revocation(session, listed["researcher"], provider, "confirmed exclusion")
    session.commit()
    provider.verified_until = utcnow() - timedelta(seconds=1)  # test set-up: the verification has run out
    assert expiry.expire_verification(session, "system:test", provider, utcnow())
    assert provider.verification_status == VerificationStatus.EXPIRED
    review.sign_off_revocation(session, listed["lead"], action)
    session.commit()
    assert (provider.verification_status, provider.listing_status) == (VerificationStatus.REVOKED,
                                                                       ListingStatus.DELISTED)
    [event] = session.scalars(select(AuditEvent).where(AuditEvent.action == "verification.revoked")).all()
    assert event.before == {"verification_status": "expired", "listing_status": "listed"}
    assert event.after == {"verification_status": "revoked", "listing_status": "delisted"}


def test_a_revoked_provider_is_verified_again_only_through_a_signed_off_reinstatement(session, listed, make_account):
    provider = listed["provider"]
    action = review.request_revocation(session, listed["researcher"], provider, "confirmed exclusion")
    review.sign_off_revocation(session, listed["lead"], action)
    session.commit()
    # Straight to grant with a listing request's decision: refused, nothing changes.
    update = submitted(session, listed["member"], provider, SubmissionKind.UPDATE)
    in_review(session, listed["researcher"], update)
    assess_all(session, listed["researcher"], update)
    decision = Decision(outcome=DecisionOutcome.APPROVED, reason_codes=[], catalogue_id=update.catalogue_id,
                        decided_by_id=listed["researcher"].id, decided_at=utcnow(), status=DecisionStatus.FINAL)
    update.decisions.append(decision)
    session.flush()
    with pytest.raises(InvalidTransition, match="only a reinstatement review \\(with a second sign-off\\)"):
        provider_status.grant(session, "system:test", provider, decision, utcnow(), "test")
    assert (provider.verification_status, provider.listing_status) == (VerificationStatus.REVOKED,
                                                                       ListingStatus.DELISTED)
    session.rollback()
    # Through a reinstatement, decided and signed off by a second researcher: verified and listed again.
    reinstatement = review.open_reinstatement(session, listed["researcher"], provider, POLICY, "cleared")
    session.commit()
    in_review(session, listed["researcher"], reinstatement)
    assess_all(session, listed["researcher"], reinstatement)
    review.decide(session, listed["researcher"], reinstatement, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    assert provider.verification_status == VerificationStatus.REVOKED  # waits for the second sign-off
    review.sign_off(session, listed["lead"], reinstatement, POLICY, None)
    assert (provider.verification_status, provider.listing_status) == (VerificationStatus.VERIFIED,
                                                                       ListingStatus.LISTED)
