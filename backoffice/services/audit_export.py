"""Exports of the audit trail, streamed: a header, the checkpoints, then the events, in constant memory.

Each event carries `actor_name` beside its `actor` label: the person's name and e-mail for a reader. It is not
part of the hashed content (auditverify.py checks only the hashed fields), so an export verifies as before.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from backoffice import auditverify
from backoffice.auditverify import CSV_COLUMNS
from backoffice.models import AuditEvent, utcnow
from backoffice.services import accounts, audit

# The verifier's columns, then what is only for reading.
EXPORT_COLUMNS = (*CSV_COLUMNS, "actor_name")


@dataclass(frozen=True)
class ExportRange:
    """A contiguous range of the chain (by seq), or one provider's events."""

    from_seq: int = 1
    to_seq: int | None = None
    provider_id: int | None = None

    @property
    def contiguous(self) -> bool:
        return self.provider_id is None

    def describe(self) -> dict:
        return {"from_seq": self.from_seq, "to_seq": self.to_seq, "provider_id": self.provider_id}


def record_export(session: Session, actor: audit.Actor, fmt: str, selection: ExportRange) -> None:
    """An export is itself audited (who took what, in which format), in the transaction before it is sent."""
    audit.record(session, actor, "audit.exported", "audit_trail", "export",
                 after={"format": fmt, **selection.describe()})


def seq_range_for_dates(session: Session, start: datetime | None, end: datetime | None) -> tuple[int, int | None]:
    """Events are chained at commit under a lock, so seq order is time order: a date range is a seq range."""
    # One step along the occurred_at index each way, instead of MIN/MAX over the whole span.
    first = 1
    if start is not None:
        first = session.scalar(select(AuditEvent.seq).where(AuditEvent.occurred_at >= start)
                               .order_by(AuditEvent.occurred_at, AuditEvent.seq).limit(1)) or 0
        if not first:
            return 1, 0  # nothing at or after the start
    last = None
    if end is not None:
        last = session.scalar(select(AuditEvent.seq).where(AuditEvent.occurred_at < end)
                              .order_by(AuditEvent.occurred_at.desc(), AuditEvent.seq.desc()).limit(1)) or 0
    return first, last


def records(session: Session, selection: ExportRange, exported_by: str) -> Iterator[dict]:
    bounds = audit.chain_bounds(session)  # appends and verifications meanwhile stay out of the export
    head_seq, head_hash = bounds.head_seq, bounds.head_hash
    through_head = selection.contiguous and selection.from_seq <= 1 and (
        selection.to_seq is None or selection.to_seq >= head_seq)
    yield {
        "record": "export", "contiguous": selection.contiguous, "through_head": through_head,
        "head_seq": head_seq, "head_hash": head_hash, "filters": selection.describe(),
        "exported_at": audit.jsonable(utcnow()), "exported_by": exported_by,
    }
    yield from audit.checkpoint_records(session, bounds.checkpoint_id)
    to_seq = head_seq if selection.to_seq is None else min(selection.to_seq, head_seq)
    yield from with_actor_names(session, audit.iter_event_rows(session, 5_000, from_seq=selection.from_seq,
                                                               to_seq=to_seq, provider_id=selection.provider_id))


def with_actor_names(session: Session, rows: Iterator[dict]) -> Iterator[dict]:
    """Each event row with `actor_name` beside its actor; each distinct actor is looked up once."""
    names: dict[str, str] = {}
    for row in rows:
        actor = row.get("actor")
        if row.get("record") == "event" and actor is not None:
            if actor not in names:
                names.update(accounts.actor_names(session, {actor}))
            row = {**row, "actor_name": names[actor]}
        yield row


def jsonl(session: Session, selection: ExportRange, exported_by: str) -> Iterator[str]:
    """One JSON object a line; events in the layout whose hashed text a verifier reads off the line itself
    (auditverify.event_line), every other record as plain compact JSON."""
    for record in records(session, selection, exported_by):
        if record["record"] == "event":
            yield auditverify.event_line({name: record[name] for name in auditverify.HASHED_FIELDS},
                                         record.get("actor_name"), record["prev_hash"], record["hash"]) + "\n"
        else:
            yield json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_lines(session: Session, selection: ExportRange, exported_by: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="raise")
    writer.writeheader()
    for record in records(session, selection, exported_by):
        # Every cell is a JSON value, so that null and empty text stay distinct and the hash can be recomputed.
        writer.writerow({key: json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                         for key, value in record.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
