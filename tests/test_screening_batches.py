"""The exclusion sweeps screen in batches: one piece of work per batch, its runs recorded together, the same
findings as screening each provider on its own, nothing lost when a batch is cut short or loses a race."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError

from backoffice.checks import exclusion_lists
from backoffice.models import (
    AuditEvent,
    CheckKind,
    CheckOutcome,
    CheckRun,
    Finding,
    ListingStatus,
    Principal,
    PrincipalRole,
    Provider,
    Role,
    Work,
    WorkKind,
    WorkState,
    utcnow,
)
from backoffice.services import rechecks, screening, work
from tasks import checks
from tests.conftest import login
from tests.page_text import visible_text

HEADER = ('"LASTNAME","FIRSTNAME","MIDNAME","BUSNAME","GENERAL","SPECIALTY","UPIN","NPI","DOB","ADDRESS","CITY",'
          '"STATE","ZIP","EXCLTYPE","EXCLDATE","REINDATE","WAIVERDATE","WVRSTATE","SOURCE_FILE"\n')
LIST = HEADER + (
    # by NPI: critical
    '"","","","SLEEP INSTITUTE","","","","1629125307","","","MIAMI","FL","","1128b7","20160115","00000000","00000000","",""\n'
    # the medical director by name, state and city: a warning
    '"DOE","JANE","Q","","NURSING","NURSE","","0000000000","","1 MAIN ST","CHARLOTTESVILLE","VA","","1128a1","20200101","0","00000000","",""\n'
    # a similar organisation name in the state (fuzzy): a warning
    '"","","","BLUE RIDGE RECOVRY CENTER","","","","0000000000","","","ROANOKE","VA","","1128b7","20190101","00000000","00000000","",""\n'
)
# Each provider of the comparison: (public name, NPI, a principal or None).
PEOPLE = [
    ("Harbor Recovery Center", "1629125307", None),
    ("Quiet Waters", None, "Dr. Jane Q. Doe, MD"),
    ("Blue Ridge Recovery Center", None, None),
    ("Nobody Matches Here", None, None),
    ("Mountain View Clinic", None, None),
]


def import_list(session, tmp_path):
    path = tmp_path / "2001EXCL.csv"
    path.write_text(LIST)
    parsed = exclusion_lists.read(path)
    screening.import_file(session, "system:test", parsed, utcnow().date())
    session.commit()


def providers(make_provider, session, listing_status: ListingStatus) -> list[Provider]:
    made = []
    for name, npi, principal in PEOPLE:
        provider = make_provider(legal_name=f"{name} LLC", public_name=name, npi=npi, listing_status=listing_status)
        provider.locations[0].street1 = "1 Main Street"  # the same address for each twin
        if principal:
            provider.principals.append(Principal(name=principal, role=PrincipalRole.MEDICAL_DIRECTOR))
        made.append(provider)
    session.commit()
    return made


def batch_rows(session) -> list[Work]:
    session.expire_all()
    return list(session.scalars(select(Work).where(Work.kind == WorkKind.SCREENING_BATCH).order_by(Work.id)))


def what_was_found(session, provider_id: int) -> tuple:
    run = session.scalar(select(CheckRun).where(CheckRun.provider_id == provider_id))
    found = session.scalars(select(Finding).where(Finding.provider_id == provider_id).order_by(Finding.subject_key))
    # What the audit trail says was done, and by whom (after the provider's own creation).
    events = session.execute(select(AuditEvent.actor, AuditEvent.action).where(
        AuditEvent.provider_id == provider_id, AuditEvent.action.like("finding.%")).order_by(AuditEvent.seq)).all()
    return ((run.outcome, run.summary, run.evidence, run.source_version, run.idempotency_key.rsplit(":", 1)[1]),
            [(f.subject_key, f.severity, f.state, f.title, f.detail) for f in found], [tuple(e) for e in events])


def test_the_sweep_asks_for_one_piece_of_work_per_batch_and_screens_like_one_provider_at_a_time(
        app, session, make_provider, tmp_path):
    app.config.update(SCREENING_BATCH_SIZE=2)
    import_list(session, tmp_path)
    one_by_one = providers(make_provider, session, ListingStatus.UNLISTED)
    batched = providers(make_provider, session, ListingStatus.LISTED)
    # Today's one-provider path (a SCREENING row per provider, run_check) for the unlisted twins.
    policy = work.Policy.from_config(app.config)
    month = "monthly-" + utcnow().strftime("%Y%m")
    for provider in one_by_one:
        row = work.request(session, "system:test", work.check_spec(WorkKind.SCREENING, provider.id,
                                                                   CheckKind.EXCLUSION, month), policy)
        session.commit()
        checks.run_check.apply(args=[row.id]).get()

    assert checks.exclusion_sweep.apply().get() == 5
    rows = batch_rows(session)
    assert [len(r.params["provider_ids"]) for r in rows] == [2, 2, 1]  # no work row per provider
    assert session.scalar(select(func.count()).select_from(Work).where(Work.kind == WorkKind.SCREENING)) == 5
    assert checks.exclusion_sweep.apply().get() == 5 and len(batch_rows(session)) == 3  # asked once while open
    assert [checks.screen_batch.apply(args=[r.id]).get() for r in rows] == [2, 2, 1]
    assert {r.state for r in batch_rows(session)} == {WorkState.DONE}

    for alone, together in zip(one_by_one, batched, strict=True):
        assert what_was_found(session, together.id) == what_was_found(session, alone.id)
    found = [what_was_found(session, p.id) for p in batched]
    assert [run[0].value for run, _, _ in found] == ["fail", "warn", "warn", "pass", "pass"]
    assert [len(findings) for _, findings, _ in found] == [1, 1, 1, 0, 0]
    assert found[0][2] == [("system:recheck-exclusion", "finding.opened")]
    # Their runs recorded, the month's sweep asks for nothing more, and a second delivery changes nothing.
    assert checks.exclusion_sweep.apply().get() == 5 and len(batch_rows(session)) == 3
    assert checks.screen_batch.apply(args=[rows[0].id]).get() == 0
    assert session.scalar(select(func.count()).select_from(CheckRun)) == 10


def test_a_batch_cut_short_is_sent_again_and_screens_only_what_is_left(app, session, make_provider, tmp_path):
    import_list(session, tmp_path)
    listed = providers(make_provider, session, ListingStatus.LISTED)
    policy = work.Policy.from_config(app.config)
    row = rechecks.request_screening(session, "system:test", [p.id for p in listed], "import-1", policy)
    session.commit()
    # One provider's run was recorded before the worker died; its lease ran out.
    first = rechecks.screen_batch(session, [listed[0].id], "import-1", screening.Thresholds(), utcnow().date(),
                                  utcnow())
    rechecks.record_many(session, "system:test", first, auto_suspend=False, cadence_days=30)
    session.execute(update(Work).where(Work.id == row.id).values(state=WorkState.RUNNING, attempts=1,
                                                                 lease_expires_at=utcnow()))
    session.commit()
    work.reconcile(session, policy, utcnow())
    session.commit()
    assert checks.screen_batch.apply(args=[row.id]).get() == 4
    session.expire_all()
    assert session.get(Work, row.id).state == WorkState.DONE
    keys = session.scalars(select(CheckRun.idempotency_key).order_by(CheckRun.provider_id)).all()
    assert keys == [f"exclusion:{p.id}:import-1" for p in listed]


def test_a_batch_that_loses_a_race_for_a_run_records_the_others_one_by_one(
        app, session, make_provider, tmp_path, monkeypatch):
    import_list(session, tmp_path)
    listed = providers(make_provider, session, ListingStatus.LISTED)
    row = rechecks.request_screening(session, "system:test", [p.id for p in listed], "monthly-x",
                                     work.Policy.from_config(app.config))
    session.commit()
    screen_batch = rechecks.screen_batch

    def and_another_worker_records_one(*args, **kwargs):
        # A second delivery records the second provider's run after this one read what was left to do.
        outcomes = screen_batch(*args, **kwargs)
        rechecks.record_many(session, "system:test", [outcomes[1]], auto_suspend=False, cadence_days=30)
        session.commit()
        return outcomes

    monkeypatch.setattr(rechecks, "screen_batch", and_another_worker_records_one)
    assert checks.screen_batch.apply(args=[row.id]).get() == 5
    session.expire_all()
    assert session.get(Work, row.id).state == WorkState.DONE
    assert session.scalar(select(func.count()).select_from(CheckRun)) == 5
    assert session.scalar(select(func.count(func.distinct(Finding.subject_key)))) == 3


def test_staff_read_a_batch_of_screening_in_words(app, client, session, make_provider, make_account):
    listed = [make_provider(listing_status=ListingStatus.LISTED) for _ in range(3)]
    row = rechecks.request_screening(session, "system:exclusion-sweep", [p.id for p in listed], "monthly-202612",
                                     work.Policy.from_config(app.config))
    session.commit()
    login(client, make_account(Role.RESEARCHER))
    text = " ".join(visible_text(client.get("/admin/work/").get_data(as_text=True)).split())
    assert (f"exclusion screening of a batch of providers exclusion screening of 3 providers (ids "
            f"{listed[0].id}-{listed[-1].id})") in text
    assert row is not None and row.idempotency_key == f"screening-batch:monthly-202612:{listed[0].id}-{listed[-1].id}"


def test_a_database_error_or_the_time_limit_is_not_recorded_as_each_providers_error(app, session, make_provider,
                                                                                 tmp_path, monkeypatch):
    import_list(session, tmp_path)
    listed = providers(make_provider, session, ListingStatus.LISTED)
    ids = [p.id for p in listed]

    def fails_with(exc):
        def screen_many(*args, **kwargs):
            raise exc
        return screen_many

    class TimeLimit(Exception):
        pass

    for exc, passes in ((OperationalError("SELECT 1", {}, Exception("server closed the connection")), ()),
                        (TimeLimit("soft time limit"), (TimeLimit,))):
        monkeypatch.setattr(screening, "screen_many", fails_with(exc))
        with pytest.raises(type(exc)):
            rechecks.screen_batch(session, ids, "monthly-1", screening.Thresholds(), utcnow().date(), utcnow(),
                                  passes_through=passes)
    # Any other error is each provider's error run, as for one provider's check.
    monkeypatch.setattr(screening, "screen_many", fails_with(ValueError("a bug")))
    outcomes = rechecks.screen_batch(session, ids, "monthly-1", screening.Thresholds(), utcnow().date(), utcnow())
    assert [o.provider_id for o in outcomes] == ids
    assert {o.result.outcome for o in outcomes} == {CheckOutcome.ERROR}
