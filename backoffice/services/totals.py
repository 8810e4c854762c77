"""How many rows a staff list holds, said honestly and cheaply.

Up to EXACT_UP_TO rows a list is counted exactly (a count that stops there reads at most that many index
entries). Beyond it an exact COUNT(*) over millions of check runs or audit events would cost more than the
page itself, so the total is an estimate and says so: PostgreSQL's planner estimate (the table's statistics
for a whole table, the plan's row estimate for a filtered list), or on SQLite, for a whole table, the span of
its ids; a filtered list on SQLite says "more than 10,000".
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Select, func, select, text
from sqlalchemy.exc import CompileError
from sqlalchemy.orm import Session

EXACT_UP_TO = 10_000


@dataclass(frozen=True)
class Total:
    count: int
    exact: bool = True  # False: an estimate, "about"
    at_least: bool = False  # True: only known to be more than `count`

    def words(self, one: str, many: str) -> str:
        """ "1 provider", "1,872 providers", "about 2.0 million check runs", "more than 10,000 findings"."""
        if self.at_least:
            return f"more than {self.count:,} {many}"
        if self.exact:
            return f"{self.count:,} {one if self.count == 1 else many}"
        return f"about {_rounded(self.count)} {many}"


def _rounded(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} million"
    if n >= 100_000:
        return f"{round(n, -4):,}"
    return f"{round(n, -3):,}"


def of(session: Session, ids: Select, *, table: str | None = None, key=None, exact_up_to: int | None = None) -> Total:
    """The total of a list whose rows `ids` selects (one column, no ORDER BY needed). `table` and `key` (its
    primary-key column) are given when the list is the whole table, unfiltered. `exact_up_to` lowers the
    bound for a list whose rows are dear to test one by one (the queue's state filter, a search)."""
    bound = exact_up_to or EXACT_UP_TO
    bounded = session.scalars(
        select(func.count()).select_from(ids.order_by(None).limit(bound + 1).subquery())).one()
    if bounded <= bound:
        return Total(bounded)
    if session.get_bind().dialect.name == "postgresql":
        estimate = _planner_rows(session, table) if table else _plan_rows(session, ids)
        if estimate and estimate > bound:
            return Total(estimate, exact=False)
    elif table and key is not None:
        # Two statements: SQLite answers min() alone and max() alone from the primary key, both in one by a scan.
        low, high = session.scalar(select(func.min(key))), session.scalar(select(func.max(key)))
        if low is not None and high - low + 1 > bound:
            return Total(high - low + 1, exact=False)
    return Total(bound, at_least=True)


def _planner_rows(session: Session, table: str) -> int | None:
    """The table's row count as the statistics have it (ANALYZE, autovacuum); None before any."""
    rows = session.scalar(text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:table)"),
                          {"table": table})
    return int(rows) if rows is not None and rows >= 0 else None


def _plan_rows(session: Session, ids: Select) -> int | None:
    """The planner's estimate of how many rows the query returns (EXPLAIN, nothing is run)."""
    try:
        compiled = ids.order_by(None).compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    except (CompileError, NotImplementedError):  # a value with no literal form: say "more than" instead
        return None
    plan = session.scalar(text(f"EXPLAIN (FORMAT JSON) {compiled}"))
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])
