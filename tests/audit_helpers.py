"""Filling and tampering with the audit trail in tests."""
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from backoffice.models import Base
from backoffice.models.audit_coverage import TABLES
from backoffice.services import audit
from tests.conftest import BACKEND

GUARDED_TABLES = ("audit_event", "audit_chain_lock", "audit_checkpoint")
SQLITE_GUARDS = ("audit_event_no_update", "audit_event_no_delete", "audit_chain_lock_no_rewind",
                 "audit_checkpoint_no_update", "audit_checkpoint_no_delete")


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


# -- audit coverage: table snapshots around one operation -------------------------------------------------------


def table_rows(connection) -> dict[str, dict[tuple, dict]]:
    """Every row of every table by primary key."""
    rows = {}
    for table in Base.metadata.sorted_tables:
        key = [column.name for column in table.primary_key.columns]
        rows[table.name] = {tuple(row[k] for k in key): dict(row)
                            for row in connection.execute(select(table)).mappings()}
    return rows


def _naming_events(entry, row: dict, events: list[dict]) -> list[dict]:
    return [event for event in events
            if any(event["entity_type"] == entity_type and row.get(column) is not None
                   and event["entity_id"] == str(row[column]) for entity_type, column in entry.named_by)]


def unaccounted(before: dict, after: dict) -> tuple[list[str], list[dict]]:
    """Changes to audited columns between two snapshots that no audit event of the same span accounts for (see
    backoffice.models.audit_coverage.Coverage), and the new events."""
    events = [after["audit_event"][key] for key in sorted(after["audit_event"].keys() - before["audit_event"].keys())]
    problems = []
    for table, entry in TABLES.items():
        if not entry.audited or table not in after:
            continue
        old, new = before.get(table, {}), after[table]
        for key in new.keys() - old.keys():
            if not (entry.any_event_names_new_rows and events) and not _naming_events(entry, new[key], events):
                problems.append(f"new {table} row {key} without an event naming it")
        for key in old.keys() - new.keys():
            if not _naming_events(entry, old[key], events):
                problems.append(f"{table} row {key} removed without an event naming it")
        for key in old.keys() & new.keys():
            changed = sorted(c for c in entry.audited if old[key][c] != new[key][c])
            if not changed:
                continue
            naming = _naming_events(entry, new[key], events)
            if not naming:
                problems.append(f"{table} row {key}: {', '.join(changed)} changed without an event naming the row")
                continue
            named = set().union(*((event["before"] or {}).keys() | (event["after"] or {}).keys() for event in naming))
            silent = sorted(set(changed) & entry.named_fields - named)
            if silent:
                problems.append(f"{table} row {key}: {', '.join(silent)} changed but no event names the field "
                                f"(events: {', '.join(e['action'] for e in naming)})")
    return problems, events


class AuditWalk:
    """Runs operations one at a time (a page request, a task, a command) and keeps every change to an audited
    column that no audit event of the same commit accounts for: all tables are read before the operation and
    again after each commit it makes, on a connection of their own."""

    def __init__(self, session):
        self.session = session
        self.engine = session.get_bind()
        self.problems: list[str] = []
        self.actions: dict[str, list[str]] = {}
        self.commits: dict[str, int] = {}

    def _read(self) -> dict:
        with self.engine.connect() as connection:
            return table_rows(connection)

    def step(self, name: str, operation, *, expect: tuple[str, ...] = ()):
        self.session.rollback()
        snapshots = [self._read()]

        def committed(session):
            snapshots.append(self._read())

        event.listen(Session, "after_commit", committed)
        try:
            result = operation()
        finally:
            event.remove(Session, "after_commit", committed)
        self.session.rollback()
        snapshots.append(self._read())
        actions = []
        for n, (before, after) in enumerate(zip(snapshots, snapshots[1:], strict=False), 1):
            problems, events = unaccounted(before, after)
            actions += [e["action"] for e in events]
            self.problems += [f"{name} (commit {n}): {problem}" for problem in problems]
        self.actions[name] = actions
        self.commits[name] = len(snapshots) - 2
        self.problems += [f"{name}: no {action} event (events: {actions})"
                          for action in expect if action not in actions]
        return result

    def events(self, name: str) -> list[str]:
        return self.actions[name]

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)
