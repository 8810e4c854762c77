"""provider_code, the index of a provider's coded lists: rewritten whenever one of the lists is flushed.

A session hook rather than a call at each place that writes a provider (the profile of an approved request,
imports, the demo), so no writer can leave the index behind its lists. Bulk Core inserts, which bypass the ORM
(the benchmark's dataset builder), call `rows_for` themselves.
"""
from __future__ import annotations

from typing import Any, Iterable

from sqlalchemy import delete, event, insert, inspect
from sqlalchemy.orm import Session, UOWTransaction

from backoffice.models import CODED_LISTS, Provider, ProviderCode

CODE_LENGTH = 200  # provider_code.code's length


def rows_for(provider_id: int, lists: dict[str, Iterable[str] | None]) -> list[dict[str, Any]]:
    """The provider_code rows of one provider's lists (attribute name -> values); each code once per kind."""
    rows = []
    for attribute, kind in CODED_LISTS.items():
        codes = {str(value)[:CODE_LENGTH] for value in lists.get(attribute) or [] if value is not None}
        rows += [{"kind": kind, "code": code, "provider_id": provider_id} for code in sorted(codes)]
    return rows


@event.listens_for(Session, "after_flush")
def _index_coded_lists(session: Session, flush_context: UOWTransaction) -> None:
    changed = [obj for obj in (*session.new, *session.dirty) if isinstance(obj, Provider)
               and any(inspect(obj).attrs[name].history.has_changes() for name in CODED_LISTS)]
    if not changed:
        return
    connection = session.connection()
    ids = [provider.id for provider in changed]
    connection.execute(delete(ProviderCode).where(ProviderCode.provider_id.in_(ids)))
    rows = [row for provider in changed
            for row in rows_for(provider.id, {name: getattr(provider, name) for name in CODED_LISTS})]
    if rows:
        connection.execute(insert(ProviderCode), rows)
