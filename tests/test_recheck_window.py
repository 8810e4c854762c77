"""A re-check window completes however its checks' results arrive: the provider's next due date moves once
every network check of the window is recorded, even when the last two finish at the same moment."""
from __future__ import annotations

import threading

from backoffice.checks.result import CheckResult
from backoffice.models import CheckOutcome, Provider
from backoffice.services import rechecks
from tests.concurrency import race


def _record(session, provider_id, check, window):
    rechecks.record(session, "system:test", provider_id, check, rechecks.run_key(provider_id, check, window),
                    CheckResult(CheckOutcome.PASS, f"{check.value} fine"), rechecks.utcnow(),
                    auto_suspend=False, cadence_days=30)
    session.commit()


def test_recording_the_checks_one_by_one_completes_the_window_at_the_last(session, make_provider):
    provider = make_provider()
    for check in rechecks.NETWORK_CHECKS[:-1]:
        _record(session, provider.id, check, "manual-1")
        session.refresh(provider)
        assert provider.last_rechecked_at is None and provider.recheck_due_at is None
    _record(session, provider.id, rechecks.NETWORK_CHECKS[-1], "manual-1")
    session.refresh(provider)
    assert provider.last_rechecked_at is not None
    assert (provider.recheck_due_at - provider.last_rechecked_at).days == 30


def test_the_last_two_checks_finishing_together_still_complete_the_window(app, session, make_provider,
                                                                         monkeypatch):
    provider = make_provider()
    first, *racing = rechecks.NETWORK_CHECKS
    _record(session, provider.id, first, "sweep-1")

    # Both racers wait here after writing their run and before counting, as long as the other lets them:
    # without the lock both count two of three runs and neither completes the window.
    barrier = threading.Barrier(2)
    complete = rechecks._complete_window

    def meet_then_complete(*args, **kwargs):
        try:
            barrier.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass  # the other racer is held by the lock until this one commits: that is the point
        return complete(*args, **kwargs)

    monkeypatch.setattr(rechecks, "_complete_window", meet_then_complete)
    outcomes, errors = race(app, lambda own, check: _record(own, provider.id, check, "sweep-1"), racing)
    assert errors == [] and outcomes == ["done", "done"]
    session.expire_all()
    provider = session.get(Provider, provider.id)
    assert provider.last_rechecked_at is not None and provider.recheck_due_at is not None
