"""A sweep is never aborted by one edit: a provider changed by someone else while the sweep works on it is
retried (or left for the next pass), and every other provider is still acted on, each with its own events."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import date, timedelta

from sqlalchemy import event, func, select

from backoffice.models import (
    AdvertisingStatus,
    AuditEvent,
    CheckKind,
    Finding,
    FindingSeverity,
    Licence,
    ListingStatus,
    Provider,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, profile
from backoffice.services.errors import LostRace
from backoffice.txn import BackofficeSession
from tasks.checks import expiry_sweep
from tasks.sweeps import verification_expiry_sweep
from tests.concurrency import own_session
from tests.conftest import BACKEND


def _verified(make_provider, n: int, days_left: int, advertising=AdvertisingStatus.NONE, **extra) -> Provider:
    now = utcnow()
    return make_provider(public_name=f"Sweep Recovery {n}", verification_status=VerificationStatus.VERIFIED,
                         verified_at=now - timedelta(days=365), verified_until=now + timedelta(days=days_left),
                         listing_status=ListingStatus.LISTED, advertising_status=advertising, **extra)


@contextmanager
def edited_while_swept(provider_id: int, times: int):
    """Whenever the sweep is about to write this provider (up to `times` times), someone else changes the
    provider's profile and commits first, as a researcher approving an update at that moment would."""
    edits: list[str] = []
    editing = threading.local()

    def before_flush(flushing, flush_context, instances):
        if getattr(editing, "on", False) or len(edits) >= times:
            return
        if not any(isinstance(o, Provider) and o.id == provider_id for o in flushing.dirty):
            return
        editing.on = True
        try:
            with own_session() as other:
                phone = f"434-555-{len(edits):04d}"
                profile.apply(other, "system:test", other.get(Provider, provider_id), {"phone": phone},
                              "an edit during the sweep")
                other.commit()
                edits.append(phone)
        finally:
            editing.on = False

    event.listen(BackofficeSession, "before_flush", before_flush)
    try:
        yield edits
    finally:
        event.remove(BackofficeSession, "before_flush", before_flush)


def _actions(session, provider_id: int) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.provider_id == provider_id)
                                .order_by(AuditEvent.seq)))


def test_a_provider_edited_during_the_verification_sweep_is_expired_on_retry_and_the_others_regardless(
        session, make_provider):
    providers = [_verified(make_provider, n, -1, AdvertisingStatus.ACTIVE if n % 2 else AdvertisingStatus.NONE)
                 for n in range(5)]
    current = _verified(make_provider, 9, 30)
    raced = providers[2]
    with edited_while_swept(raced.id, times=1) as edits:
        assert verification_expiry_sweep() == 5
    assert edits == ["434-555-0000"]
    session.expire_all()
    for provider in providers:
        provider = session.get(Provider, provider.id)
        assert provider.verification_status == VerificationStatus.EXPIRED
        advertiser = provider.advertising_status == AdvertisingStatus.SUSPENDED
        expected = ["verification.expired"] + (["advertising.suspended"] if advertiser else []) + ["finding.opened"]
        if provider.id == raced.id:
            # The edit that won the race, then the sweep's lapse, once, on top of it.
            assert provider.phone == "434-555-0000"
            expected = ["provider.profile_applied"] + expected
        assert _actions(session, provider.id) == expected
    assert session.get(Provider, current.id).verification_status == VerificationStatus.VERIFIED
    assert audit.verify_chain(session).ok


def test_a_provider_that_keeps_losing_is_left_for_the_next_pass_and_the_others_are_expired(session, make_provider):
    providers = [_verified(make_provider, n, -1) for n in range(4)]
    raced = providers[1]
    with edited_while_swept(raced.id, times=3) as edits:
        assert verification_expiry_sweep() == 3
    assert len(edits) == 3
    session.expire_all()
    assert session.get(Provider, raced.id).verification_status == VerificationStatus.VERIFIED
    assert [p.id for p in providers if session.get(Provider, p.id).verification_status
            == VerificationStatus.EXPIRED] == [p.id for p in providers if p is not raced]
    assert "verification.expired" not in _actions(session, raced.id)

    assert verification_expiry_sweep() == 1  # the next pass, with nobody editing
    session.expire_all()
    assert session.get(Provider, raced.id).verification_status == VerificationStatus.EXPIRED
    assert _actions(session, raced.id).count("verification.expired") == 1
    assert audit.verify_chain(session).ok


def test_a_provider_edited_during_the_licence_expiry_sweep_is_lapsed_on_retry_and_the_others_regardless(
        session, make_provider):
    yesterday = date.today() - timedelta(days=1)
    providers = [_verified(make_provider, n, 200, AdvertisingStatus.ACTIVE) for n in range(4)]
    for n, provider in enumerate(providers):
        provider.licences.append(Licence(state="VA", number=f"L-{n}", licence_type="outpatient", expires_on=yesterday))
    session.commit()
    raced = providers[2]
    with edited_while_swept(raced.id, times=1) as edits:
        result = expiry_sweep()
    assert result["lapsed"] == 4 and len(edits) == 1
    session.expire_all()
    for provider in providers:
        provider = session.get(Provider, provider.id)
        assert (provider.verification_status, provider.advertising_status) == (VerificationStatus.EXPIRED,
                                                                              AdvertisingStatus.SUSPENDED)
        actions = _actions(session, provider.id)
        assert [a for a in actions if a != "provider.profile_applied"] == [
            "verification.expired", "advertising.suspended", "finding.opened"]
        assert ("provider.profile_applied" in actions) == (provider.id == raced.id)
    findings = session.scalars(select(Finding).where(Finding.check == CheckKind.LICENCE_EXPIRY)).all()
    assert sorted(f.provider_id for f in findings) == sorted(p.id for p in providers)
    assert {f.severity for f in findings} == {FindingSeverity.CRITICAL}
    assert audit.verify_chain(session).ok


def test_edits_from_another_thread_throughout_the_sweep_never_abort_it(app, session, make_provider):
    """A real second writer: a thread keeps changing one provider as fast as it can while the sweep runs."""
    providers = [_verified(make_provider, n, -1, AdvertisingStatus.ACTIVE) for n in range(30)]
    raced_id = providers[10].id
    stop, edits, crashes = threading.Event(), [], []

    def keep_editing():
        with app.app_context():
            while not stop.is_set():
                try:
                    with own_session() as other:
                        profile.apply(other, "system:test", other.get(Provider, raced_id),
                                      {"phone": f"434-555-{len(edits) % 10000:04d}"}, "edits all along")
                        other.commit()
                        edits.append(1)
                except LostRace:
                    pass  # the editor may lose to the sweep: it gets the conflict message, that is fine
                except Exception as exc:  # noqa: BLE001
                    crashes.append(exc)
                time.sleep(0.001)

    editor = threading.Thread(target=keep_editing)
    editor.start()
    try:
        first = verification_expiry_sweep()
    finally:
        stop.set()
        editor.join(30)
    second = verification_expiry_sweep()
    print(f"\n{len(edits)} edits committed during the sweep; expired {first} in the pass, {second} in the next")
    assert crashes == []
    if BACKEND == "postgresql":
        assert edits  # the editor really wrote during the sweep (SQLite's one writer mostly keeps it waiting)
    assert first + second == 30 and first >= 29
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Provider).where(
        Provider.verification_status == VerificationStatus.EXPIRED)) == 30
    for provider in providers:
        assert [a for a in _actions(session, provider.id) if a != "provider.profile_applied"] == [
            "verification.expired", "advertising.suspended", "finding.opened"]
    assert audit.verify_chain(session).ok
