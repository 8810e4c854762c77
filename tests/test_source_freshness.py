"""Sources that are never silently stale, and per-field freshness.

A screening against an exclusion list older than its freshness, or an NPI check while NPPES has not answered for
longer than its freshness, is recorded as "source stale", never as a clean pass; the dashboard names the stale
source; a fresh import clears it. Each listed field a check confirms carries when and by which source, on the case
page, in the feed's verification block and in the receipt; a later confirmation moves it, a failed check does not.
"""
from __future__ import annotations

import socket
from datetime import timedelta

import jsonschema
import pytest
from sqlalchemy import event, func, select, update

from backoffice import formatting, zones
from backoffice.api import openapi
from backoffice.checks.http import GuardedClient, OutboundError
from backoffice.checks.result import CheckResult
from backoffice.extensions import db
from backoffice.models import (
    Accreditation,
    AuditEvent,
    CheckKind,
    CheckOutcome,
    CheckRun,
    DataSource,
    DecisionOutcome,
    ExclusionSource,
    FieldConfirmation,
    Finding,
    FindingState,
    Licence,
    ListingStatus,
    Principal,
    PrincipalRole,
    Role,
    VerificationStatus,
    utcnow,
)
from backoffice.services import audit, rechecks, review, sources
from tasks.checks import expiry_sweep
from tests.conftest import login
from tests.page_text import visible_text
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted
from tests.servers import fake_nppes
from tests.test_exclusions import HEADER, import_text, record_screen, screen

ROW = ('"{last}","{first}","","","NURSING","NURSE","","0000000000","","1 MAIN ST","RICHMOND","VA","23220",'
       '"1128a1","20200101","00000000","00000000","",""\n')
PEACH = dict(npi="1174270805", public_name="Peach State Medical Practice, P.C.",
             legal_name="Peach State Medical Practice, P.C.")
PEACH_SITE = {"street1": "1414 Walnut Street", "city": "Philadelphia", "state": "PA", "zip": "19102"}


def words(response) -> str:
    """The page's visible text on one line, as a person reads across a table row."""
    return " ".join(visible_text(response.get_data(as_text=True)).split())


def age_lists(session, days: int) -> None:
    """Make every imported list `days` old, as if no file had been imported since."""
    then = utcnow() - timedelta(days=days)
    session.execute(update(ExclusionSource).values(imported_at=then))
    session.execute(update(DataSource).where(DataSource.name != sources.NPPES).values(last_refreshed_at=then))
    session.commit()


def leie(session, tmp_path, name, *people):
    return import_text(session, tmp_path, name, HEADER + "".join(ROW.format(last=last, first=first)
                                                                 for last, first in people))


def test_a_stale_source_never_yields_a_clean_exclusion_result(app, session, make_provider, tmp_path):
    clean = make_provider(public_name="Quiet Waters")
    leie(session, tmp_path, "leie.csv", ("DOE", "JANE"))
    fresh = record_screen(session, clean, "w1")
    assert fresh.outcome == CheckOutcome.PASS

    age_lists(session, 40)
    stale = record_screen(session, clean, "w2")
    run = session.scalar(select(CheckRun).where(CheckRun.idempotency_key.like("exclusion:%:w2")))
    assert run.outcome == CheckOutcome.ERROR != CheckOutcome.PASS
    day = zones.day_text((utcnow() - timedelta(days=40)).date())
    assert run.summary == (f"Source stale: OIG LEIE last imported {day}, expected monthly (at most 31 days old): "
                           "no clean result")
    assert stale.outcome == CheckOutcome.PASS  # what the screening said before the guard
    assert run.evidence["source_stale"] == ["oig_leie"]
    # The warning is on the source, audited once however many screenings meet it.
    record_screen(session, make_provider(public_name="Still Waters"), "w3")
    row = session.scalar(select(DataSource).where(DataSource.name == "oig_leie"))
    assert row.stale_since is not None
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "source.stale")).all()
    assert len(events) == 1 and events[0].reason == f"OIG LEIE last imported {day}; expected monthly (at most 31 " \
                                                     "days old)"


def test_a_match_on_a_stale_list_still_stands_and_nothing_is_cleared_by_it(app, session, make_provider, tmp_path):
    provider = make_provider(public_name="Harbor House")
    provider.principals.append(Principal(name="Jane Doe", role=PrincipalRole.MEDICAL_DIRECTOR))
    provider.locations[0].state = "VA"
    session.commit()
    leie(session, tmp_path, "leie.csv", ("DOE", "JANE"))
    assert record_screen(session, provider, "w1").outcome == CheckOutcome.WARN
    opened = session.scalar(select(Finding).where(Finding.provider_id == provider.id))
    age_lists(session, 40)
    # The principal leaves: a fresh list would clear the match, a stale one cannot.
    session.delete(provider.principals[0])
    session.commit()
    record_screen(session, provider, "w2")
    run = session.scalar(select(CheckRun).where(CheckRun.idempotency_key.like("exclusion:%:w2")))
    assert run.outcome == CheckOutcome.ERROR and run.summary.startswith("Source stale: OIG LEIE")
    session.refresh(opened)
    assert opened.state == FindingState.OPEN


def test_a_fresh_import_clears_the_stale_state(app, session, make_provider, tmp_path):
    provider = make_provider(public_name="Quiet Waters")
    leie(session, tmp_path, "leie.csv", ("DOE", "JANE"))
    age_lists(session, 40)
    record_screen(session, provider, "w1")
    assert session.scalar(select(DataSource.stale_since).where(DataSource.name == "oig_leie")) is not None

    leie(session, tmp_path, "leie-next.csv", ("DOE", "JANE"), ("ROE", "RICHARD"))
    row = session.scalar(select(DataSource).where(DataSource.name == "oig_leie"))
    session.refresh(row)
    assert row.stale_since is None and utcnow() - row.last_refreshed_at < timedelta(minutes=5)
    cleared = session.scalars(select(AuditEvent).where(AuditEvent.action == "source.refreshed")).all()[-1]
    assert cleared.after["stale_since"] is None and cleared.before["stale_since"] is not None
    assert record_screen(session, provider, "w2").outcome == CheckOutcome.PASS
    run = session.scalar(select(CheckRun).where(CheckRun.idempotency_key.like("exclusion:%:w2")))
    assert run.outcome == CheckOutcome.PASS and run.evidence["sources"][0]["stale"] is False


def test_the_dashboard_names_the_stale_source_its_date_and_its_freshness(app, client, session, make_account,
                                                                          make_provider, tmp_path):
    researcher = make_account(Role.RESEARCHER)
    leie(session, tmp_path, "leie.csv", ("DOE", "JANE"))
    login(client, researcher)
    assert "stale" not in visible_text(client.get("/admin/").get_data(as_text=True)).lower()

    age_lists(session, 40)
    record_screen(session, make_provider(), "w1")
    text = words(client.get("/admin/"))
    with app.test_request_context():
        day = formatting.day(utcnow() - timedelta(days=40))
    assert ('A source is stale: checks against it are recorded as "source stale", never as a pass.' in text), text
    assert f"OIG LEIE: last imported {day}; expected monthly (at most 31 days old); a check found it stale on" in text

    leie(session, tmp_path, "leie-next.csv", ("ROE", "RICHARD"))
    assert "stale" not in visible_text(client.get("/admin/").get_data(as_text=True)).lower()


def closed_port_url() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/api/"


def npi_check(session, provider, url: str, window: str) -> CheckRun:
    """One NPI check as the task runs it: ask the registry at `url`, record the run."""
    subject = rechecks.facts(session, provider.id, CheckKind.NPI)
    session.rollback()
    http = GuardedClient(allow_loopback_for_tests=True)
    try:
        result = rechecks.perform(session, CheckKind.NPI, subject, rechecks.Sources(http, url), utcnow().date())
    except OutboundError as exc:
        result = rechecks.unreachable(CheckKind.NPI, exc)
    key = rechecks.run_key(provider.id, CheckKind.NPI, window)
    rechecks.record(session, "system:test", provider.id, CheckKind.NPI, key, result, utcnow(), auto_suspend=False,
                    cadence_days=30)
    session.commit()
    return session.scalar(select(CheckRun).where(CheckRun.idempotency_key == key))


@pytest.fixture
def registry():
    server = fake_nppes()
    yield server
    server.close()


def peach(make_provider, session, **fields):
    provider = make_provider(**PEACH, **fields)
    provider.locations[0].street1, provider.locations[0].city = PEACH_SITE["street1"], PEACH_SITE["city"]
    provider.locations[0].state, provider.locations[0].zip = PEACH_SITE["state"], PEACH_SITE["zip"]
    session.commit()
    return provider


def test_nppes_answered_long_ago_makes_the_npi_check_say_stale(app, session, make_provider, registry):
    provider = peach(make_provider, session)
    answered = npi_check(session, provider, registry.url(path="/api/"), "w1")
    assert answered.outcome == CheckOutcome.PASS
    assert session.scalar(select(DataSource.last_refreshed_at).where(DataSource.name == "nppes")) is not None

    # Down ever since, and that was long ago.
    long_ago = utcnow() - timedelta(days=20)
    session.execute(update(DataSource).where(DataSource.name == "nppes").values(last_refreshed_at=long_ago))
    session.commit()
    run = npi_check(session, provider, closed_port_url(), "w2")
    assert run.outcome == CheckOutcome.ERROR
    assert run.summary.startswith(f"Source stale: NPPES NPI Registry last answered {zones.day_text(long_ago.date())}, "
                                  "expected weekly (at most 7 days old): The NPI Registry could not be reached")
    assert [s.name for s in sources.stale(session, sources.DEFAULT_FRESHNESS, utcnow())] == ["nppes"]
    assert run.evidence["sources"][0]["stale"] is True

    # Down only since yesterday: an error run like any other, not stale.
    session.execute(update(DataSource).where(DataSource.name == "nppes")
                    .values(last_refreshed_at=utcnow() - timedelta(days=1), stale_since=None))
    session.commit()
    recent = npi_check(session, provider, closed_port_url(), "w3")
    assert recent.outcome == CheckOutcome.ERROR and recent.summary.startswith("The NPI Registry could not be reached")

    # Answering again clears the warning.
    session.execute(update(DataSource).where(DataSource.name == "nppes").values(last_refreshed_at=long_ago))
    session.commit()
    npi_check(session, provider, closed_port_url(), "w4")
    assert npi_check(session, provider, registry.url(path="/api/"), "w5").outcome == CheckOutcome.PASS
    assert session.scalar(select(DataSource.stale_since).where(DataSource.name == "nppes")) is None
    assert sources.stale(session, sources.DEFAULT_FRESHNESS, utcnow()) == []


def listed(make_provider, session):
    now = utcnow()
    return peach(make_provider, session, listing_status=ListingStatus.LISTED,
                 verification_status=VerificationStatus.VERIFIED, verified_at=now - timedelta(days=10),
                 verified_until=now + timedelta(days=300))


def conforms(payload: dict, schema_name: str) -> dict:
    """The payload, after checking it against its schema in the OpenAPI document the API serves."""
    jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema_name}",
                                     "components": {"schemas": openapi.SCHEMAS}}).validate(payload)
    return payload


def feed_fields(client, provider_id):
    page = conforms(client.get("/api/v1/listings").get_json(), "ListingPage")
    return next(item for item in page["listings"] if item["id"] == provider_id)["verification"]["fields"]


def receipt_of(client, provider_id):
    return conforms(client.get(f"/api/v1/listings/{provider_id}/verification").get_json(), "Receipt")


def test_confirmed_fields_show_on_the_case_page_in_the_feed_and_the_receipt_and_move_forward(
        app, client, session, make_account, make_provider, registry):
    provider = listed(make_provider, session)
    publish_catalogue(session)
    submission = submitted(session, provider_member(session, make_account, provider), provider)
    assert feed_fields(client, provider.id)["npi"] == {"confirmed_at": None, "source": None}

    first = npi_check(session, provider, registry.url(path="/api/"), "w1")
    fields = feed_fields(client, provider.id)
    assert fields["npi"] == {"confirmed_at": first.finished_at.isoformat(), "source": "NPPES NPI Registry"}
    assert fields["address"] == fields["npi"]
    assert fields["website"] == {"confirmed_at": None, "source": None}
    receipt = receipt_of(client, provider.id)
    assert receipt["verification"]["fields"] == fields
    npi_entry = next(c for c in receipt["checks"] if c["check"] == "npi")
    assert npi_entry["outcome"] == "pass" and npi_entry["sources"][0]["source"] == "NPPES NPI Registry"
    assert npi_entry["sources"][0]["stale"] is False

    researcher = make_account(Role.RESEARCHER)
    login(client, researcher)
    text = words(client.get(f"/admin/review/case/{submission.id}"))
    with app.test_request_context():
        shown, shown_day = formatting.when(first.finished_at), formatting.day(first.finished_at)
    assert f"NPI confirmed {shown} by NPPES NPI Registry" in text, text
    assert f"Address confirmed {shown} by NPPES NPI Registry" in text
    assert "Website never confirmed by a check" in text
    assert "Source: NPPES NPI Registry as of" in text
    rechecks_page = words(client.get(f"/admin/finding-work/provider/{provider.id}"))
    assert f"npi pass NPI {provider.npi} active; name and location match" in rechecks_page
    assert f"NPPES NPI Registry as of {shown_day}" in rechecks_page, rechecks_page

    later = npi_check(session, provider, registry.url(path="/api/"), "w2")
    assert later.finished_at > first.finished_at
    assert feed_fields(client, provider.id)["npi"]["confirmed_at"] == later.finished_at.isoformat()

    # A check that fails (the registry unreachable; then the NPI not found) leaves the confirmation where it was.
    npi_check(session, provider, closed_port_url(), "w3")
    provider.npi = "1999999984"
    session.commit()
    failed = npi_check(session, provider, registry.url(path="/api/"), "w4")
    assert failed.outcome == CheckOutcome.FAIL
    fields = feed_fields(client, provider.id)
    assert fields["npi"]["confirmed_at"] == later.finished_at.isoformat()
    receipt = receipt_of(client, provider.id)
    assert receipt["verification"]["fields"]["npi"]["confirmed_at"] == later.finished_at.isoformat()
    rows = session.scalars(select(FieldConfirmation).where(FieldConfirmation.provider_id == provider.id)).all()
    assert {r.field for r in rows} == {"npi", "address"}
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "field.confirmed")).all()
    assert len(events) == 2


def test_a_decision_confirms_current_licences_and_leaves_an_expired_accreditation_unconfirmed(
        app, client, session, make_account, make_provider):
    """Licences and accreditations are confirmed by the research team's decision, never by a sweep reading the
    expiry dates we hold: a daily sweep writing one event per provider would drown the trail and prove nothing."""
    publish_catalogue(session)
    provider = make_provider()
    today = utcnow().date()
    provider.licences.append(Licence(state="PA", number="L-1", licence_type="outpatient",
                                     expires_on=today + timedelta(days=200)))
    provider.accreditations.append(Accreditation(body="CARF", expires_on=today - timedelta(days=1)))
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    request = in_review(session, researcher, submitted(session, member, provider))
    assess_all(session, researcher, request)
    assert expiry_sweep().get("confirmed") is None  # the sweep confirms nothing
    assert session.scalar(select(func.count()).select_from(FieldConfirmation)) == 0
    review.decide(session, researcher, request, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    fields = feed_fields(client, provider.id)
    at = session.scalar(select(FieldConfirmation.confirmed_at).where(FieldConfirmation.field == "licence"))
    assert fields["licence"] == {"confirmed_at": at.isoformat(),
                                 "source": f"the research team's review of request #{request.id}"}
    assert fields["accreditation"] == {"confirmed_at": None, "source": None}  # expired: not confirmed
    expiry_sweep()
    assert feed_fields(client, provider.id)["licence"]["confirmed_at"] == at.isoformat()  # the sweep moves nothing


def test_a_batch_of_screenings_reads_the_sources_once_and_flags_a_stale_one_once(app, session, make_provider,
                                                                                 tmp_path):
    providers = [make_provider(public_name=f"Quiet Waters {n}") for n in range(3)]
    leie(session, tmp_path, "leie.csv", ("DOE", "JANE"))
    age_lists(session, 40)
    results = [screen(session, p) for p in providers]
    reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and ("exclusion_source" in statement
                                                                or "data_source" in statement):
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        runs = rechecks.record_many(session, "system:test", [
            rechecks.Outcome(p.id, CheckKind.EXCLUSION, rechecks.run_key(p.id, CheckKind.EXCLUSION, "b1"), r, utcnow())
            for p, r in zip(providers, results, strict=True)], auto_suspend=False, cadence_days=30)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    session.commit()

    assert [run.outcome for run in runs] == [CheckOutcome.ERROR] * 3
    assert all(run.evidence["source_stale"] == ["oig_leie"] for run in runs)
    # Judging three runs: the lists' imports and the sources' rows, once; flagging the stale list, once: its row,
    # then its standing for the event's words (the imports and the rows again). One run at a time: 11.
    assert len(reads) == 5
    assert len(session.scalars(select(AuditEvent).where(AuditEvent.action == "source.stale")).all()) == 1


def test_a_batch_confirms_each_runs_fields_with_one_read_as_if_one_after_the_other(session, make_provider):
    first, second = make_provider(), make_provider()
    named = CheckResult(CheckOutcome.PASS, "The website names the provider", {"names_provider": True})
    reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT") and "field_confirmation" in statement:
            reads.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        runs = rechecks.record_many(session, "system:test", [
            rechecks.Outcome(p.id, CheckKind.WEBSITE, rechecks.run_key(p.id, CheckKind.WEBSITE, window), named, utcnow())
            for p, window in ((first, "b1"), (second, "b1"), (first, "b2"))], auto_suspend=False, cadence_days=30)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    session.commit()

    assert len(reads) == 1
    rows = {row.provider_id: row for row in session.scalars(select(FieldConfirmation))}
    assert {pid: (row.field, row.check_run_id) for pid, row in rows.items()} == {
        first.id: ("website", runs[0].id), second.id: ("website", runs[1].id)}
    # The second run of the first provider confirms it at the same moment: not moved, no second event.
    confirmed = session.scalars(select(AuditEvent).where(AuditEvent.action == "field.confirmed")
                                .order_by(AuditEvent.seq)).all()
    assert [e.provider_id for e in confirmed] == [first.id, second.id]


def test_a_field_confirmed_twice_in_one_batch_names_the_first_confirmation_as_its_before(session, make_provider):
    provider = make_provider()
    first, second = utcnow() - timedelta(minutes=2), utcnow() - timedelta(minutes=1)
    sources.confirm_many(session, [
        sources.Confirming("system:test", provider.id, {"website": sources.WEBSITE_SOURCE}, first),
        sources.Confirming("system:test", provider.id, {"website": sources.WEBSITE_SOURCE}, second)])
    session.commit()
    befores = [e.before for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "field.confirmed")
                                                 .order_by(AuditEvent.seq))]
    assert befores[0] is None
    assert befores[1] == {"website": {"confirmed_at": audit.jsonable(first), "source": sources.WEBSITE_SOURCE}}
    assert sources.confirmations(session, [provider.id])[provider.id]["website"].confirmed_at == second
