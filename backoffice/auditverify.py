#!/usr/bin/env python3
"""Verify an exported audit trail without trusting the database. Standard library only.

    python backoffice/auditverify.py EXPORT.jsonl [--expect-head SEQ:HASH]     (or EXPORT.csv)

The header of an export is written by whoever holds the file, so the strongest check compares the chain
with a head obtained some other way: the auditor dashboard shows the current head (event number and
hash); pass it as --expect-head and the export must contain exactly that event with exactly that hash.

Exit status 0 when the export verifies, 1 when it does not (the first event that fails is named),
2 when the file cannot be read.

How the chain works
  Every audit event carries `prev_hash` (the hash of the event before it; 64 zeros before the first)
  and `hash = sha256(prev_hash + canonical(fields))`, where `fields` are the event's seq, occurred_at,
  actor, action, entity_type, entity_id, provider_id, before, after, reason, request_id and ip, and
  `canonical` is JSON with sorted keys, no spaces and UTF-8 text. Changing, removing or re-ordering any
  event breaks its own hash or the next event's link.

What an export holds (one record per JSON line; in CSV one row per record, every cell a JSON value so
that null and empty text stay distinct)
  record "export"      the first record: `contiguous` (true for a seq range, false for a provider's
                       history), `head_seq` / `head_hash` of the chain when exported, `through_head`
                       (true when the range runs to that head)
  record "checkpoint"  a head recorded by the daily verification: `seq`, `hash`, `taken_at`
  record "event"       one audit event: the fields above plus `prev_hash` and `hash`

What is checked
  every event's hash from its own content; for a contiguous export, that seqs follow one another and
  each prev_hash is the hash before it (an export from seq 1 must start from 64 zeros); that every
  checkpoint inside the range matches the event at its seq; and, for an export through the head, that
  the events end exactly at the exported head and at or after the newest checkpoint, so that events
  removed from the end are caught.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "seq", "occurred_at", "actor", "action", "entity_type", "entity_id", "provider_id",
    "before", "after", "reason", "request_id", "ip",
)
CSV_COLUMNS = ("record", *HASHED_FIELDS, "prev_hash", "hash", "contiguous", "head_seq", "head_hash",
               "through_head", "taken_at", "filters", "exported_at", "exported_by")


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(fields)).encode("utf-8")).hexdigest()


class CheckedEvent(dict):
    """An event record whose hash a reader has already checked against its content (`intact`): the database
    walk, or an export line in the event layout below. Never built from a file's own claims."""

    intact: bool


def checked_or_matches(record: dict[str, Any]) -> bool:
    return record.intact if isinstance(record, CheckedEvent) else content_matches(record)


# The layout exports write each event line in: the canonical text of its hashed fields with the extra keys
# appended before the closing brace, so `line[:start of the suffix] + "}"` is exactly the hashed text:
#   {"action":...,"seq":N,"actor_name":"...","hash":"<64 hex>","prev_hash":"<64 hex>","record":"event"}
# A reader checks the hash over those bytes without decoding; any other line is decoded and judged by its fields.
_EVENT_TAIL = re.compile(r',"actor_name":(?:null|"(?:[^"\\]|\\.)*"),"hash":"([0-9a-f]{64})",'
                         r'"prev_hash":"([0-9a-f]{64})","record":"event"}\n?$')
_SEQ = re.compile(r',"seq":([0-9]+)$')


def event_line(fields: dict[str, Any], actor_name: str | None, prev_hash: str, digest: str) -> str:
    """One event as an export line in the layout above (fields: the hashed ones)."""
    text = canonical(fields)
    return (f'{text[:-1]},"actor_name":{json.dumps(actor_name, ensure_ascii=False)},"hash":"{digest}",'
            f'"prev_hash":"{prev_hash}","record":"event"}}')


def read_event_line(line: str) -> CheckedEvent | None:
    """An export line in the event layout, checked without decoding; None for any other line."""
    tail = _EVENT_TAIL.search(line)
    if tail is None:
        return None
    text = line[:tail.start()]
    seq = _SEQ.search(text)
    if seq is None or not text.startswith('{"action":'):
        return None
    digest, prev_hash = tail.group(1), tail.group(2)
    event = CheckedEvent(record="event", seq=int(seq.group(1)), prev_hash=prev_hash, hash=digest)
    event.intact = hashlib.sha256((prev_hash + text + "}").encode("utf-8")).hexdigest() == digest
    return event


@dataclass
class Result:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    note: str | None = None

    def __str__(self) -> str:
        if self.ok:
            text = f"OK: {self.checked} events verified"
            if self.last_seq:
                text += f", up to event {self.last_seq} (hash {self.last_hash})"
            return text + (f". {self.note}" if self.note else "")
        return f"BROKEN at event {self.first_bad_seq}: {self.problem} ({self.checked} events before it verified)"


PARTIAL_NOTE = ("This is one provider's history: each event matches its own hash, but a subset cannot prove that "
                "no event is missing; verify a full export for that.")


def _header_problem(header: dict[str, Any]) -> str | None:
    """The header's claims must follow from its own filters, so a flag cannot be flipped to skip a check."""
    filters = header.get("filters") if isinstance(header.get("filters"), dict) else {}
    contiguous = filters.get("provider_id") is None
    if bool(header.get("contiguous")) != contiguous:
        return "the export header contradicts its own filters (contiguous)"
    head_seq = int(header.get("head_seq") or 0)
    to_seq = filters.get("to_seq")
    through = contiguous and int(filters.get("from_seq") or 1) <= 1 and (to_seq is None or int(to_seq) >= head_seq)
    if bool(header.get("through_head")) != through:
        return "the export header contradicts its own filters (through_head)"
    return None


def content_matches(record: dict[str, Any]) -> bool:
    """An event record's hash is the hash of its content and of the hash it names before it."""
    return compute_hash(record["prev_hash"], {name: record[name] for name in HASHED_FIELDS}) == record["hash"]


def verify_records(records: Iterable[dict[str, Any]], expect_head: tuple[int, str] | None = None,
                   content_ok: Callable[[dict[str, Any]], bool] = checked_or_matches) -> Result:
    """Check an export's records (header first, then checkpoints and events in any order of kind).
    `content_ok` checks one event's hash against its content: by default from its fields, or, for an event a
    reader checked on the way (a CheckedEvent: the database walk, an export line in the event layout), what
    that reader found."""
    header: dict[str, Any] | None = None
    checkpoints: dict[int, str] = {}
    newest_checkpoint = 0
    checked, prev_hash, prev_seq = 0, None, None
    for record in records:
        kind = record.get("record")
        if kind == "export":
            header = record
            problem = _header_problem(header)
            if problem:
                return Result(False, 0, None, problem)
            continue
        if kind == "checkpoint":
            checkpoints[int(record["seq"])] = record["hash"]
            newest_checkpoint = max(newest_checkpoint, int(record["seq"]))
            continue
        if kind != "event":
            return Result(False, checked, None, f"unknown record kind {kind!r}")
        if header is None:
            return Result(False, checked, None, "the export header is missing: it must be the first record")
        seq = int(record["seq"])
        contiguous = bool(header.get("contiguous"))
        if prev_seq is not None and seq <= prev_seq:
            return Result(False, checked, seq, f"event {seq} comes after event {prev_seq}: events are out of order")
        if contiguous:
            expected = prev_seq + 1 if prev_seq is not None else _first_seq(header)
            if seq != expected:
                return Result(False, checked, expected, f"event {expected} is missing")
            if seq == 1 and record["prev_hash"] != GENESIS_HASH:
                return Result(False, checked, seq, "the first event does not start from the genesis hash")
            if prev_hash is not None and record["prev_hash"] != prev_hash:
                return Result(False, checked, seq, "prev_hash does not match the hash of the event before it")
        if not content_ok(record):
            return Result(False, checked, seq, "content does not match its hash: the event was altered")
        if seq in checkpoints and checkpoints[seq] != record["hash"]:
            return Result(False, checked, seq, "the event differs from the daily checkpoint taken at it")
        if expect_head and seq == expect_head[0] and record["hash"] != expect_head[1]:
            return Result(False, checked, seq, "the event differs from the head you expected")
        prev_hash, prev_seq, checked = record["hash"], seq, checked + 1
    if header is None:
        return Result(False, 0, None, "the export header is missing")
    if header.get("through_head"):
        head_seq = int(header.get("head_seq") or 0)
        if (prev_seq or 0) != head_seq or (prev_hash or GENESIS_HASH) != (header.get("head_hash") or GENESIS_HASH):
            return Result(False, checked, (prev_seq or 0) + 1,
                          f"the chain's recorded head is event {head_seq}, but the events end at "
                          f"{prev_seq or 0}: events at the end are missing")
        if newest_checkpoint > (prev_seq or 0):
            return Result(False, checked, (prev_seq or 0) + 1,
                          f"a checkpoint was taken at event {newest_checkpoint}, but the events end at "
                          f"{prev_seq or 0}: events at the end are missing")
    if expect_head and (prev_seq or 0) < expect_head[0]:
        return Result(False, checked, (prev_seq or 0) + 1,
                      f"the events end at {prev_seq or 0}, before the head you expected (event {expect_head[0]})")
    note = None if header.get("contiguous") else PARTIAL_NOTE
    return Result(True, checked, last_seq=prev_seq, last_hash=prev_hash, note=note)


def _first_seq(header: dict[str, Any]) -> int:
    """Where a contiguous export starts: its `from_seq` filter, else the beginning of the chain."""
    filters = header.get("filters") if isinstance(header.get("filters"), dict) else {}
    return int(filters.get("from_seq") or 1)


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        event = read_event_line(line)
        if event is not None and event.intact:
            yield event
        elif line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number} is not JSON: {exc.msg}") from None


def read_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(lines)
    for row in reader:
        try:
            yield {key: json.loads(value) for key, value in row.items() if value not in (None, "")}
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {reader.line_num}: a cell is not a JSON value ({exc.msg})") from None


def verify_file(path: str, expect_head: tuple[int, str] | None = None) -> Result:
    with open(path, encoding="utf-8", newline="") as handle:
        first = handle.read(1)
        handle.seek(0)
        records = read_jsonl(handle) if first == "{" else read_csv(handle)
        return verify_records(records, expect_head)


def parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("--expect-head takes SEQ:HASH, e.g. 1234:<64 hex characters>")
    return int(seq), digest


def main(argv: list[str]) -> int:
    args = argv[1:]
    expect_head = None
    if "--expect-head" in args:
        at = args.index("--expect-head")
        try:
            expect_head = parse_head(args[at + 1])
        except (IndexError, ValueError) as exc:
            print(exc, file=sys.stderr)
            return 2
        del args[at:at + 2]
    if len(args) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        result = verify_file(args[0], expect_head)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read {args[0]}: {exc}", file=sys.stderr)
        return 2
    print(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
