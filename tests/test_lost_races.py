"""A decision, a sign-off or a profile change that loses a race to another writer of the same provider ends in the
conflict message with nothing of it written, whichever statement loses (an explicit flush, the autoflush
before a query, the flush in commit). Two threads with their own sessions, as two requests would be."""
from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from backoffice.models import (
    Account,
    AdvertisingStatus,
    AuditEvent,
    Decision,
    DecisionOutcome,
    DecisionStatus,
    ListingStatus,
    Provider,
    Role,
    Submission,
    SubmissionKind,
    SubmissionState,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, concurrency, profile, review
from backoffice.services.errors import LOST_RACE_MESSAGE, DomainError
from backoffice.txn import BackofficeSession
from tests.concurrency import own_session
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted

ROUNDS = int(os.environ.get("RACE_ROUNDS", "50"))
CONFLICT_MESSAGES = {concurrency.CONFLICT_MESSAGE, LOST_RACE_MESSAGE}


@pytest.fixture
def team(session, make_account):
    publish_catalogue(session)
    return {"researcher": make_account(Role.RESEARCHER), "lead": make_account(Role.RESEARCH_LEAD)}


def _listed_provider(session, make_provider, make_account, n: int) -> Provider:
    provider = make_provider(
        public_name=f"Race Recovery {n}", verification_status=VerificationStatus.VERIFIED,
        verified_at=utcnow() - timedelta(days=10), verified_until=utcnow() + timedelta(days=100),
        listing_status=ListingStatus.LISTED, advertising_status=AdvertisingStatus.PENDING)
    provider.member = provider_member(session, make_account, provider)
    return provider


def _update_request(session, team, provider, phone: str) -> Submission:
    update = in_review(session, team["researcher"],
                       submitted(session, provider.member, provider, SubmissionKind.UPDATE, {"phone": phone}))
    assess_all(session, team["researcher"], update)
    return update


def _awaiting_signoff(session, team, provider) -> Submission:
    application = in_review(session, team["researcher"],
                            submitted(session, provider.member, provider, SubmissionKind.ADVERTISER_APPLICATION, {}))
    assess_all(session, team["researcher"], application)
    review.decide(session, team["researcher"], application, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    return application


def _events(session, entity_type: str, entity_id) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity_type == entity_type, AuditEvent.entity_id == str(entity_id)).order_by(AuditEvent.seq)))


def _racing(app, sides: dict):
    """Run each side (name -> read(own session) returning write()) in its own thread with its own session: each
    reads what it needs, all meet at a barrier, then each writes and commits. Returns {name: "done" or the
    message of its refusal} and whatever else was raised, which must be nothing."""
    barrier = threading.Barrier(len(sides))
    results: dict[str, str] = {}
    crashes: list[BaseException] = []

    def run(name):
        try:
            with app.app_context(), own_session() as own:
                write = sides[name](own)
                barrier.wait(timeout=20)
                try:
                    write()
                    own.commit()
                    results[name] = "done"
                except DomainError as exc:
                    own.rollback()
                    results[name] = str(exc)
        except BaseException as exc:  # noqa: BLE001 - a crash must never pass for a refusal
            crashes.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in sides]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, crashes


def test_a_decision_racing_a_signoff_on_the_same_provider_never_half_writes(app, session, team, make_provider,
                                                                           make_account):
    researcher_id, lead_id = team["researcher"].id, team["lead"].id
    lost = {"decide": 0, "sign_off": 0}
    for n in range(ROUNDS):
        provider = _listed_provider(session, make_provider, make_account, n)
        application = _awaiting_signoff(session, team, provider)
        update = _update_request(session, team, provider, f"434-555-{n:04d}")
        provider_id, application_id, update_id = provider.id, application.id, update.id

        def decide(own):
            actor, sub = own.get(Account, researcher_id), own.get(Submission, update_id)  # noqa: B023 - raced and awaited in this round
            sub.provider.members, sub.assessments, sub.decisions  # noqa: B018 - the page has read these
            return lambda: review.decide(own, actor, sub, DecisionOutcome.APPROVED, [], "", "", POLICY, None)

        def sign_off(own):
            actor, sub = own.get(Account, lead_id), own.get(Submission, application_id)  # noqa: B023 - raced and awaited in this round
            sub.provider.members, sub.assessments, sub.decisions  # noqa: B018
            return lambda: review.sign_off(own, actor, sub, POLICY, None)

        results, errors = _racing(app, {"decide": decide, "sign_off": sign_off})
        assert errors == [], f"round {n}: {errors!r}"
        assert set(results.values()) <= {"done"} | CONFLICT_MESSAGES, results
        session.expire_all()
        provider = session.get(Provider, provider_id)
        update, application = session.get(Submission, update_id), session.get(Submission, application_id)
        if results["decide"] == "done":
            assert update.state == SubmissionState.APPROVED and provider.phone == f"434-555-{n:04d}"
        else:
            lost["decide"] += 1
            assert update.state == SubmissionState.IN_REVIEW and update.decisions == []
            assert provider.phone != f"434-555-{n:04d}"
            assert "decision.recorded" not in _events(session, "submission", update_id) + [
                e for d in update.decisions for e in _events(session, "decision", d.id)]
        pending = review.pending_decision(application) or review.final_decision(application)
        if results["sign_off"] == "done":
            assert pending.status == DecisionStatus.FINAL and provider.advertising_status == AdvertisingStatus.ACTIVE
        else:
            lost["sign_off"] += 1
            assert pending.status == DecisionStatus.AWAITING_SIGNOFF and pending.second_signoff_by_id is None
            assert provider.advertising_status == AdvertisingStatus.PENDING
            assert "decision.signed_off" not in _events(session, "decision", pending.id)
            # Reload and try again, as the message says: it goes through.
            review.sign_off(session, session.get(Account, lead_id), application, POLICY, None)
            session.commit()
    print(f"\n{ROUNDS} rounds of decision against sign-off: lost by the decision {lost['decide']}, "
          f"by the sign-off {lost['sign_off']}")
    assert audit.verify_chain(session).ok


def test_two_profile_changes_racing_on_one_provider_keep_exactly_one(app, session, team, make_provider,
                                                                   make_account):
    researcher_id = team["researcher"].id
    conflicts = 0
    for n in range(ROUNDS):
        provider = _listed_provider(session, make_provider, make_account, n)
        first = _update_request(session, team, provider, f"434-555-1{n:03d}")
        second = _update_request(session, team, provider, f"434-555-2{n:03d}")
        provider_id, ids = provider.id, {"first": first.id, "second": second.id}

        def deciding(name):
            def read(own):
                actor, sub = own.get(Account, researcher_id), own.get(Submission, ids[name])  # noqa: B023 - raced and awaited in this round
                sub.provider.members, sub.provider.locations, sub.assessments, sub.decisions  # noqa: B018
                return lambda: review.decide(own, actor, sub, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
            return read

        results, errors = _racing(app, {"first": deciding("first"), "second": deciding("second")})
        assert errors == [], f"round {n}: {errors!r}"
        assert set(results.values()) <= {"done"} | CONFLICT_MESSAGES, results
        assert "done" in results.values()
        session.expire_all()
        provider = session.get(Provider, provider_id)
        applied = [e for e in session.scalars(select(AuditEvent).where(
            AuditEvent.provider_id == provider_id, AuditEvent.action == "provider.profile_applied"))]
        for name, outcome in results.items():
            sub = session.get(Submission, ids[name])
            if outcome == "done":
                assert sub.state == SubmissionState.APPROVED
            else:
                conflicts += 1
                assert sub.state == SubmissionState.IN_REVIEW and sub.decisions == []
        winners = [name for name, outcome in results.items() if outcome == "done"]
        # The phone is the last winner's; one profile event per approval that went through, none for a loser.
        assert len(applied) == len(winners)
        assert provider.phone in {f"434-555-{'1' if w == 'first' else '2'}{n:03d}" for w in winners}
    print(f"\n{ROUNDS} rounds of two profile changes: {conflicts} lost with the conflict message")
    assert audit.verify_chain(session).ok


def test_a_decision_that_loses_the_race_at_the_provider_shows_the_conflict_message(client, session, team,
                                                                                 make_provider, make_account):
    """The case page's decision loads the provider, then, before it writes anything, another transaction changes
    that provider and commits: the POST answers with the conflict message and nothing of it is kept."""
    provider = _listed_provider(session, make_provider, make_account, 1)
    update = _update_request(session, team, provider, "434-555-0199")
    provider_id, update_id = provider.id, update.id
    fired = []

    def someone_else_changes_the_provider(flushing, flush_context, instances):
        # Once, at the request's first write after it has read the provider (its claim on the request).
        loaded = any(isinstance(o, Provider) and o.id == provider_id for o in flushing.identity_map.values())
        if fired or not loaded or flushing is not session():
            return
        fired.append(True)
        with own_session() as other:
            profile.apply(other, "system:test", other.get(Provider, provider_id),
                          {"website": "https://elsewhere.example.org"}, "a concurrent change")
            other.commit()

    login(client, team["researcher"])
    case_url = f"/admin/review/case/{update_id}"
    page = client.get(case_url).get_data(as_text=True)
    version = page.split('name="version" type="hidden" value="')[1].split('"')[0]
    events_before = session.scalar(select(func.max(AuditEvent.seq)))
    session.expire_all()
    event.listen(BackofficeSession, "before_flush", someone_else_changes_the_provider)
    try:
        response = client.post(f"{case_url}/decide", data={"version": version, "outcome": "approved"})
    finally:
        event.remove(BackofficeSession, "before_flush", someone_else_changes_the_provider)
    assert fired, "the concurrent change never ran"
    assert response.status_code == 409
    text = visible_text(response.get_data(as_text=True))
    assert LOST_RACE_MESSAGE in text or concurrency.CONFLICT_MESSAGE in text
    session.expire_all()
    update, provider = session.get(Submission, update_id), session.get(Provider, provider_id)
    assert update.state == SubmissionState.IN_REVIEW and update.decisions == []
    assert provider.website == "https://elsewhere.example.org" and provider.phone != "434-555-0199"
    actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.seq > events_before)))
    assert actions == ["provider.profile_applied"]  # the concurrent change only
    assert session.scalar(select(func.count()).select_from(Decision).where(Decision.submission_id == update_id)) == 0
