"""Re-checks end to end: a real worker on the configured broker, real HTTP(S) servers on 127.0.0.1.

A worker killed mid-check, on each broker: tests/test_work_delivery.py."""
from __future__ import annotations

import json
import socket
import time

import pytest
from sqlalchemy import func, select

from backoffice.checks import exclusion_lists
from backoffice.dispatch import after_commit, send_work
from backoffice.extensions import db
from backoffice.models import (
    AdvertisingStatus,
    CheckKind,
    CheckRun,
    Finding,
    ListingStatus,
    Location,
    Provider,
    VerificationStatus,
    Work,
    WorkState,
    utcnow,
)
from backoffice.services import screening
from tasks.checks import recheck_sweep
from tests.celery_helpers import start_celery  # noqa: F401 (fixture)
from tests.servers import LocalServer, fake_nppes, html_page, make_certificates, redirect, tls_context
from tests.test_exclusions import HEADER

HOSTS = ["fine.clinic.test", "gone.clinic.test", "moved.clinic.test", "renamed.clinic.test", "refused.clinic.test",
         "elsewhere.test", "slow.clinic.test"]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"), HOSTS)


@pytest.fixture
def sites(certificates):
    """One HTTPS server answering for every test host by its Host header."""
    ca, cert, key = certificates
    routes = {}
    server = LocalServer(lambda path, headers: routes.get(headers.get("Host", "").split(":")[0],
                                                          lambda p: html_page("?", 404))(path),
                         tls_context(cert, key))
    server.routes = routes
    server.ca = ca
    yield server
    server.close()


@pytest.fixture
def registry():
    server = fake_nppes()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_settings(sites, registry, **extra) -> dict:
    return {
        "OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS": "1",
        "OUTBOUND_HOST_OVERRIDES": json.dumps({h: "127.0.0.1" for h in HOSTS}),
        "OUTBOUND_CA_BUNDLE": str(sites.ca),
        "OUTBOUND_PER_HOST_INTERVAL_MS": "5",
        "NPPES_API_URL": registry.url(path="/api/"),
        "CHECK_MAX_RETRIES": "0",
        **extra,
    }


def listed(make_provider, name, website, **fields) -> Provider:
    provider = make_provider(public_name=name, legal_name=fields.pop("legal_name", name), website=website,
                             listing_status=ListingStatus.LISTED, **fields)
    return provider


def wait_for_runs(session, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.rollback()
        if session.scalar(select(func.count()).select_from(CheckRun)) >= expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {session.scalar(select(func.count()).select_from(CheckRun))} of {expected} runs")


def outcomes(session, provider) -> dict[str, str]:
    runs = session.scalars(select(CheckRun).where(CheckRun.provider_id == provider.id)).all()
    return {run.check.value: run.outcome.value for run in runs}


def subjects(session, provider) -> set[str]:
    return set(session.scalars(select(Finding.subject_key).where(Finding.provider_id == provider.id)))


def test_a_sweep_rechecks_every_listed_provider_end_to_end(app, session, make_provider, start_celery, sites, registry,
                                                          tmp_path):
    port = sites.port
    sites.routes.update({
        "fine.clinic.test": lambda p: html_page("<h1>Peach State Medical Practice</h1>"),
        "gone.clinic.test": lambda p: html_page("Not here any more", 404),
        "moved.clinic.test": lambda p: redirect(f"https://elsewhere.test:{port}/"),
        "elsewhere.test": lambda p: html_page("Lakeside Recovery (a different business)"),
        "renamed.clinic.test": lambda p: html_page("Sunrise Wellness: new owners, new name"),
    })
    fine = listed(make_provider, "Peach State Medical Practice", f"https://fine.clinic.test:{port}/",
                  legal_name="Peach State Medical Practice, P.C.", npi="1174270805",
                  advertising_status=AdvertisingStatus.ACTIVE, verification_status=VerificationStatus.VERIFIED)
    fine.locations[0:1] = [Location(street1="1414 Walnut Street", city="Philadelphia", state="PA", zip="19102")]
    gone = listed(make_provider, "Gone Clinic", f"https://gone.clinic.test:{port}/")
    moved = listed(make_provider, "Moved Clinic", f"https://moved.clinic.test:{port}/", npi="1999999984",
                   advertising_status=AdvertisingStatus.ACTIVE, verification_status=VerificationStatus.VERIFIED)
    renamed = listed(make_provider, "Harbor Recovery Center", f"https://renamed.clinic.test:{port}/")
    refused = listed(make_provider, "Refused Clinic", f"https://refused.clinic.test:{free_port()}/")
    unlisted = make_provider(public_name="Not Listed")
    leie = tmp_path / "2601EXCL.csv"
    leie.write_text(HEADER + '"","","","GONE CLINIC INC","","","","0000000000","","","RICHMOND","VA","","1128b7",'
                    '"20250115","00000000","00000000","",""\n')
    screening.import_file(session, "system:test", exclusion_lists.read(leie), None)
    session.commit()

    start_celery("worker", **worker_settings(sites, registry, AUTO_SUSPEND_ON_CRITICAL="1"))
    started = time.monotonic()
    after_commit(session, recheck_sweep)
    session.commit()
    wait_for_runs(session, 15)
    elapsed = time.monotonic() - started

    assert outcomes(session, fine) == {"website": "pass", "npi": "pass", "exclusion": "pass"}
    assert subjects(session, fine) == set()
    assert outcomes(session, gone)["website"] == "fail" and "website:http_404" in subjects(session, gone)
    # The name and state match on the imported list is a probable match for a researcher to judge.
    assert outcomes(session, gone)["exclusion"] == "warn"
    assert any(s.startswith("exclusion:") for s in subjects(session, gone))
    assert "website:off_domain" in subjects(session, moved)
    assert "website:not_named" in subjects(session, renamed)
    assert "website:connection_refused" in subjects(session, refused)
    assert outcomes(session, unlisted) == {}
    # The unknown NPI is critical, and critical findings suspend listing and advertising (config on).
    assert "npi:not_found" in subjects(session, moved)
    session.refresh(moved)
    assert (moved.listing_status, moved.advertising_status) == (ListingStatus.SUSPENDED, AdvertisingStatus.SUSPENDED)
    session.refresh(fine)
    assert fine.listing_status == ListingStatus.LISTED and fine.last_rechecked_at is not None
    assert (fine.recheck_due_at - utcnow()).days >= 29
    print(f"\n15 checks for 5 providers through one worker in {elapsed:.2f} s (incl. sweep and worker pick-up)")

    # Running it all again changes nothing: nothing is due, and a re-delivered task finds its run.
    runs, found = session.scalar(select(func.count()).select_from(CheckRun)), session.scalar(select(func.count()).select_from(Finding))
    key = session.scalar(select(CheckRun.idempotency_key).where(CheckRun.provider_id == gone.id,
                                                                CheckRun.check == CheckKind.WEBSITE))
    done = session.scalar(select(Work).where(Work.idempotency_key == key))
    assert done.state == WorkState.DONE
    after_commit(session, recheck_sweep)
    session.commit()
    assert send_work([(done.id, done.kind)]) == [done.id]
    time.sleep(2)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(CheckRun)) == runs
    assert session.scalar(select(func.count()).select_from(Finding)) == found
    db.session.rollback()
