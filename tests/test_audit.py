"""The audit chain: append-only in the database, hash-chained, verifiable, never forked."""
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from backoffice.extensions import db
from backoffice.models import GENESIS_HASH, AuditEvent
from backoffice.services import audit
from tests.audit_helpers import append, tamper
from tests.conftest import BACKEND


def test_events_form_a_chain(session):
    append(session, 5)
    events = session.query(AuditEvent).order_by(AuditEvent.seq).all()
    assert [e.seq for e in events] == list(range(1, 6))
    assert events[0].prev_hash == GENESIS_HASH
    for earlier, later in zip(events, events[1:], strict=False):
        assert later.prev_hash == earlier.hash
    report = audit.verify_chain(session)
    assert report.ok and report.checked == 5 and report.last_seq == 5


def test_event_records_only_given_changes_and_the_request_context(session):
    token = audit.set_request_context("req-12345678", "203.0.113.7")
    try:
        ev = audit.record(session, "system:test", "provider.renamed", "provider", 7,
                          before={"public_name": "Old"}, after={"public_name": "New"}, reason="typo")
    finally:
        audit.reset_request_context(token)
    session.commit()
    stored = session.get(AuditEvent, ev.seq)
    assert (stored.before, stored.after, stored.reason) == ({"public_name": "Old"}, {"public_name": "New"}, "typo")
    assert (stored.request_id, stored.ip, stored.actor) == ("req-12345678", "203.0.113.7", "system:test")


def test_actors_are_accounts_or_named_system_jobs(session):
    with pytest.raises(ValueError):
        audit.record(session, "somebody", "x", "thing", 1)


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET action = 'rewritten' WHERE seq = 2",
    "DELETE FROM audit_event WHERE seq = 2",
])
def test_the_database_refuses_to_change_or_delete_events(session, statement):
    append(session, 3)
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement))
        session.flush()
    session.rollback()
    assert session.query(AuditEvent).count() == 3


def test_the_database_refuses_to_empty_the_table(session):
    """TRUNCATE on PostgreSQL; SQLite's equivalent is an unqualified DELETE."""
    append(session, 2)
    statement = "TRUNCATE audit_event" if BACKEND == "postgresql" else "DELETE FROM audit_event"
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement))
    session.rollback()
    assert session.query(AuditEvent).count() == 2


def test_verify_names_the_altered_event(session):
    append(session, 6)
    tamper(session, "UPDATE audit_event SET reason = 'nothing to see' WHERE seq = 4")
    report = audit.verify_chain(session)
    assert not report.ok
    assert report.first_bad_seq == 4 and report.checked == 3
    assert "altered" in report.problem


def test_verify_names_a_deleted_event(session):
    append(session, 6)
    tamper(session, "DELETE FROM audit_event WHERE seq = 3")
    report = audit.verify_chain(session)
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_verify_detects_a_rehashed_event_by_the_next_link(session):
    append(session, 5)
    ev = session.get(AuditEvent, 2)
    fields = {**audit.event_fields(ev), "reason": "forged"}
    forged_hash = audit.compute_hash(ev.prev_hash, fields)
    session.expunge_all()
    tamper(session, "UPDATE audit_event SET reason = 'forged', hash = :h WHERE seq = 2", h=forged_hash)
    report = audit.verify_chain(session)
    assert (report.ok, report.first_bad_seq) == (False, 3)


def test_cli_verify_passes_on_a_good_chain_and_names_the_broken_event(app, session):
    append(session, 4)
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and "OK: 4 events verified" in ok.output
    tamper(session, "UPDATE audit_event SET actor = 'user:1' WHERE seq = 2")
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    assert "BROKEN at event 2" in broken.output


def test_a_rolled_back_transaction_leaves_no_event_and_no_gap(session):
    append(session, 2)
    audit.record(session, "system:test", "abandoned", "thing", 1)
    session.rollback()
    append(session, 1)
    assert [e.seq for e in session.query(AuditEvent).order_by(AuditEvent.seq)] == [1, 2, 3]
    assert audit.verify_chain(session).ok


def test_concurrent_appenders_do_not_fork_the_chain(app):
    """Writers in separate connections each append; the chain stays one line."""
    writers, per_writer = 6, 15
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(worker: int) -> None:
        try:
            with app.app_context():
                start.wait()
                for i in range(per_writer):
                    with Session(db.engine) as own:
                        audit.record(own, "system:test", "concurrent", "worker", worker, after={"i": i})
                        own.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(db.engine) as check:
        seqs = [s for (s,) in check.execute(text("SELECT seq FROM audit_event ORDER BY seq"))]
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) >= writers * per_writer
        assert audit.verify_chain(check).ok


def test_verify_detects_events_removed_from_the_end(session):
    append(session, 6)
    tamper(session, "DELETE FROM audit_event WHERE seq >= 5")
    report = audit.verify_chain(session)
    assert not report.ok
    assert report.first_bad_seq == 5 and report.checked == 4
    assert "recorded head is event 6" in report.problem


def test_the_chain_head_cannot_be_deleted_or_moved_back(session):
    append(session, 3)
    for statement in ("DELETE FROM audit_chain_lock", "UPDATE audit_chain_lock SET head_seq = 1"):
        with pytest.raises(DBAPIError, match="cannot be deleted or moved back"):
            session.execute(text(statement))
        session.rollback()
    assert audit.verify_chain(session).ok


def test_events_of_a_rolled_back_savepoint_never_reach_the_chain(session):
    audit.record(session, "system:test", "kept.before", "thing", 1)
    try:
        with session.begin_nested():
            audit.record(session, "system:test", "dropped", "thing", 2)
            raise RuntimeError("the nested work failed")
    except RuntimeError:
        pass
    with session.begin_nested():
        audit.record(session, "system:test", "kept.nested", "thing", 3)
    session.commit()
    actions = [e.action for e in session.query(AuditEvent).order_by(AuditEvent.seq)]
    assert actions == ["kept.before", "kept.nested"]
    assert audit.verify_chain(session).ok


def test_events_of_a_closed_session_are_dropped(app):
    with Session(db.engine) as first:
        audit.record(first, "system:test", "abandoned", "thing", 1)
    with Session(db.engine) as second:
        audit.record(second, "system:test", "kept", "thing", 2)
        second.commit()
        assert [e.action for e in second.query(AuditEvent)] == ["kept"]
        assert audit.verify_chain(second).ok


def test_a_commit_without_events_leaves_the_head_alone(session, make_provider):
    append(session, 2)
    head = session.execute(text("SELECT head_seq, head_hash FROM audit_chain_lock")).one()
    make_provider()
    assert session.execute(text("SELECT head_seq, head_hash FROM audit_chain_lock")).one() == head
