"""Filling and tampering with the audit trail in tests."""
from sqlalchemy import text

from backoffice.services import audit
from tests.conftest import BACKEND

GUARDED_TABLES = ("audit_event", "audit_chain_lock")
SQLITE_GUARDS = ("audit_event_no_update", "audit_event_no_delete", "audit_chain_lock_no_rewind")


def append(session, n, action="test.event", provider_id=1):
    for i in range(n):
        audit.record(session, "system:test", action, "thing", i, before={"n": i}, after={"n": i + 1},
                     reason="because", provider_id=provider_id)
    session.commit()


def tamper(session, *statements, **params):
    """Change the trail behind the triggers' back, as someone with database access could."""
    if BACKEND == "postgresql":
        for table in GUARDED_TABLES:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
    else:
        for name in SQLITE_GUARDS:
            session.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
    for statement in statements:
        session.execute(text(statement), params)
    if BACKEND == "postgresql":
        for table in GUARDED_TABLES:
            session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
    session.commit()
