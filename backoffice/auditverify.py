#!/usr/bin/env python3
"""Verify an exported audit trail without trusting the database. Standard library only (and, for signed
checkpoints, `cryptography` through jws.py beside this file).

    python backoffice/auditverify.py EXPORT.jsonl [--expect-head SEQ:HASH] [--checkpoints DIR --jwks FILE]
                                                  [--jobs N]

The header of an export is written by whoever holds the file, so the strongest check compares the chain
with a head obtained some other way: the signed checkpoints the back-office publishes outside its database
(--checkpoints: the folder of CHECKPOINT_PUBLISH_DIR, or the copies mailed to auditors; --jwks: the JWK set
of /.well-known/jwks.json), or the current head the auditor dashboard shows (--expect-head SEQ:HASH, which
the export must contain exactly).

A large export of the whole chain is read in parts side by side, one process per core (--jobs N to choose;
--jobs 1 reads it in one process); the verdict is the same either way.

Exit status 0 when the export verifies, 1 when it does not (the first event that fails, or the signed
checkpoint it disagrees with, is named), 2 when a file cannot be read.

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
  removed from the end are caught; for one provider's history, that every event is that provider's.

Signed checkpoints (--checkpoints DIR --jwks FILE)
  Each file NNNNNNNN.jws in DIR is a compact JWS (Ed25519) whose payload names its own `number`, the head
  it vouches for (`seq`, `hash`, `taken_at`) and `previous`, the SHA-256 of the previous file's bytes, so
  the folder is itself a chain: a removed, renamed, reordered or rewritten file breaks it, and a file not
  signed by a key of the key set (within the period the key signed in) is refused. The export must then
  reach the newest signed checkpoint and agree with every one it contains: a head rewound over cut events,
  a chain rewritten and re-hashed, or a full export relabelled as one provider's history all fail, naming
  the checkpoint and why.
"""
from __future__ import annotations

import bisect
import csv
import hashlib
import importlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence

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
    walk, or an export line in the event layout below. Never built from a file's own claims. `text` is the
    hashed text, for the rare check that needs a field the fast reading leaves in it (provider_of)."""

    __slots__ = ("intact", "text")
    intact: bool
    text: str


@dataclass(frozen=True)
class CheckedRun:
    """Events `first_seq` to `last_seq`, every one of them present, each naming the hash of the one before it and
    matching its own hash, as a reader checked them on the way (the database's own walk, which hands on only
    these bounds), so that they are not read one by one. `prev_hash` is what the first one names before it,
    `hash` the last one's. Never built from a file's own claims. It covers no checkpoint: the reader hands the
    events at checkpoints on one by one, as their hashes are checked against them."""

    first_seq: int
    last_seq: int
    prev_hash: str
    hash: str


def checked_or_matches(record: dict[str, Any]) -> bool:
    return record.intact if isinstance(record, CheckedEvent) else content_matches(record)


# The layout exports write each event line in: the canonical text of its hashed fields with the extra keys
# appended before the closing brace, so `line[:start of the suffix] + "}"` is exactly the hashed text:
#   {"action":...,"seq":N,"actor_name":"...","hash":"<64 hex>","prev_hash":"<64 hex>","record":"event"}
# A reader checks the hash over those bytes without decoding; any other line is decoded and judged by its fields.
_EVENT_TAIL = re.compile(r',"actor_name":(?:null|"(?:[^"\\]|\\.)*"),"hash":"([0-9a-f]{64})",'
                         r'"prev_hash":"([0-9a-f]{64})","record":"event"}\n?$')
_SEQ = re.compile(r',"seq":([0-9]+)$')
_TAIL_LENGTH = len(',"hash":"') + 64 + len('","prev_hash":"') + 64 + len('","record":"event"}')  # 171


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
    event.text = text
    return event


_PROVIDER = re.compile(r',"provider_id":(null|-?[0-9]+),"reason":')


def provider_of(record: dict[str, Any]) -> int | None:
    """The provider an event names. In the hashed text the real field is the last `"provider_id":` key: the
    fields after it (reason, request_id, seq) are text or numbers, where a quote is always escaped."""
    if not isinstance(record, CheckedEvent):
        return record.get("provider_id")
    matches = _PROVIDER.findall(record.text[record.text.rfind(',"provider_id":'):])
    return None if not matches or matches[0] == "null" else int(matches[0])


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
        if self.first_bad_seq is None:  # the export as a whole, or the signed checkpoints, not one event
            return f"BROKEN: {self.problem} ({self.checked} events checked)"
        return f"BROKEN at event {self.first_bad_seq}: {self.problem} ({self.checked} events before it verified)"


PARTIAL_NOTE = ("This is one provider's history: each event matches its own hash, but a subset cannot prove that "
                "no event is missing; verify a full export for that.")


# -- signed checkpoints, as published outside the database (services/audit_publish.py writes them) ----------

CHECKPOINT_TYP = "audit-checkpoint+jws"
CHECKPOINT_NAME = re.compile(r"^([0-9]{8})\.jws$")


def checkpoint_file_name(number: int) -> str:
    return f"{number:08d}.jws"


@dataclass(frozen=True)
class SignedCheckpoint:
    """One published checkpoint, its signature and its place in the folder's chain checked."""

    number: int
    file: str
    seq: int
    hash: str
    taken_at: str
    occasion: str
    digest: str  # SHA-256 of the file's bytes: what the next checkpoint names as `previous`

    def __str__(self) -> str:
        return f"signed checkpoint {self.number} ({self.file}, event {self.seq})"


class CheckpointsRefused(Exception):
    """The published checkpoints are not an unbroken chain signed by a trusted key; the message says where."""


def _jws() -> Any:
    """jws.py, imported only to read signed checkpoints: it needs `cryptography`, which nothing else here does.
    Run as a file, this script finds it beside itself; imported, in its package."""
    return importlib.import_module(f"{__package__}.jws" if __package__ else "jws")


def _signed_payload(payload: dict[str, Any], name: str, digest: str) -> SignedCheckpoint:
    number, seq, head, taken_at = (payload.get(k) for k in ("number", "seq", "hash", "taken_at"))
    if (not isinstance(number, int) or not isinstance(seq, int) or not isinstance(head, str)
            or not re.fullmatch(r"[0-9a-f]{64}", head) or not isinstance(taken_at, str)):
        raise CheckpointsRefused(f"{name} is signed but is not a checkpoint (number, seq, hash, taken_at)")
    return SignedCheckpoint(number, name, seq, head, taken_at, str(payload.get("occasion") or ""), digest)


def _checkpoint_files(directory: str) -> dict[int, str]:
    """The folder's checkpoint files by number; a file of any other name is refused."""
    files: dict[int, str] = {}
    for name in os.listdir(directory):
        if name.startswith("."):
            continue  # a file the publisher is still writing, linked into place under its own name when done
        match = CHECKPOINT_NAME.match(name)
        if match is None:
            raise CheckpointsRefused(f"{name} in the checkpoint folder is not a checkpoint (NNNNNNNN.jws): "
                                     f"something other than the back-office wrote there")
        files[int(match.group(1))] = name
    return files


def _identity(status: os.stat_result) -> tuple[int, int, int, int, int]:
    """What changes when a file is rewritten, replaced or touched: device, inode, size, mtime and ctime."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def _read_next(jws: Any, keys: Mapping[str, Any], directory: str, number: int, name: str,
               checkpoints: list[SignedCheckpoint]) -> os.stat_result:
    """Check checkpoint `number` (file `name`) after `checkpoints`, the ones before it, and append it; returns
    the file's status as it was when read (taken before its bytes, so a later change shows in a later stat)."""
    with open(os.path.join(directory, name), "rb") as handle:
        status = os.fstat(handle.fileno())
        data = handle.read()
    try:
        verified = jws.verify_compact(data.decode("ascii"), keys, CHECKPOINT_TYP)
    except (UnicodeDecodeError, jws.Refused) as error:
        reason = "it is not ASCII text" if isinstance(error, UnicodeDecodeError) else str(error)
        raise CheckpointsRefused(f"checkpoint {number} ({name}) is refused: {reason}") from None
    checkpoint = _signed_payload(verified.payload, name, hashlib.sha256(data).hexdigest())
    if checkpoint.number != number:
        raise CheckpointsRefused(f"{name} holds checkpoint {checkpoint.number}, not {number}: the files were "
                                 f"renamed or reordered")
    try:
        taken_at = jws.parse_rfc3339(checkpoint.taken_at, f"taken_at of checkpoint {number}")
    except jws.Refused as error:
        raise CheckpointsRefused(f"checkpoint {number} ({name}) is refused: {error}") from None
    if not verified.key.covers(taken_at):
        raise CheckpointsRefused(f"checkpoint {number} ({name}) is signed by key {verified.key.kid}, which "
                                 f"did not sign at {checkpoint.taken_at} (outside the period the key set gives it)")
    previous = checkpoints[-1] if checkpoints else None
    if verified.payload.get("previous") != (previous.digest if previous else None):
        raise CheckpointsRefused(
            f"checkpoint {number} ({name}) names a previous checkpoint other than {previous.file} as it is "
            f"now: {previous.file} was rewritten or replaced" if previous else
            f"checkpoint 1 ({name}) names a checkpoint before it: the folder's first files were removed")
    if previous and checkpoint.seq < previous.seq:
        raise CheckpointsRefused(f"checkpoint {number} ({name}) is at event {checkpoint.seq}, before "
                                 f"{previous} : the chain's head went back between them")
    # The head never goes back (checked just above), so an earlier checkpoint at this event is the previous one.
    if previous and previous.seq == checkpoint.seq and previous.hash != checkpoint.hash:
        raise CheckpointsRefused(f"checkpoint {number} ({name}) gives event {checkpoint.seq} another hash than "
                                 f"{previous}: the chain was rewritten between them")
    checkpoints.append(checkpoint)
    return status


class VerifiedPrefix:
    """What read_checkpoints verified in one folder with one key set, remembered (in this process) so that the
    next reading reads and verifies only the files added since: for each file its identity when it was read
    (device, inode, size, mtime, ctime) and the checkpoint it held.

    A file is taken as verified only while its identity is unchanged and it had settled when read: its ctime at
    least SETTLE_NS before that reading, because a file's times are kept at the file system's coarse clock and
    a rewrite in the same tick as the reading would not show. Any remembered file changed or gone, a gap in the
    numbers, another folder or another key set: every file is read again and judged afresh. A refusal forgets
    everything, so a broken folder is read whole each time, as without this."""

    SETTLE_NS = 2_000_000_000

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._source: tuple[str, tuple] | None = None
        self._identities: list[tuple[tuple[int, int, int, int, int], bool]] = []  # (identity, settled) by position
        self._checkpoints: list[SignedCheckpoint] = []
        self.last_read = 0  # how many files the last reading read and verified

    @property
    def remembered(self) -> int:
        """How many files are remembered as verified."""
        return len(self._identities)

    def forget(self) -> None:
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._source, self._identities, self._checkpoints = None, [], []

    def _trusted(self, source: tuple[str, tuple], directory: str, files: dict[int, str]) -> int:
        """How many of the folder's first files can be taken as verified; 0 forces reading them all."""
        if source != self._source or len(files) < len(self._identities) or max(files, default=0) != len(files):
            return 0
        if os.stat not in os.supports_dir_fd:
            return 0  # where a file cannot be looked up in an open folder (Windows), every file is read
        try:
            folder = os.open(directory, os.O_RDONLY)
        except OSError:
            return 0
        try:
            now = [_identity(os.stat(files[position], dir_fd=folder))
                   for position in range(1, len(self._identities) + 1)]
        except OSError:
            return 0
        finally:
            os.close(folder)
        if now != [identity for identity, _ in self._identities]:
            return 0
        # Read again from the first file that was too fresh, when read, to trust its times.
        return next((position for position, (_, settled) in enumerate(self._identities) if not settled),
                    len(self._identities))

    def read(self, directory: str, keys: Mapping[str, Any], jws: Any, every_file: bool = False) -> list[SignedCheckpoint]:
        """The folder's checkpoints, reading only the files not remembered (all of them with `every_file`, which
        forgets what was remembered in the same step, so no other reading can refill it in between)."""
        source = (directory, _key_set_identity(jws, keys))
        with self._lock:
            self.last_read = 0
            try:
                files = _checkpoint_files(directory)
                trusted = 0 if every_file else self._trusted(source, directory, files)
                if trusted == 0:
                    self._forget()
                self._source = source
                del self._identities[trusted:], self._checkpoints[trusted:]
                for position, number in enumerate(sorted(files)[trusted:], start=trusted + 1):
                    if number != position:
                        raise CheckpointsRefused(f"checkpoint {position} ({checkpoint_file_name(position)}) is "
                                                 f"missing: its file was removed or renamed")
                    status = _read_next(jws, keys, directory, number, files[number], self._checkpoints)
                    self.last_read += 1
                    self._identities.append(
                        (_identity(status), status.st_ctime_ns <= self._clock() - self.SETTLE_NS))
            except BaseException:
                self._forget()
                raise
            return list(self._checkpoints)


def _key_set_identity(jws: Any, keys: Mapping[str, Any]) -> tuple:
    return tuple(sorted((kid, jws.raw_public_key(key.key), key.valid_from, key.valid_until)
                        for kid, key in keys.items()))


def read_checkpoints(directory: str, keys: Mapping[str, Any], known: VerifiedPrefix | None = None,
                     every_file: bool = False) -> list[SignedCheckpoint]:
    """Every checkpoint published in `directory`, oldest first, each checked: its name, its signature by a key
    of `keys` (jws.read_jwks) within that key's period, its number, the previous file it names (by hash) and
    that the head never goes back. The first thing wrong raises CheckpointsRefused naming the file and why.

    With `known`, the files it holds as verified and unchanged are not read again (see VerifiedPrefix); without
    it, or with `every_file` (which also starts `known` over), as the offline verifier and the daily
    verification read, every file is read and checked."""
    return (known if known is not None else VerifiedPrefix()).read(directory, keys, _jws(), every_file)


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


def verify_records(records: Iterable[dict[str, Any] | CheckedRun], expect_head: tuple[int, str] | None = None,
                   content_ok: Callable[[dict[str, Any]], bool] = checked_or_matches,
                   signed: Sequence[SignedCheckpoint] = ()) -> Result:
    """Check an export's records (header first, then checkpoints and events in any order of kind).
    `content_ok` checks one event's hash against its content: by default from its fields, or, for an event a
    reader checked on the way (a CheckedEvent: the database walk, an export line in the event layout), what
    that reader found; a CheckedRun stands for a stretch of events its reader checked in full. `signed`:
    checkpoints read from where they were published (read_checkpoints), which the events must agree with and
    reach."""
    header: dict[str, Any] | None = None
    # seq -> (hash, what vouched for it) for every checkpoint, the export's own and the signed ones: one
    # lookup per event whatever the number of checkpoints.
    checkpoints: dict[int, list[tuple[str, str]]] = {}
    for checkpoint in signed:
        checkpoints.setdefault(checkpoint.seq, []).append(
            (checkpoint.hash, f"{checkpoint}: the chain was rewritten after it was signed"))
    latest_signed = max(signed, key=lambda checkpoint: checkpoint.seq) if signed else None
    newest_checkpoint = 0
    marks: list[int] | None = None  # the checkpoints' seqs in order, for the checked runs; None when one was added
    provider: int | None = None
    checked, prev_hash, prev_seq = 0, None, None
    for record in records:
        if isinstance(record, CheckedRun):
            if header is None:
                return Result(False, checked, None, "the export header is missing: it must be the first record")
            if not header.get("contiguous"):
                raise ValueError("a checked run is a stretch of a contiguous chain, not of one provider's history")
            problem = _out_of_place(header, record.first_seq, record.prev_hash, prev_seq, prev_hash, checked)
            if problem:
                return problem
            marks = sorted(checkpoints) if marks is None else marks
            at = bisect.bisect_left(marks, record.first_seq)
            if (at < len(marks) and marks[at] <= record.last_seq) or (
                    expect_head and record.first_seq <= expect_head[0] <= record.last_seq):
                raise ValueError(f"the checked run of events {record.first_seq} to {record.last_seq} covers a "
                                 f"checkpoint or the expected head: its reader must hand that event on by itself")
            prev_hash, prev_seq = record.hash, record.last_seq
            checked += record.last_seq - record.first_seq + 1
            continue
        kind = record.get("record")
        if kind == "export":
            header = record
            problem = _header_problem(header)
            if problem:
                return Result(False, 0, None, problem)
            filters = header.get("filters") if isinstance(header.get("filters"), dict) else {}
            provider = filters.get("provider_id")
            continue
        if kind == "checkpoint":
            checkpoints.setdefault(int(record["seq"]), []).append((record["hash"], "the daily checkpoint taken at it"))
            newest_checkpoint = max(newest_checkpoint, int(record["seq"]))
            marks = None
            continue
        if kind != "event":
            return Result(False, checked, None, f"unknown record kind {kind!r}")
        if header is None:
            return Result(False, checked, None, "the export header is missing: it must be the first record")
        seq = int(record["seq"])
        problem = _out_of_place(header, seq, record["prev_hash"], prev_seq, prev_hash, checked)
        if problem:
            return problem
        if not header.get("contiguous") and provider_of(record) != provider:
            return Result(False, checked, seq, f"the event is provider {provider_of(record)}'s, but the export says "
                                               f"it is provider {provider}'s history: it was relabelled")
        if not content_ok(record):
            return Result(False, checked, seq, "content does not match its hash: the event was altered")
        if seq in checkpoints:
            for digest, vouched_by in checkpoints[seq]:
                if digest != record["hash"]:
                    return Result(False, checked, seq, f"the event differs from {vouched_by}")
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
    if latest_signed is not None:
        if not header.get("contiguous"):
            return Result(False, checked, None,
                          f"this is one provider's history: it cannot show that no event is missing up to "
                          f"{latest_signed}; hold a full export to the signed checkpoints")
        if (prev_seq or 0) < latest_signed.seq:
            return Result(False, checked, (prev_seq or 0) + 1,
                          f"the events end at event {prev_seq or 0}, before {latest_signed} taken "
                          f"{latest_signed.taken_at}: events after it were cut (the head rewound), or the export "
                          f"stops short of it")
    note = None if header.get("contiguous") else PARTIAL_NOTE
    if latest_signed is not None:
        note = f"It agrees with all {len(signed)} signed checkpoints and reaches the newest, {latest_signed}."
    return Result(True, checked, last_seq=prev_seq, last_hash=prev_hash, note=note)


def _out_of_place(header: dict[str, Any], seq: int, names: str, prev_seq: int | None, prev_hash: str | None,
                  checked: int) -> Result | None:
    """What is wrong with an event at `seq`, naming `names` as the hash before it, coming after `prev_seq`
    (whose hash is `prev_hash`): out of order, or, in a contiguous export, not the next one or not linked."""
    if prev_seq is not None and seq <= prev_seq:
        return Result(False, checked, seq, f"event {seq} comes after event {prev_seq}: events are out of order")
    if not header.get("contiguous"):
        return None
    expected = prev_seq + 1 if prev_seq is not None else _first_seq(header)
    if seq != expected:
        return Result(False, checked, expected, f"event {expected} is missing")
    if seq == 1 and names != GENESIS_HASH:
        return Result(False, checked, seq, "the first event does not start from the genesis hash")
    if prev_hash is not None and names != prev_hash:
        return Result(False, checked, seq, "prev_hash does not match the hash of the event before it")
    return None


def _first_seq(header: dict[str, Any]) -> int:
    """Where a contiguous export starts: its `from_seq` filter, else the beginning of the chain."""
    filters = header.get("filters") if isinstance(header.get("filters"), dict) else {}
    return int(filters.get("from_seq") or 1)


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        record = _read_line(number, line)
        if record is not None:
            yield record


def _read_line(number: int, line: str) -> dict[str, Any] | None:
    """One line of a JSON-lines export: an event in the export layout checked without decoding, any other line
    decoded; None for a blank line."""
    event = read_event_line(line)
    if event is not None and event.intact:
        return event
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"line {number} is not JSON: {exc.msg}") from None


def read_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(lines)
    for row in reader:
        try:
            yield {key: json.loads(value) for key, value in row.items() if value not in (None, "")}
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {reader.line_num}: a cell is not a JSON value ({exc.msg})") from None


def read_jsonl_checked(lines: Iterable[bytes], marks: Iterable[int] = (),
                       contiguous: bool = False) -> Iterator[dict[str, Any] | CheckedRun]:
    """read_jsonl over a file's lines as bytes, but in an export that says it is the whole chain (a contiguous
    header), each stretch of event lines in the export layout whose hashes this reader checked, one after the
    other, each naming the one before, comes as one CheckedRun instead of an event each. The events at `marks`
    (the seqs the events are held to: signed checkpoints, the expected head) and at the export's own checkpoints
    come one by one; any line this reading cannot check (another layout, a hash that does not match its text, a
    broken link, text that is not UTF-8) ends the stretch and comes as read_jsonl gives it, so verify_records
    judges it, and says what is wrong, exactly as it would. `contiguous`: the lines are the events of a whole-
    chain export whose header came before them (a part of the file read by itself, _read_in_parts)."""
    held = set(marks)
    sha256 = hashlib.sha256
    first: int | None = None
    first_prev = last_hash = ""
    last = 0
    for number, line in enumerate(lines, start=1):
        if contiguous and line.startswith(b'{"action":'):
            # The layout's tail at fixed places from the end (the same as _EVENT_TAIL, read by position):
            #   ,"actor_name":<null or a string>,"hash":"<64 hex>","prev_hash":"<64 hex>","record":"event"}
            end = len(line) - 1 if line.endswith(b"\n") else len(line)
            start = line.rfind(b',"actor_name":', 0, end - _TAIL_LENGTH)
            if start > 0 and line[end - 19:end] == b'","record":"event"}' and \
                    line[end - 98:end - 83] == b'","prev_hash":"' and line[end - _TAIL_LENGTH:end - 162] == b',"hash":"':
                text = line[:start]
                at = text.rfind(b',"seq":')
                digits = text[at + 7:]
                # A hex digest is compared with the one computed, so neither hash needs a check of its own.
                if at > 0 and digits.isdigit() and (text.isascii() or _is_utf8(text)):
                    seq = int(digits)
                    digest, prev_hash = line[end - 162:end - 98].decode("ascii", "replace"), \
                        line[end - 83:end - 19].decode("ascii", "replace")
                    hashed = sha256(line[end - 83:end - 19])
                    hashed.update(text)
                    hashed.update(b"}")
                    if hashed.hexdigest() == digest:
                        if seq in held:
                            if first is not None:
                                yield CheckedRun(first, last, first_prev, last_hash)
                                first = None
                            event = CheckedEvent(record="event", seq=seq, prev_hash=prev_hash, hash=digest)
                            event.intact, event.text = True, text.decode("utf-8")
                            yield event
                        elif first is not None and seq == last + 1 and prev_hash == last_hash:
                            last, last_hash = seq, digest
                        else:
                            if first is not None:
                                yield CheckedRun(first, last, first_prev, last_hash)
                            first, first_prev, last, last_hash = seq, prev_hash, seq, digest
                        continue
        if first is not None:
            yield CheckedRun(first, last, first_prev, last_hash)
            first = None
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"line {number} is not UTF-8 text: {exc.reason}") from None
        record = _read_line(number, decoded)
        if record is None:
            continue
        if record.get("record") == "export":
            contiguous = bool(record.get("contiguous"))
        elif record.get("record") == "checkpoint" and isinstance(record.get("seq"), int):
            held.add(record["seq"])
        yield record
    if first is not None:
        yield CheckedRun(first, last, first_prev, last_hash)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def verify_file(path: str, expect_head: tuple[int, str] | None = None,
                signed: Sequence[SignedCheckpoint] = (), jobs: int = 1) -> Result:
    """Verify an export file. `jobs` > 1 reads a large whole-chain JSON-lines export in that many parts side by
    side, one process each (_read_in_parts); the verdict is the same as reading it in one."""
    with open(path, encoding="utf-8", newline="") as handle:
        first = handle.read(1)
        handle.seek(0)
        if first != "{":
            return verify_records(read_csv(handle), expect_head, signed=signed)
    marks = [checkpoint.seq for checkpoint in signed] + ([expect_head[0]] if expect_head else [])
    if jobs > 1:
        records = _read_in_parts(path, marks, jobs)
        if records is not None:
            return verify_records(records, expect_head, signed=signed)
    with open(path, "rb") as raw:
        return verify_records(read_jsonl_checked(raw, marks), expect_head, signed=signed)


# Below this many bytes of event lines (about 30,000 events) one process reads the file faster than starting more.
PARTS_FROM_BYTES = 16 << 20


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _read_in_parts(path: str, marks: Sequence[int], jobs: int) -> list[dict[str, Any] | CheckedRun] | None:
    """A whole-chain export's records as read_jsonl_checked gives them, its event lines read in `jobs` parts side
    by side (one process each, every part starting at a line). The header and the checkpoints before the first
    event are read here. None, so that the file is read in one piece and every problem is named exactly as then,
    when the export is not a whole chain, is too small to gain, or when any part holds a line its reading could
    not check (damage of any kind, a checkpoint among the events, a line in another layout)."""
    with open(path, "rb") as raw:
        opening: list[bytes] = []
        while True:
            start = raw.tell()
            line = raw.readline()
            if not line or line.startswith(b'{"action":'):
                break
            opening.append(line)
        size = os.fstat(raw.fileno()).st_size
        if size - start < PARTS_FROM_BYTES:
            return None
        try:
            records = list(read_jsonl_checked(opening, marks))
        except ValueError:
            return None
        header = records[0] if records and isinstance(records[0], dict) else {}
        if header.get("record") != "export" or not header.get("contiguous"):
            return None
        held = sorted({*marks, *(record["seq"] for record in records if isinstance(record, dict)
                                 and record.get("record") == "checkpoint" and isinstance(record.get("seq"), int))})
        bounds = part_bounds(raw, start, size, jobs)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        parts = list(pool.map(_checked_part, [(path, a, b, held) for a, b in zip(bounds, bounds[1:], strict=False)
                                              if b > a]))
    if any(part is None for part in parts):
        return None
    for part in parts:
        records.extend(part)
    return records


def part_bounds(raw: BinaryIO, start: int, size: int, jobs: int) -> list[int]:
    """Where `jobs` parts of a file's bytes from `start` to `size` begin, each at a line start, and its end."""
    bounds = [start]
    for part in range(1, jobs):
        raw.seek(start + (size - start) * part // jobs)
        raw.readline()
        bounds.append(max(raw.tell(), bounds[-1]))
    return [*bounds, size]


def _checked_part(task: tuple[str, int, int, Sequence[int]]) -> list[CheckedRun | CheckedEvent] | None:
    """The event lines from byte `start` to `end` of a whole-chain export, read as read_jsonl_checked reads them:
    its checked stretches and the events it hands on one by one, checked; None when a line is anything else."""
    path, start, end, held = task
    items: list[CheckedRun | CheckedEvent] = []
    try:
        for item in read_jsonl_checked(lines_between(path, start, end), held, contiguous=True):
            if not isinstance(item, CheckedRun) and not (isinstance(item, CheckedEvent) and item.intact):
                return None
            items.append(item)
    except ValueError:
        return None
    return items


def lines_between(path: str, start: int, end: int) -> Iterator[bytes]:
    with open(path, "rb") as raw:
        raw.seek(start)
        left = end - start
        while left > 0:
            line = raw.readline()
            if not line:
                return
            left -= len(line)
            yield line


def read_key_set(path: str) -> Mapping[str, Any]:
    """The trusted keys of a JWK set file; ValueError says what is wrong with it."""
    jws = _jws()
    with open(path, encoding="utf-8") as handle:
        try:
            return jws.read_jwks(json.load(handle))
        except jws.Refused as error:
            raise ValueError(str(error)) from None


def published_checkpoints(directory: str, jwks_path: str) -> list[SignedCheckpoint]:
    """The signed checkpoints of a folder, checked against a key set file; an empty folder holds the export to
    nothing, so it is refused too."""
    checkpoints = read_checkpoints(directory, read_key_set(jwks_path))
    if not checkpoints:
        raise CheckpointsRefused(f"{directory} holds no signed checkpoint: there is nothing to hold the export to")
    return checkpoints


def parse_head(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("--expect-head takes SEQ:HASH, e.g. 1234:<64 hex characters>")
    return int(seq), digest


def parse_jobs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise ValueError("--jobs takes the number of processes to read the export with, 1 to 64")
    return int(text)


def _option(args: list[str], name: str) -> str | None:
    """Take `name VALUE` out of args; IndexError when the value is missing."""
    if name not in args:
        return None
    at = args.index(name)
    value = args[at + 1]
    del args[at:at + 2]
    return value


def main(argv: list[str]) -> int:
    args = argv[1:]
    try:
        head_text, directory, jwks_path, jobs_text = (
            _option(args, name) for name in ("--expect-head", "--checkpoints", "--jwks", "--jobs"))
        expect_head = parse_head(head_text) if head_text is not None else None
        jobs = parse_jobs(jobs_text) if jobs_text is not None else available_cores()
    except (IndexError, ValueError) as exc:
        print(exc if isinstance(exc, ValueError) else "an option is missing its value", file=sys.stderr)
        return 2
    if len(args) != 1 or (directory is None) != (jwks_path is None):
        if (directory is None) != (jwks_path is None):
            print("--checkpoints DIR and --jwks FILE go together: the folder of signed checkpoints and the key set "
                  "that signed them", file=sys.stderr)
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    signed: list[SignedCheckpoint] = []
    if directory is not None and jwks_path is not None:
        try:
            signed = published_checkpoints(directory, jwks_path)
        except (OSError, ValueError) as exc:
            print(f"cannot read the checkpoints or the key set: {exc}", file=sys.stderr)
            return 2
        except CheckpointsRefused as exc:
            print(f"REFUSED: the signed checkpoints in {directory} do not hold together: {exc}")
            return 1
    try:
        result = verify_file(args[0], expect_head, signed, jobs=jobs)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read {args[0]}: {exc}", file=sys.stderr)
        return 2
    print(result)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
