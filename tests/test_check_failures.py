"""Every check ends in a recorded run, whatever its source does: through a real worker on the configured broker.

A registry that cannot be resolved, a closed port, an address the outbound guard refuses, an answer that is not
a registry answer, an answer the parser never foresaw, and a registry that keeps failing until the retries run
out: each gives one NPI run with outcome error and a summary that names the reason, and the provider's re-check
window completes, so "last re-checked" is set.
"""
from __future__ import annotations

import json
import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from backoffice.dispatch import after_commit
from backoffice.extensions import db
from backoffice.models import CheckKind, CheckOutcome, CheckRun, ListingStatus, Location, Provider, utcnow
from backoffice.services import rechecks
from tasks.checks import recheck_sweep
from tests.celery_helpers import start_celery  # noqa: F401 (fixture)
from tests.servers import LocalServer, recorded_nppes_records

# Recorded in the NPI Registry (data/public): Peach State Medical Practice, 1414 Walnut Street, Philadelphia.
VALID_NPI = "1174270805"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings(nppes_url: str, **extra) -> dict:
    return {"OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS": "1", "OUTBOUND_PER_HOST_INTERVAL_MS": "1",
            "OUTBOUND_CONNECT_TIMEOUT_SECONDS": "2", "OUTBOUND_TOTAL_TIMEOUT_SECONDS": "3",
            "NPPES_API_URL": nppes_url, "CHECK_MAX_RETRIES": "2", "CHECK_RETRY_BACKOFF_SECONDS": "0", **extra}


def listed_with_npi(make_provider, name: str, npi: str = VALID_NPI) -> Provider:
    """A listed provider due for its re-check, with no website (that check warns without the network)."""
    provider = make_provider(public_name=name, legal_name=name, website=None, npi=npi,
                             listing_status=ListingStatus.LISTED)
    provider.locations[0:1] = [Location(street1="1414 Walnut Street", city="Philadelphia", state="PA", zip="19102")]
    db.session.commit()
    return provider


def wait_for_windows(session, providers: list[Provider], timeout: float = 90) -> None:
    """Until every provider's window has completed (all three network checks recorded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.rollback()
        if all(session.get(Provider, p.id).last_rechecked_at is not None for p in providers):
            return
        time.sleep(0.2)
    runs = session.execute(select(CheckRun.provider_id, CheckRun.check, CheckRun.outcome, CheckRun.summary)).all()
    raise AssertionError(f"the re-check windows did not complete; runs: {runs}")


def npi_runs(session, provider: Provider) -> list[CheckRun]:
    return list(session.scalars(select(CheckRun).where(CheckRun.provider_id == provider.id,
                                                       CheckRun.check == CheckKind.NPI)))


def sweep(session) -> None:
    after_commit(session, recheck_sweep)
    session.commit()


def assert_one_error_run(session, provider: Provider, *reason: str) -> CheckRun:
    runs = npi_runs(session, provider)
    assert len(runs) == 1, [(r.outcome, r.summary) for r in runs]
    run = runs[0]
    assert run.outcome == CheckOutcome.ERROR, run.summary
    for words in reason:
        assert words in run.summary, run.summary
    refreshed = session.get(Provider, provider.id)
    assert refreshed.last_rechecked_at is not None
    assert refreshed.recheck_due_at - utcnow() > timedelta(days=29)
    # Every network check of the window ran once; the other two do not depend on the registry.
    checks = {r.check for r in session.scalars(select(CheckRun).where(CheckRun.provider_id == provider.id))}
    assert checks == set(rechecks.NETWORK_CHECKS)
    return run


@pytest.mark.parametrize("where, reason", [
    ("https://npi-registry.unresolvable.invalid/api/", ["NPI Registry could not be reached",
                                                       "npi-registry.unresolvable.invalid could not be resolved"]),
    ("closed port", ["NPI Registry could not be reached", "refused the connection"]),
    ("http://10.20.30.40/api/", ["NPI Registry was not asked", "non-global", "10.20.30.40"]),
], ids=["unresolvable host", "closed port", "refused by the outbound guard"])
def test_a_registry_that_cannot_be_reached_gives_one_error_run_and_the_window_completes(
        session, make_provider, start_celery, where, reason):
    url = f"http://127.0.0.1:{free_port()}/api/" if where == "closed port" else where
    provider = listed_with_npi(make_provider, "Peach State Medical Practice")
    worker = start_celery("worker", **settings(url))
    sweep(session)
    wait_for_windows(session, [provider])
    run = assert_one_error_run(session, provider, *reason)
    assert run.evidence["reason"] == run.summary
    log = worker.log.read_text()
    assert "UnpickleableExceptionWrapper" not in log and "raised unexpected" not in log
    db.session.rollback()


def test_a_registry_answer_that_is_not_understood_or_keeps_failing_still_ends_in_a_run(
        session, make_provider, start_celery):
    """One registry, three answers by NPI: a page of HTML, an answer the parser never foresaw (a `basic` that is
    a list), and 503 every time, which is retried CHECK_MAX_RETRIES times and then recorded."""
    record = recorded_nppes_records()[VALID_NPI]
    numbers = {"not_json": "1234567893", "unforeseen": "1245319599", "unavailable": "1982609772"}
    hits: dict[str, int] = {}

    def answer(path: str, headers: dict):
        number = path.split("number=", 1)[1].split("&")[0]
        hits[number] = hits.get(number, 0) + 1
        if number == numbers["not_json"]:
            return 200, {"Content-Type": "text/html"}, b"<html>Service moved</html>"
        if number == numbers["unforeseen"]:
            body = {"result_count": 1, "results": [{**record, "number": number, "basic": ["not", "an", "object"]}]}
            return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()
        return 503, {"Content-Type": "text/plain"}, b"down for maintenance"

    registry = LocalServer(answer)
    try:
        providers = {kind: listed_with_npi(make_provider, f"Clinic {kind}", npi) for kind, npi in numbers.items()}
        worker = start_celery("worker", **settings(registry.url(path="/api/")))
        sweep(session)
        wait_for_windows(session, list(providers.values()))

        assert_one_error_run(session, providers["not_json"], "NPPES answer not understood", "not JSON")
        unforeseen = assert_one_error_run(session, providers["unforeseen"], "The NPI check failed unexpectedly",
                                          "AttributeError")
        assert unforeseen.evidence["exception"] == "AttributeError"
        unavailable = assert_one_error_run(session, providers["unavailable"], "after 2 retries",
                                           "NPI Registry could not be reached", "NPPES answered 503")
        assert unavailable.evidence["error"] == "http_status"
        assert hits[numbers["unavailable"]] == 3  # the first try and two retries
        assert hits[numbers["not_json"]] == hits[numbers["unforeseen"]] == 1  # nothing to gain from a retry

        log = worker.log.read_text()
        # The unforeseen failure is in the worker's log with its traceback, and names the run it recorded.
        assert "Traceback (most recent call last)" in log and "AttributeError" in log
        assert f"npi:{providers['unforeseen'].id}:" in log
        assert "UnpickleableExceptionWrapper" not in log
    finally:
        registry.close()
    db.session.rollback()
