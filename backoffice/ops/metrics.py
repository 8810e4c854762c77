"""Prometheus metrics, read from the database at each scrape.

Gunicorn runs several web processes and Celery several workers: counters kept in one process's memory would
show whichever process answered the scrape. Every figure here is therefore a gauge computed from the rows every
process shares, by a collector that runs its queries when Prometheus asks. Each query is served by an index and
reads a bounded slice (open findings, unsent mail, the last day of check runs), so a scrape stays cheap at 100k
providers and millions of check runs.

Who may scrape: METRICS_ALLOWED_NETWORKS (client addresses, comma-separated networks) or a request carrying
METRICS_BEARER_TOKEN. Production admits nobody until one of them is set.
"""
from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice import unit_of_work
from backoffice.extensions import db
from backoffice.models import (
    OPEN_FINDING_STATES,
    OPEN_WORK_STATES,
    AuditVerification,
    CheckKind,
    CheckOutcome,
    CheckRun,
    DeliveryState,
    Finding,
    FindingSeverity,
    Notification,
    WorkKind,
    WorkState,
    utcnow,
)
from backoffice.services import work
from config import metrics_networks

PREFIX = "backoffice"
# Check runs and mail are counted over this window: a bounded range of an index, however long the history.
RECENT = timedelta(days=1)


# -- who may scrape ------------------------------------------------------------------------------------------


def admitted(config: Mapping, remote_addr: str | None, authorization: str | None) -> bool:
    """A scrape from an allowed network, or one that presents the bearer token (compared in constant time)."""
    token = config.get("METRICS_BEARER_TOKEN") or ""
    if token and authorization and authorization.startswith("Bearer "):
        if hmac.compare_digest(authorization[len("Bearer "):].encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(remote_addr or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in metrics_networks(config.get("METRICS_ALLOWED_NETWORKS") or ""))


# -- what is measured ----------------------------------------------------------------------------------------


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=list(labels))


def _age_seconds(now: datetime, then: datetime | None) -> float:
    """Seconds since `then`; +Inf when it never happened, so an alert on "older than a day" fires for never."""
    return math.inf if then is None else max(0.0, (now - then).total_seconds())


def check_outcomes(session: Session, now: datetime) -> Iterator[Metric]:
    """Check runs started in the last day by check and outcome; every pair is present, zero when none ran."""
    gauge = _gauge("check_runs_last_day", "Check runs started in the last 24 hours, by check and outcome.",
                   ["check", "outcome"])
    counts = dict(((check, outcome), count) for check, outcome, count in session.execute(
        select(CheckRun.check, CheckRun.outcome, func.count())
        .where(CheckRun.started_at >= now - RECENT)
        .group_by(CheckRun.check, CheckRun.outcome)))
    for check in CheckKind:
        for outcome in CheckOutcome:
            gauge.add_metric([check.value, outcome.value], counts.get((check, outcome), 0))
    yield gauge


def mail(session: Session, now: datetime) -> Iterator[Metric]:
    """The outbox: mail sent in the last day, mail waiting (and of it, waiting after a failed attempt), the
    oldest waiting, and mail given up as undeliverable. Each is a range of the delivery-state index."""
    waiting_states = (DeliveryState.PENDING, DeliveryState.SENDING)
    waiting, failing, oldest = session.execute(
        select(func.count(), func.count(Notification.last_error), func.min(Notification.created_at))
        .where(Notification.delivery_state.in_(waiting_states))
    ).one()
    undelivered = session.scalar(select(func.count()).where(Notification.delivery_state == DeliveryState.FAILED))
    sent = session.scalar(select(func.count()).where(Notification.sent_at >= now - RECENT))
    yield _labelless("notifications_sent_last_day", "Notifications sent in the last 24 hours.", sent)
    yield _labelless("notifications_unsent", "Notifications written but not sent yet.", waiting)
    yield _labelless("notifications_failed", "Unsent notifications whose last delivery attempt failed.", failing)
    yield _labelless("notifications_undelivered",
                     "Notifications given up: refused by the mail server or failing after every attempt.",
                     undelivered)
    yield _labelless("notifications_oldest_unsent_age_seconds",
                     "Age of the oldest unsent notification (0 when none waits).",
                     0.0 if oldest is None else _age_seconds(now, oldest))


def audit_verification(session: Session, now: datetime) -> Iterator[Metric]:
    """How long since the audit chain last verified, and whether the latest verification found it intact."""
    last_good = session.scalar(select(func.max(AuditVerification.finished_at)).where(AuditVerification.ok))
    yield _labelless("audit_last_good_verification_age_seconds",
                     "Seconds since the audit chain last verified intact (+Inf when it never has).",
                     _age_seconds(now, last_good))
    latest_ok = session.scalar(select(AuditVerification.ok).order_by(AuditVerification.finished_at.desc()).limit(1))
    if latest_ok is not None:
        yield _labelless("audit_last_verification_ok", "1 when the latest verification found the chain intact.",
                         1 if latest_ok else 0)


def open_findings(session: Session, now: datetime) -> Iterator[Metric]:
    """Open and acknowledged findings by severity; every severity is present."""
    gauge = _gauge("findings_open", "Findings open or acknowledged, by severity.", ["severity"])
    counts = dict(session.execute(
        select(Finding.severity, func.count()).where(Finding.state.in_(OPEN_FINDING_STATES))
        .group_by(Finding.severity)).all())
    for severity in FindingSeverity:
        gauge.add_metric([severity.value], counts.get(severity, 0))
    yield gauge


def work_rows(session: Session, now: datetime) -> Iterator[Metric]:
    """Requested work kept in the database until done (services/work.py): open and failed rows by kind and
    state, the age of the oldest open row and the open rows past their lease, per kind. Done rows are not
    counted (that would scan the whole history); every kind and open state is given, 0 when none."""
    counts = work.counts_by_kind_and_state(session)
    open_rows = work.open_by_kind(session, now)
    rows = GaugeMetricFamily(f"{PREFIX}_work_rows", "Requested work not done yet, and work given up, by kind and "
                             "state.", labels=["kind", "state"])
    oldest = GaugeMetricFamily(f"{PREFIX}_work_oldest_open_age_seconds",
                               "Age of the oldest open piece of work of each kind (0 when none is open).",
                               labels=["kind"])
    past = GaugeMetricFamily(f"{PREFIX}_work_past_lease",
                             "Open work whose lease has run out: a worker died or the broker lost it.",
                             labels=["kind"])
    for kind in WorkKind:
        for state in (*sorted(OPEN_WORK_STATES, key=lambda s: s.value), WorkState.FAILED):
            rows.add_metric([kind.value, state.value], counts.get((kind.value, state.value), 0))
        first, late = open_rows.get(kind.value, (None, 0))
        oldest.add_metric([kind.value], 0.0 if first is None else _age_seconds(now, first))
        past.add_metric([kind.value], late)
    yield rows
    yield oldest
    yield past


COLLECTORS = [check_outcomes, mail, audit_verification, open_findings, work_rows]


def _labelless(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


class DatabaseCollector:
    """Runs every collector on one session when Prometheus scrapes, and says how long that took."""

    def __init__(self, session: Session):
        self.session = session

    def collect(self) -> Iterator[Metric]:
        started, now = time.perf_counter(), utcnow()
        for collector in COLLECTORS:
            yield from collector(self.session, now)
        yield _labelless("metrics_collect_seconds", "Time taken to read these metrics from the database.",
                         time.perf_counter() - started)


def render(accept: str | None, session: Session | None = None) -> tuple[bytes, str]:
    """Every metric in the format the scraper asks for (Prometheus text, or OpenMetrics), and its content type;
    the read transaction ends with it."""
    session = session or db.session
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(session))
    encoder, content_type = choose_encoder(accept)
    try:
        return encoder(registry), content_type
    finally:
        unit_of_work.discard(session)
