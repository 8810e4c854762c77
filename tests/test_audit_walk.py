"""The verification's walk over the stored chain: the database rebuilds each event's hashed text from its columns
(no decoding), so one hash a row checks it; an event stored otherwise is judged the slow way, by the same rule as
an export, and a changed event is caught either way."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, select, text

from backoffice.auditverify import CheckedRun, canonical, compute_hash
from backoffice.models import AuditEvent
from backoffice.services import audit
from tests.audit_helpers import append, tamper
from tests.conftest import BACKEND

AWKWARD = [
    ("quotes and backslashes", {"name": 'Say "hi" \\ bye'}, 'a "quoted" reason \\ with a backslash'),
    ("control characters", {"note": "line one\nline two\ttabbed\r\x01\x1f"}, "new\nline"),
    ("text beyond ASCII", {"city": "Mayagüez", "who": "José Núñez", "emoji": "✓ 🚑"}, "café — naïve"),
    ("nested, unsorted keys", {"z": {"b": 2, "a": [3, {"y": None, "x": True}]}, "a": 1.5, "m": -0}, None),
    ("empty values", {}, ""),
]


def rebuilt(session, seq: int) -> str:
    dialect = session.get_bind().dialect.name
    return session.execute(text(f"SELECT {audit._rebuilt_text_sql(dialect)} FROM audit_event WHERE seq = :seq")
                           .bindparams(seq=seq)).scalar_one()


@pytest.mark.parametrize("label, after, reason", AWKWARD, ids=[a[0] for a in AWKWARD])
def test_the_database_rebuilds_exactly_the_text_that_was_hashed(session, label, after, reason):
    event = audit.record(session, "system:test", "thing.changed", "thing", "id-7", before=None, after=after,
                         reason=reason, provider_id=None)
    session.commit()
    stored = session.get(AuditEvent, event.seq)
    assert rebuilt(session, event.seq) == canonical(audit.event_fields(stored))
    assert [e.intact for e in audit._walk(session, event.seq, 100)] == [True]


def test_a_time_on_the_whole_second_is_rebuilt_as_python_writes_it(session, monkeypatch):
    whole = datetime(2026, 12, 1, 9, 23, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(audit, "utcnow", lambda: whole)
    event = audit.record(session, "system:test", "thing.changed", "thing", 1, after={"n": 1})
    session.commit()
    assert '"occurred_at":"2026-12-01T09:23:00+00:00"' in rebuilt(session, event.seq)
    assert audit.verify_chain(session).ok


def test_an_event_stored_in_another_json_spelling_verifies_the_slow_way(session):
    """Events written before the chain stored canonical text: same content, other spacing and key order."""
    append(session, 2)
    head_seq, head_hash = audit.chain_head(session)
    occurred = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    fields = {"seq": head_seq + 1, "occurred_at": occurred.isoformat(), "actor": "system:old", "action": "old.event",
              "entity_type": "thing", "entity_id": "1", "provider_id": None, "before": {"b": 1, "a": 2},
              "after": None, "reason": None, "request_id": None, "ip": None}
    digest = compute_hash(head_hash, fields)
    stamp = occurred.replace(tzinfo=None).isoformat(" ") if session.get_bind().dialect.name == "sqlite" else occurred
    session.execute(text(
        "INSERT INTO audit_event (seq, occurred_at, actor, action, entity_type, entity_id, provider_id, before, "
        "after, reason, request_id, ip, prev_hash, hash) VALUES (:seq, :at, 'system:old', 'old.event', 'thing', "
        "'1', NULL, :before, 'null', NULL, NULL, NULL, :prev, :hash)"),
        {"seq": head_seq + 1, "at": stamp, "before": '{"b": 1, "a": 2}', "prev": head_hash, "hash": digest})
    tamper(session, "UPDATE audit_chain_lock SET head_seq = :seq, head_hash = :hash WHERE id = 1",
           seq=head_seq + 1, hash=digest)
    assert rebuilt(session, head_seq + 1) != canonical(fields)  # the fast check cannot vouch for it ...
    report = audit.verify_chain(session)
    assert report.ok and report.checked == 3, report  # ... the slow one does


@pytest.mark.parametrize("statement", [
    "UPDATE audit_event SET reason = 'rewritten' WHERE seq = 2",
    "UPDATE audit_event SET after = '{\"n\"\\:99}' WHERE seq = 2",  # canonical spelling, other value
    "UPDATE audit_event SET after = '{\"n\": 2}' WHERE seq = 2",  # another spelling of the same value
    "UPDATE audit_event SET actor = 'system:someone-else' WHERE seq = 2",
])
def test_a_changed_event_is_caught_by_the_walk(session, statement):
    append(session, 3)
    tamper(session, statement)
    report = audit.verify_chain(session)
    if "'{\"n\": 2}'" in statement:
        assert report.ok  # same content in other spacing: the slow way confirms it is intact
    else:
        assert not report.ok and report.first_bad_seq == 2 and "altered" in report.problem, report


def test_the_walk_reads_in_batches_and_stops_at_the_head_it_was_given(session):
    append(session, 7)
    assert [e["seq"] for e in audit._walk(session, 5, 2)] == [1, 2, 3, 4, 5]
    assert session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) == 7


# -- on PostgreSQL: the database hashes the events itself, in ranges read at once ----------------------------------

postgresql_only = pytest.mark.skipif(BACKEND != "postgresql", reason="the database walk is PostgreSQL's")


@postgresql_only
def test_the_database_hands_back_only_the_events_that_need_a_look(session):
    append(session, 10)
    audit.run_verification(session, "system:audit-verification")  # a checkpoint at event 10
    session.commit()
    walked = list(audit._walk_in_database(session, 10, {6}, 2))
    shape = [(w.first_seq, w.last_seq) if isinstance(w, CheckedRun) else w["seq"] for w in walked]
    # each range's first and last event, the event at a checkpoint, and the runs between them
    assert shape == [1, (2, 4), 5, 6, (7, 9), 10], shape
    hashes = dict(session.execute(select(AuditEvent.seq, AuditEvent.hash)).all())
    assert [(w.prev_hash, w.hash) for w in walked if isinstance(w, CheckedRun)] == \
        [(hashes[1], hashes[4]), (hashes[6], hashes[9])]
    assert all(w.intact for w in walked if not isinstance(w, CheckedRun))


TAMPERS = {
    "inside the second range": ["UPDATE audit_event SET reason = 'rewritten' WHERE seq = 6"],
    "first of the second range": ["UPDATE audit_event SET reason = 'rewritten' WHERE seq = 5"],
    "last of the first range": ["UPDATE audit_event SET after = '{\"n\"\\:99}' WHERE seq = 4"],
    "first of the third range": ["UPDATE audit_event SET actor = 'system:other' WHERE seq = 9"],
    "the last event": ["UPDATE audit_event SET entity_id = '99' WHERE seq = 13"],
    "a hash rewritten at a seam": ["UPDATE audit_event SET hash = repeat('a', 64) WHERE seq = 4"],
    "a link rewritten": ["UPDATE audit_event SET prev_hash = repeat('b', 64) WHERE seq = 10"],
    "the genesis link": ["UPDATE audit_event SET prev_hash = repeat('c', 64) WHERE seq = 1"],
    "deleted at a seam": ["DELETE FROM audit_event WHERE seq = 5"],
    "deleted inside a range": ["DELETE FROM audit_event WHERE seq = 7"],
    "a whole range deleted": ["DELETE FROM audit_event WHERE seq BETWEEN 5 AND 8"],
    "another spelling, same content": ["UPDATE audit_event SET after = '{\"n\": 6}' WHERE seq = 6"],
    "another spelling, then a change": ["UPDATE audit_event SET after = '{\"n\": 6}' WHERE seq = 6",
                                        "UPDATE audit_event SET reason = 'rewritten' WHERE seq = 11"],
    "a checkpoint rewritten": ["UPDATE audit_checkpoint SET head_hash = repeat('d', 64)"],
    "the head rewound": ["DELETE FROM audit_event WHERE seq > 6",
                         "UPDATE audit_chain_lock SET head_seq = 6, head_hash = (SELECT hash FROM audit_event "
                         "WHERE seq = 6)"],
    "nothing": [],
}


@postgresql_only
@pytest.mark.parametrize("statements", TAMPERS.values(), ids=TAMPERS.keys())
def test_the_database_walk_reports_exactly_what_the_walk_here_does(session, statements):
    """However the trail was changed, and however the chain is split, the report is the same, to the event and
    the word, as hashing every event here gives."""
    append(session, 7)
    audit.run_verification(session, "system:audit-verification")  # a checkpoint at event 7, inside a range
    session.commit()
    append(session, 6)
    tamper(session, *statements)
    here = audit.verify_chain(session, in_database=False)
    session.rollback()
    for ranges in (1, 2, 3, 5, 20):
        assert audit.verify_chain(session, ranges=ranges) == here, ranges
        session.rollback()
    assert here.ok == (statements in ([], TAMPERS["another spelling, same content"])), here


# -- the offline verifier over an export ----------------------------------------------------------------------


def export_lines(session) -> list[str]:
    from backoffice.services import audit_export

    return list(audit_export.jsonl(session, audit_export.ExportRange(), "auditor@example.org"))


def verify_lines(lines: list[str]):
    from backoffice import auditverify

    return auditverify.verify_records(auditverify.read_jsonl(lines))


def test_export_lines_carry_the_hashed_text_and_verify_without_decoding(session):
    from backoffice import auditverify

    for _, after, reason in AWKWARD:
        audit.record(session, "system:test", "thing.changed", "thing", 1, after=after, reason=reason)
    session.commit()
    lines = export_lines(session)
    events = [line for line in lines if '"record":"event"' in line]
    checked = [auditverify.read_event_line(line) for line in events]
    assert len(checked) == len(AWKWARD) and all(event is not None and event.intact for event in checked)
    report = verify_lines(lines)
    assert report.ok and report.checked == len(AWKWARD), report


def test_a_byte_changed_in_an_export_line_is_caught(session):
    append(session, 3)
    lines = export_lines(session)
    at = next(i for i, line in enumerate(lines) if '"seq":2,' in line)
    lines[at] = lines[at].replace('"reason":"because"', '"reason":"becausE"')
    report = verify_lines(lines)
    assert not report.ok and report.first_bad_seq == 2 and "altered" in report.problem, report


def test_an_export_line_written_in_another_layout_is_judged_by_its_fields(session):
    import json

    append(session, 3)
    lines = export_lines(session)
    at = next(i for i, line in enumerate(lines) if '"seq":2,' in line)
    record = json.loads(lines[at])
    lines[at] = json.dumps(dict(reversed(list(record.items())))) + "\n"  # same content, other key order
    assert verify_lines(lines).ok
    record["reason"] = "rewritten"
    lines[at] = json.dumps(record) + "\n"
    report = verify_lines(lines)
    assert not report.ok and report.first_bad_seq == 2, report


def test_ranges_read_at_once_take_at_most_half_the_pool():
    # The walk holds a connection already; readers beyond half the pool wait for one to finish instead.
    assert audit._spare_connections(create_engine("postgresql://nobody@127.0.0.1:1/none")) == 7  # 5 + 10
    assert audit._spare_connections(create_engine("postgresql://nobody@127.0.0.1:1/none", pool_size=2,
                                                  max_overflow=0)) == 1
    assert audit._spare_connections(create_engine("sqlite://")) == 1
