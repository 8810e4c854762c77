"""Tasks are sent only after the transaction that asked for them commits."""
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from backoffice.dispatch import after_commit
from backoffice.extensions import db


class RecordingTask:
    """A task stand-in that records, through its own connection, whether the asking change was committed."""

    def __init__(self, engine):
        self.engine = engine
        self.sent: list[tuple] = []

    def apply_async(self, args=(), kwargs=None):
        with self.engine.connect() as conn:
            committed = conn.execute(text("SELECT count(*) FROM criteria_catalogue WHERE version = 99")).scalar()
        self.sent.append((args, committed))


@pytest.fixture
def task(app):
    return RecordingTask(db.engine)


def write_marker(session):
    session.execute(text("INSERT INTO criteria_catalogue (version, published_at, published_by) "
                         "VALUES (99, CURRENT_TIMESTAMP, 'system:test')"))


def test_a_task_is_sent_after_the_commit_is_visible_to_others(session, task):
    write_marker(session)
    after_commit(session, task, "a")
    assert task.sent == []
    session.commit()
    assert task.sent == [(("a",), 1)]


def test_a_rolled_back_transaction_sends_nothing(session, task):
    after_commit(session, task, "a")
    session.rollback()
    session.commit()
    assert task.sent == []


def test_a_closed_session_sends_nothing_later(app, task):
    with Session(db.engine) as first:
        after_commit(first, task, "abandoned")
    with Session(db.engine) as second:
        write_marker(second)
        second.commit()
    assert task.sent == []


def test_a_savepoint_rollback_drops_only_its_own_tasks(session, task):
    write_marker(session)
    after_commit(session, task, "outer")
    try:
        with session.begin_nested():
            after_commit(session, task, "inner")
            raise RuntimeError
    except RuntimeError:
        pass
    with session.begin_nested():
        after_commit(session, task, "released")
    assert task.sent == []
    session.commit()
    assert [args for args, _ in task.sent] == [("outer",), ("released",)]
