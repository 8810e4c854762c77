"""/healthz, /readyz and /metrics: what a load balancer and Prometheus read, and what they never learn.

The probes are anonymous and answer a few fixed words; /metrics is Prometheus text read from the database at
each scrape, served only to the networks or the token the settings admit.
"""
from __future__ import annotations

import math
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

import config
from backoffice.models import (
    AuditVerification,
    CheckKind,
    CheckOutcome,
    CheckRun,
    DeliveryState,
    Finding,
    FindingSeverity,
    FindingState,
    Notification,
    utcnow,
)
from tests.conftest import BACKEND
from tests.test_startup import closed_port

PROBE_WORDS = {"ok", "unavailable", "degraded"}
PUBLIC_ADDRESS = "203.0.113.9"


def probe(app, path: str, remote_addr: str = "127.0.0.1"):
    return app.test_client().get(path, environ_base={"REMOTE_ADDR": remote_addr})


def assert_reveals_nothing(response, *secrets: str) -> None:
    """Only the fixed keys and words: no host, port, driver, exception text or version."""
    body = response.get_data(as_text=True)
    assert set(response.json.values()) <= PROBE_WORDS, body
    for secret in ("Traceback", "Error", "refused", "psycopg", "sqlite", "redis", "version", *secrets):
        assert secret.lower() not in body.lower(), body


# -- /healthz and /readyz ----------------------------------------------------------------------------------


def test_healthz_says_the_process_is_up_to_anyone(app):
    response = probe(app, "/healthz", PUBLIC_ADDRESS)
    assert response.status_code == 200 and response.json == {"status": "ok"}
    assert response.mimetype == "application/json" and response.headers["Cache-Control"] == "no-store"


def test_readyz_reports_the_database_and_the_broker(app):
    response = probe(app, "/readyz", PUBLIC_ADDRESS)
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok", "broker": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_with_redis_down_is_degraded_but_stays_in_rotation(make_app):
    port = closed_port()
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0")
    with app.app_context():
        response = probe(app, "/readyz", PUBLIC_ADDRESS)
        assert response.status_code == 200
        assert response.json == {"status": "degraded", "database": "ok", "broker": "unavailable"}
        assert_reveals_nothing(response, "127.0.0.1", str(port))


def unreachable_databases(tmp_path) -> dict[str, str]:
    port = closed_port()
    return {"sqlite": f"sqlite:///{tmp_path}/no-such-folder/backoffice.db",
            "postgresql": f"postgresql://app:s3cret@127.0.0.1:{port}/backoffice"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_readyz_answers_503_when_the_database_is_unreachable_and_says_no_more(make_app, tmp_path, kind):
    url = unreachable_databases(tmp_path)[kind]
    app = make_app(SQLALCHEMY_DATABASE_URI=config.normalise_database_url(url))
    with app.app_context():
        response = probe(app, "/readyz", PUBLIC_ADDRESS)
        assert response.status_code == 503
        assert response.json == {"status": "unavailable", "database": "unavailable", "broker": "ok"}
        assert_reveals_nothing(response, "127.0.0.1", "s3cret", "no-such-folder", "backoffice.db")
        # The process itself is alive: the liveness probe does not restart it for a database outage.
        assert probe(app, "/healthz").json == {"status": "ok"}


# -- /metrics: who may read it -------------------------------------------------------------------------------


def test_metrics_are_refused_to_an_address_outside_the_allowed_networks(app):
    refused = probe(app, "/metrics", PUBLIC_ADDRESS)
    assert refused.status_code == 403
    assert "backoffice_" not in refused.get_data(as_text=True)


def test_metrics_are_served_to_localhost_by_default_outside_production(app):
    response = probe(app, "/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert "# TYPE backoffice_findings_open gauge" in response.get_data(as_text=True)
    assert probe(app, "/metrics", "::1").status_code == 200


def test_production_admits_nobody_until_a_network_or_a_token_is_set(monkeypatch, make_app):
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://backoffice.example.org/")
    monkeypatch.setenv("MAIL_URL", "smtp://backoffice:secret@smtp.example.org:587")
    monkeypatch.setenv("MAIL_FROM", "no-reply@example.org")
    assert config.load("production")["METRICS_ALLOWED_NETWORKS"] == ""
    app = make_app(METRICS_ALLOWED_NETWORKS="")
    with app.app_context():
        assert probe(app, "/metrics").status_code == 403


def test_a_bearer_token_admits_a_scraper_from_anywhere_and_a_wrong_one_does_not(make_app):
    app = make_app(METRICS_ALLOWED_NETWORKS="", METRICS_BEARER_TOKEN="scrape-token-0123456789abcdef")
    with app.app_context():
        client = app.test_client()
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789abcdef"},
                           environ_base={"REMOTE_ADDR": PUBLIC_ADDRESS})
        assert right.status_code == 200 and "backoffice_findings_open" in right.get_data(as_text=True)
        for wrong in ("Bearer scrape-token-0123456789abcdeX", "Basic scrape-token-0123456789abcdef", ""):
            assert client.get("/metrics", headers={"Authorization": wrong},
                              environ_base={"REMOTE_ADDR": PUBLIC_ADDRESS}).status_code == 403


def test_behind_a_local_proxy_the_address_that_counts_is_the_client_it_relays(make_app):
    app = make_app(PROXY_FIX=True, METRICS_ALLOWED_NETWORKS="10.0.0.0/8")
    with app.app_context():
        client = app.test_client()
        relayed = {"REMOTE_ADDR": "127.0.0.1"}
        assert client.get("/metrics", headers={"X-Forwarded-For": PUBLIC_ADDRESS},
                          environ_base=relayed).status_code == 403
        assert client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}, environ_base=relayed).status_code == 200


# -- /metrics: what it says ----------------------------------------------------------------------------------


def scrape(app) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = probe(app, "/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def run(provider, check: CheckKind, outcome: CheckOutcome, started) -> CheckRun:
    return CheckRun(provider_id=provider.id, check=check, outcome=outcome, summary="test run", started_at=started,
                    finished_at=started)


def test_the_figures_match_the_database(app, session, make_provider):
    now = utcnow()
    provider = make_provider()
    session.add_all([
        run(provider, CheckKind.WEBSITE, CheckOutcome.PASS, now - timedelta(hours=1)),
        run(provider, CheckKind.WEBSITE, CheckOutcome.PASS, now - timedelta(hours=20)),
        run(provider, CheckKind.WEBSITE, CheckOutcome.FAIL, now - timedelta(minutes=5)),
        run(provider, CheckKind.NPI, CheckOutcome.ERROR, now - timedelta(hours=2)),
        run(provider, CheckKind.NPI, CheckOutcome.PASS, now - timedelta(days=3)),  # older than a day: not counted
    ])
    session.add_all([
        Notification(recipient_email="a@example.org", kind="decided", subject="s", body="b",
                     created_at=now - timedelta(hours=3), sent_at=now - timedelta(hours=2),
                     delivery_state=DeliveryState.SENT),
        Notification(recipient_email="b@example.org", kind="decided", subject="s", body="b",
                     created_at=now - timedelta(days=5), sent_at=now - timedelta(days=4),
                     delivery_state=DeliveryState.SENT),  # sent days ago
        Notification(recipient_email="c@example.org", kind="decided", subject="s", body="b",
                     created_at=now - timedelta(minutes=30)),
        Notification(recipient_email="d@example.org", kind="decided", subject="s", body="b",
                     created_at=now - timedelta(hours=6), attempts=3, last_error="connection refused by the relay"),
        Notification(recipient_email="e@example.org", kind="decided", subject="s", body="b",
                     created_at=now - timedelta(days=2), attempts=1, delivery_state=DeliveryState.FAILED,
                     failed_at=now - timedelta(days=2), last_error="550 5.1.1 no such user"),  # given up
    ])
    for severity, state in [(FindingSeverity.CRITICAL, FindingState.OPEN), (FindingSeverity.CRITICAL, FindingState.OPEN),
                            (FindingSeverity.WARNING, FindingState.ACKNOWLEDGED),
                            (FindingSeverity.CRITICAL, FindingState.RESOLVED),
                            (FindingSeverity.INFO, FindingState.DISMISSED)]:
        session.add(Finding(provider_id=provider.id, check=CheckKind.WEBSITE, subject_key=f"{severity}-{state}-{now}",
                            severity=severity, state=state, title="t"))
    session.commit()

    samples = scrape(app)
    recent = {key[1]: value for key, value in samples.items() if key[0] == "backoffice_check_runs_last_day"}
    assert len(recent) == len(CheckKind) * len(CheckOutcome)
    assert {labels: value for labels, value in recent.items() if value} == {
        (("check", "website"), ("outcome", "pass")): 2, (("check", "website"), ("outcome", "fail")): 1,
        (("check", "npi"), ("outcome", "error")): 1}
    assert samples[("backoffice_notifications_sent_last_day", ())] == 1
    assert samples[("backoffice_notifications_unsent", ())] == 2
    assert samples[("backoffice_notifications_failed", ())] == 1
    assert samples[("backoffice_notifications_undelivered", ())] == 1
    assert 6 * 3600 <= samples[("backoffice_notifications_oldest_unsent_age_seconds", ())] < 6 * 3600 + 120
    assert {key[1]: value for key, value in samples.items() if key[0] == "backoffice_findings_open"} == {
        (("severity", "info"),): 0, (("severity", "warning"),): 1, (("severity", "critical"),): 2}
    assert samples[("backoffice_audit_last_good_verification_age_seconds", ())] == math.inf
    assert ("backoffice_audit_last_verification_ok", ()) not in samples
    assert 0 <= samples[("backoffice_metrics_collect_seconds", ())] < 5


def test_the_age_of_the_last_good_verification_and_whether_the_latest_was_good(app, session):
    now = utcnow()
    session.add(AuditVerification(started_at=now - timedelta(hours=30), finished_at=now - timedelta(hours=30),
                                  checked=10, ok=True, run_by="system:audit-verification"))
    session.commit()
    samples = scrape(app)
    assert 30 * 3600 <= samples[("backoffice_audit_last_good_verification_age_seconds", ())] < 30 * 3600 + 120
    assert samples[("backoffice_audit_last_verification_ok", ())] == 1

    session.add(AuditVerification(started_at=now - timedelta(hours=1), finished_at=now - timedelta(hours=1),
                                  checked=10, ok=False, broken_seq=4, problem="hash mismatch",
                                  run_by="system:audit-verification"))
    session.commit()
    samples = scrape(app)
    assert 30 * 3600 <= samples[("backoffice_audit_last_good_verification_age_seconds", ())] < 30 * 3600 + 120
    assert samples[("backoffice_audit_last_verification_ok", ())] == 0


def test_the_scrape_reads_the_last_day_of_check_runs_from_an_index(app, session):
    count = ("SELECT \"check\", outcome, count(*) FROM check_run WHERE started_at >= '2026-01-01' "
             "GROUP BY \"check\", outcome")
    if BACKEND == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(row[0] for row in session.execute(text("EXPLAIN " + count)))
    else:
        plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + count)))
    session.rollback()
    assert "ix_check_run_started_check_outcome" in plan, plan


def test_a_scraper_that_asks_for_openmetrics_gets_it(app):
    response = app.test_client().get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200 and response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_the_work_figures_count_open_and_failed_work_by_kind_and_the_work_past_its_lease(app, session):
    from backoffice.models import Work, WorkKind, WorkState

    now = utcnow()

    def row(n, kind, state, created, lease):
        return Work(kind=kind, target_type="provider", target_id=str(n), params={}, idempotency_key=f"k{n}",
                    state=state, attempts=1, max_attempts=5, requested_by="system:test", created_at=created,
                    updated_at=created, lease_expires_at=lease)

    session.add_all([
        row(1, WorkKind.RECHECK_NOW, WorkState.REQUESTED, now - timedelta(minutes=2), now + timedelta(seconds=5)),
        row(2, WorkKind.RECHECK_NOW, WorkState.RUNNING, now - timedelta(hours=2), now - timedelta(minutes=1)),
        row(3, WorkKind.SCHEDULED_CHECK, WorkState.SENT, now - timedelta(minutes=10), now + timedelta(hours=1)),
        row(4, WorkKind.SCHEDULED_CHECK, WorkState.DONE, now - timedelta(days=3), None),
        row(5, WorkKind.SCREENING, WorkState.FAILED, now - timedelta(days=1), None),
    ])
    session.commit()
    samples = scrape(app)
    rows = {labels: value for (name, labels), value in samples.items() if name == "backoffice_work_rows" and value}
    assert rows == {(("kind", "recheck_now"), ("state", "requested")): 1,
                    (("kind", "recheck_now"), ("state", "running")): 1,
                    (("kind", "scheduled_check"), ("state", "sent")): 1,
                    (("kind", "screening"), ("state", "failed")): 1}
    assert 2 * 3600 <= samples[("backoffice_work_oldest_open_age_seconds", (("kind", "recheck_now"),))] < 2 * 3600 + 120
    assert samples[("backoffice_work_oldest_open_age_seconds", (("kind", "screening"),))] == 0
    assert samples[("backoffice_work_past_lease", (("kind", "recheck_now"),))] == 1
    assert samples[("backoffice_work_past_lease", (("kind", "scheduled_check"),))] == 0
