"""Exclusion lists: import files (recording the source file and date) and screen providers and principals."""
from __future__ import annotations

import gc
import re
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterator, NamedTuple

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import JaroWinkler
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from backoffice.checks import names
from backoffice.checks.exclusion_lists import ExclusionFile
from backoffice.checks.result import CheckResult, FindingSpec
from backoffice.models import (
    CheckOutcome,
    ExclusionRecord,
    ExclusionRecordKind,
    ExclusionSource,
    FindingSeverity,
)
from backoffice.services import audit, sources
from backoffice.services.errors import DomainError

INSERT_CHUNK = 2000
# How sure a match is: by NPI the identity is certain; by name it is a lead for a researcher.
CONFIDENCE_NPI = 1.0
CONFIDENCE_NAME_STATE_CITY = 0.9
CONFIDENCE_NAME_STATE = 0.75


@dataclass
class ImportResult:
    source: ExclusionSource
    added: int
    already_known: int
    already_imported: bool = False


def find_source(session: Session, sha256: str) -> ExclusionSource | None:
    return session.scalar(select(ExclusionSource).where(ExclusionSource.sha256 == sha256))


def import_file(session: Session, actor: audit.Actor, parsed: ExclusionFile, file_date: date | None) -> ImportResult:
    """Store the rows not seen before; a file imported before adds nothing. Refuses a file with errors."""
    if parsed.errors:
        raise DomainError(f"{parsed.file_name} has {len(parsed.errors)} problems; nothing was imported")
    existing = find_source(session, parsed.sha256)
    if existing is not None:
        return ImportResult(existing, 0, len(parsed.rows), already_imported=True)
    known = set(session.scalars(select(ExclusionRecord.row_key).where(ExclusionRecord.list_name == parsed.list_name)))
    new_rows = [row for row in parsed.rows if row.row_key not in known]
    source = ExclusionSource(
        list_name=parsed.list_name, file_name=parsed.file_name, file_date=file_date or parsed.latest_date,
        sha256=parsed.sha256, row_count=len(parsed.rows), imported_by=audit.actor_label(actor),
    )
    session.add(source)
    session.flush()
    values = [
        {
            "source_id": source.id, "list_name": parsed.list_name, "kind": row.kind, "row_key": row.row_key,
            "identity": row.identity,
            "business_name": row.business_name, "last_name": row.last_name, "first_name": row.first_name,
            "middle_name": row.middle_name, "name_key": row.name_key, "npi": row.npi, "state": row.state,
            "city": row.city, "exclusion_type": row.exclusion_type, "excluded_on": row.excluded_on,
            "reinstated_on": row.reinstated_on, "raw": row.raw,
        }
        for row in new_rows
    ]
    for start in range(0, len(values), INSERT_CHUNK):
        session.execute(insert(ExclusionRecord), values[start:start + INSERT_CHUNK])
    audit.record(
        session, actor, "exclusion_list.imported", "exclusion_source", source.id,
        after={"list_name": source.list_name, "file_name": source.file_name, "file_date": source.file_date,
               "sha256": source.sha256, "rows": len(parsed.rows), "added": len(new_rows),
               "already_known": len(parsed.rows) - len(new_rows)},
    )
    sources.refreshed(session, actor, parsed.list_name, source.imported_at)
    session.flush()
    return ImportResult(source, len(new_rows), len(parsed.rows) - len(new_rows))


def source_version(session: Session) -> str:
    """Which list files a screening ran against: the latest file date of each list."""
    rows = session.execute(
        select(ExclusionSource.list_name, func.max(ExclusionSource.file_date), func.count())
        .group_by(ExclusionSource.list_name).order_by(ExclusionSource.list_name)
    ).all()
    return "; ".join(f"{name} {latest or '?'} ({count} files)" for name, latest, count in rows)


@dataclass(frozen=True)
class Party:
    """Someone screened: the organisation itself or one of its principals."""

    role: str
    name: str
    name_key: str
    npi: str | None

    @property
    def key(self) -> str:
        """Who on our side was matched, as a finding's subject key and a judgement name it."""
        return f"{self.role}:{self.name_key or self.npi}"


def parties(legal_name: str, public_name: str, npi: str | None,
            principals: list[tuple[str, str | None]]) -> list[Party]:
    found = [Party("organisation", name, names.business_key(name), npi) for name in dict.fromkeys((legal_name, public_name)) if name]
    found += [Party("principal", name, names.person_key_from_full_name(name), principal_npi)
              for name, principal_npi in principals]
    return [p for p in found if p.name_key or p.npi]


@dataclass(frozen=True)
class Thresholds:
    """How close each signal must come (0 to 1) for a list record to be raised: config's SCREENING_* settings.

    A name must pass both name scores: token-set alone calls a name that is a subset of another identical
    ('RECOVERY CENTER' and 'HARBOR RECOVERY CENTER'), Jaro-Winkler over the sorted words catches that. A city or
    an address that agrees raises a name match's confidence; NPI and state are compared exactly.
    """

    name_token_set: float = 0.88
    name_jaro_winkler: float = 0.85
    address: float = 0.80
    city: float = 0.90
    fuzzy: bool = True

    @classmethod
    def from_config(cls, config) -> Thresholds:
        return cls(name_token_set=config["SCREENING_NAME_TOKEN_SET_THRESHOLD"],
                   name_jaro_winkler=config["SCREENING_NAME_JARO_WINKLER_THRESHOLD"],
                   address=config["SCREENING_ADDRESS_THRESHOLD"], city=config["SCREENING_CITY_THRESHOLD"],
                   fuzzy=config["SCREENING_FUZZY"])


@dataclass
class Subject:
    """One provider to screen: its parties and the states, cities and street addresses it operates at."""

    parties: list[Party]
    states: set[str]
    cities: set[str]
    addresses: set[str] = field(default_factory=set)


class ListRow(NamedTuple):
    """What screening needs of one list record to find candidates; the full record is read for matches only."""

    id: int
    identity: str
    row_key: str
    kind: ExclusionRecordKind
    list_name: str
    name_key: str
    npi: str | None
    state: str | None
    excluded_on: date | None
    reinstated_on: date | None


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while the index is built or a chunk screened: they allocate hundreds of
    thousands of objects that all stay alive, and each full collection they set off would walk the whole heap
    again for nothing (it cost as much as building the index). Reference counting still frees what dies."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


LIST_COLUMNS = [getattr(ExclusionRecord, column) for column in ListRow._fields]
# A fuzzy candidate must share one of a party's rarest words with the record, in one of the provider's states:
# the blocks stay small, and a typo in one word still leaves the other to find it by.
BLOCKING_WORDS = 2
# Blocks of at most this many (query, name) pairs are scored pair by pair rather than in one cdist call.
SMALL_BLOCK = 40
token_set_ratio = fuzz.token_set_ratio
# Of a block's names, by position: those with a word of two letters or more beginning with a letter, and those
# with the letter as an initial.
BlockLetters = tuple[dict[str, list[int]], dict[str, list[int]]]


class ListIndex:
    """Every list record once, keyed by NPI, by exact name key and state, and by (state, word) for fuzzy blocks."""

    def __init__(self, rows: list[ListRow]):
        self.rows = rows
        self.by_npi: dict[str, list[ListRow]] = defaultdict(list)
        self.by_name: dict[tuple[str, str | None], list[ListRow]] = defaultdict(list)
        # A reinstatement names the exclusion it ends by NPI or by name and state, and its exclusion date.
        self.reinstated: set[tuple] = set()
        # state -> word -> (the exclusions whose name has the word, their name keys): a state's blocks are read
        # once per party and state, not once per word.
        self._blocks: dict[str | None, dict[str, tuple[list[ListRow], list[str]]]] | None = None
        self._letters: dict[tuple[str, str], BlockLetters] = {}
        self._ranks: dict[str | None, dict[str, tuple[int, str]]] | None = None
        by_npi, by_name, reinstated = self.by_npi, self.by_name, self.reinstated
        reinstatement = ExclusionRecordKind.REINSTATEMENT
        for row in rows:
            if row.npi:
                by_npi[row.npi].append(row)
            by_name[(row.name_key, row.state)].append(row)
            if row.kind == reinstatement:
                if row.npi:
                    reinstated.add((row.npi, row.excluded_on))
                reinstated.add((row.name_key, row.state, row.excluded_on))

    @property
    def blocks(self) -> dict[str | None, dict[str, tuple[list[ListRow], list[str]]]]:
        """The exclusions by state and word, built on first use: exact-only screening never needs them."""
        if self._blocks is None:
            with gc_paused():
                self._blocks = self._build_blocks()
        return self._blocks

    def _build_blocks(self) -> dict[str | None, dict[str, tuple[list[ListRow], list[str]]]]:
        blocks: dict[str | None, dict[str, tuple[list[ListRow], list[str]]]] = defaultdict(dict)
        exclusion = ExclusionRecordKind.EXCLUSION
        for row in self.rows:
            if row.kind == exclusion:
                in_state = blocks[row.state]
                for word in set(row.name_key.split()):
                    block = in_state.get(word)
                    if block is None:
                        block = in_state[word] = ([], [])
                    block[0].append(row)
                    block[1].append(row.name_key)
        return dict(blocks)

    @classmethod
    def load(cls, session: Session) -> ListIndex:
        # A Core read on the session's connection: the ORM's row handling would cost as much as the index.
        with gc_paused():
            return cls(list(map(ListRow._make, session.connection().execute(
                select(*LIST_COLUMNS).order_by(ExclusionRecord.id)))))

    def counts(self, row: ListRow, today: date) -> bool:
        """An exclusion in force: not a reinstatement, not ended, not named by a reinstatement."""
        if row.kind != ExclusionRecordKind.EXCLUSION or (row.reinstated_on and row.reinstated_on <= today):
            return False
        return (row.npi, row.excluded_on) not in self.reinstated and \
            (row.name_key, row.state, row.excluded_on) not in self.reinstated

    def block_letters(self, state: str, word: str) -> BlockLetters:
        """For one block: which of its names have a longer word beginning with each letter, and which have each
        letter as an initial (built on first use, for the names with an initial asked of the block)."""
        key = (state, word)
        letters = self._letters.get(key)
        if letters is None:
            first_letter_at: dict[str, list[int]] = defaultdict(list)
            initial_at: dict[str, list[int]] = defaultdict(list)
            for c, theirs in enumerate(self.blocks[state][word][1]):
                for letter in {w for w in theirs.split() if len(w) == 1}:
                    initial_at[letter].append(c)
                for letter in {w[0] for w in theirs.split() if len(w) > 1}:
                    first_letter_at[letter].append(c)
            letters = self._letters[key] = (dict(first_letter_at), dict(initial_at))
        return letters

    @property
    def word_ranks(self) -> dict[str | None, dict[str, tuple[int, str]]]:
        """Per state, each word's place among the rarest: the size of its block, then the word itself."""
        if self._ranks is None:
            self._ranks = {state: {word: (len(block[0]), word) for word, block in in_state.items()}
                           for state, in_state in self.blocks.items()}
        return self._ranks

    def blocking_words(self, name_key: str, state: str) -> list[str]:
        """The party's rarest words that the list has in that state."""
        in_state = self.word_ranks.get(state)
        if not in_state:
            return []
        # Over the party's few words: set.intersection(a dict) would walk every word of the state.
        return sorted([w for w in set(name_key.split()) if w in in_state], key=in_state.__getitem__)[:BLOCKING_WORDS]


_cached: tuple[tuple, ListIndex] | None = None


def list_index(session: Session) -> ListIndex:
    """The index of the lists as imported now, built once per process and version of the lists."""
    global _cached
    version = (tuple(session.execute(select(ExclusionSource.id, ExclusionSource.sha256)
                                     .order_by(ExclusionSource.id)).all()),
               session.execute(select(func.count(), func.max(ExclusionRecord.id))).one()[:])
    if _cached is None or _cached[0] != version:
        _cached = (version, ListIndex.load(session))
    return _cached[1]


def forget_index() -> None:
    """Drop the process's index of the lists (a benchmark measures building it)."""
    global _cached
    _cached = None


def candidates(index: ListIndex, subjects: list[Subject], thresholds: Thresholds,
               cutoff: float | None = None) -> list[dict[tuple[int, int], ListRow]]:
    """Per subject, the (party number, record) pairs worth scoring: same NPI, same name key in one of its states,
    and with fuzzy matching the records of a shared block whose token-set score reaches the threshold (or
    `cutoff`), each block scored in one rapidfuzz cdist call."""
    found: list[dict[tuple[int, int], ListRow]] = [{} for _ in subjects]
    queries: dict[tuple[str, str], dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    by_npi, by_name = index.by_npi, index.by_name
    # The same name in the same state (a principal of several providers, a chain's sites) is blocked once.
    words_of: dict[tuple[str, str], list[str]] = {}
    ranks = index.word_ranks if thresholds.fuzzy else {}
    for number, subject in enumerate(subjects):
        pairs = found[number]
        for p, party in enumerate(subject.parties):
            if party.npi:
                for row in by_npi.get(party.npi, ()):
                    pairs[(p, row.id)] = row
            name_key = party.name_key
            if not name_key:
                continue
            party_words = None
            for state in subject.states:
                for row in by_name.get((name_key, state), ()):
                    pairs[(p, row.id)] = row
                if thresholds.fuzzy:
                    words = words_of.get((name_key, state))
                    if words is None:
                        # index.blocking_words, written out: this runs for every party in every state.
                        party_words = party_words or set(name_key.split())
                        in_state = ranks.get(state)
                        words = words_of[(name_key, state)] = [] if in_state is None else sorted(
                            [w for w in party_words if w in in_state], key=in_state.__getitem__)[:BLOCKING_WORDS]
                    for word in words:
                        queries[(state, word)][name_key].append((number, p))
    score_cutoff = 100 * (thresholds.name_token_set if cutoff is None else cutoff)
    blocks = index.blocks if queries else {}
    initials: dict[str, bool] = {}

    def initialled(name: str) -> bool:
        # A name is asked of each of its blocks: its pattern is tested once.
        found_initial = initials.get(name)
        if found_initial is None:
            found_initial = initials[name] = has_initial(name)
        return found_initial

    for (state, word), wanted in queries.items():
        block, block_names = blocks[state][word]
        plain = [name for name in wanted if not initialled(name)]
        hits: list[tuple[str, int]] = []
        with_initial = [name for name in wanted if initialled(name)]
        if len(wanted) * len(block_names) <= SMALL_BLOCK:
            # A cdist call costs as much as scoring a few dozen pairs: a small block is scored pair by pair.
            hits += [(name, c) for name in plain for c, theirs in enumerate(block_names)
                     if token_set_ratio(name, theirs, score_cutoff=score_cutoff) >= score_cutoff]
            hits += [(name, c) for name in with_initial for c, theirs in enumerate(block_names)
                     if 100 * name_scores(name, theirs)[0] >= score_cutoff]
        else:
            if plain:
                scores = process.cdist(plain, block_names, scorer=token_set_ratio, score_cutoff=score_cutoff,
                                       dtype=np.uint8, workers=1)
                hits += [(plain[q], int(c)) for q, c in zip(*np.nonzero(scores), strict=True)]
            if with_initial:
                hits += _initialled_hits(with_initial, block_names, index.block_letters(state, word), score_cutoff)
        for name, c in hits:
            row = block[c]
            for number, p in wanted[name]:
                found[number][(p, row.id)] = row
    return found


def _initialled_hits(queries: list[str], block_names: list[str], letters: BlockLetters,
                     score_cutoff: float) -> list[tuple[str, int]]:
    """The names of a block that names written with an initial reach, scored as `name_scores` scores them (the
    initial read as the word it begins on the other side). Only a pair where an initial begins a word of the
    other name is aligned and scored one by one; every other pair is what it is, so all of them are scored in
    one cdist call (with a cut-off a little lower, then rounded as name_scores rounds)."""
    first_letter_at, initial_at = letters
    near = process.cdist(queries, block_names, scorer=fuzz.token_set_ratio, score_cutoff=max(0.0, score_cutoff - 0.1),
                         dtype=np.float64, workers=1)
    hits = []
    for q, name in enumerate(queries):
        words = name.split()
        aligned: set[int] = set()
        for word in words:
            aligned.update(first_letter_at.get(word, ()) if len(word) == 1 else initial_at.get(word[0], ()))
        hits += [(name, int(c)) for c in np.nonzero(near[q])[0]
                 if c not in aligned and 100 * round(float(near[q, c]) / 100, 3) >= score_cutoff]
        hits += [(name, c) for c in sorted(aligned) if 100 * name_scores(name, block_names[c])[0] >= score_cutoff]
    return hits


@dataclass
class Signal:
    """One row of the side-by-side comparison a researcher reads: what we hold, what the list holds, how close."""

    signal: str
    ours: str
    theirs: str
    score: float | None
    threshold: float | None

    @property
    def agrees(self) -> bool:
        return self.score is not None and self.threshold is not None and self.score >= self.threshold

    def as_dict(self) -> dict:
        return {"signal": self.signal, "ours": self.ours, "theirs": self.theirs, "score": self.score,
                "threshold": self.threshold}


def _sorted_words(key: str) -> str:
    return " ".join(sorted(key.split()))


def _initials_aligned(ours: str, theirs: str) -> tuple[str, str]:
    """An initial stands for any word it begins on the other side ('J DOE' and 'JANE DOE' read 'J DOE' both)."""
    words = [ours.split(), theirs.split()]
    for side in (0, 1):
        other = words[1 - side]
        for initial in (w for w in words[side] if len(w) == 1):
            for n, word in enumerate(other):
                if len(word) > 1 and word[0] == initial:
                    other[n] = initial
                    break
    return " ".join(words[0]), " ".join(words[1])


_INITIAL = re.compile(r"(?:^| )[A-Z0-9](?: |$)")


def has_initial(key: str) -> bool:
    return _INITIAL.search(key) is not None


def name_scores(ours: str, theirs: str) -> tuple[float, float]:
    """Token-set and Jaro-Winkler (over the words sorted, so word order does not count) similarity, 0 to 1."""
    if ours == theirs:
        return 1.0, 1.0
    if has_initial(ours) or has_initial(theirs):
        ours, theirs = _initials_aligned(ours, theirs)
    return (round(fuzz.token_set_ratio(ours, theirs) / 100, 3),
            round(JaroWinkler.normalized_similarity(_sorted_words(ours), _sorted_words(theirs)), 3))


def _best_place(ours: set[str], theirs: str | None, key=lambda text: text) -> tuple[str, float | None]:
    """Our value closest to the list's, and its token-set score (None when either side has none)."""
    theirs_key = key(theirs or "")
    scored = [(fuzz.token_set_ratio(key(value), theirs_key) / 100, value) for value in sorted(ours) if value]
    if not theirs_key or not scored:
        return ", ".join(sorted(v for v in ours if v)), None
    score, value = max(scored)
    return value, round(score, 3)


def signals(party: Party, record: dict, subject: Subject, thresholds: Thresholds) -> list[Signal]:
    """Every signal of a party against a list record, in the order a researcher reads them."""
    token_set, jaro_winkler = name_scores(party.name_key, record["name_key"])
    address, address_score = _best_place(subject.addresses, record.get("address"), names.address_key)
    city, city_score = _best_place({c.upper() for c in subject.cities if c}, record.get("city"))
    states = sorted(subject.states)
    npi_score = None if not (party.npi and record.get("npi")) else float(party.npi == record["npi"])
    return [
        Signal("name (token set)", party.name, record["name"], token_set, thresholds.name_token_set),
        Signal("name (Jaro-Winkler)", party.name, record["name"], jaro_winkler, thresholds.name_jaro_winkler),
        Signal("address", address, record.get("address") or "", address_score, thresholds.address),
        Signal("city", city, record.get("city") or "", city_score, thresholds.city),
        Signal("state", ", ".join(states), record.get("state") or "", float(record.get("state") in subject.states),
               1.0),
        Signal("NPI", party.npi or "", record.get("npi") or "", npi_score, 1.0),
        # We hold no date of birth for principals: the list's is shown for the researcher to compare.
        Signal("date of birth", "", record.get("date_of_birth") or "", None, None),
    ]


def _record_summary(record: ExclusionRecord, source_file: str | None) -> dict:
    dob = (record.raw.get("DOB") or "").strip()
    return {
        "list": record.list_name, "name": record.business_name or " ".join(
            p for p in (record.first_name, record.middle_name, record.last_name) if p),
        "name_key": record.name_key,
        "npi": record.npi, "city": record.city, "state": record.state, "exclusion_type": record.exclusion_type,
        "excluded_on": record.excluded_on, "reinstated_on": record.reinstated_on,
        "source_file": source_file,
        "general": record.raw.get("GENERAL") or record.raw.get("PROVIDER_TYPE"),
        "specialty": record.raw.get("SPECIALTY"), "address": record.raw.get("ADDRESS"),
        "date_of_birth": f"{dob[:4]}-{dob[4:6]}-{dob[6:]}" if len(dob) == 8 and dob not in ("00000000",) else None,
    }


@dataclass
class Match:
    """A list record that one of the subject's parties matches, with the signals that say how well."""

    party: Party
    record: ExclusionRecord
    summary: dict
    signals: list[Signal]
    confidence: float
    how: str


def judge_pair(party: Party, summary: dict, subject: Subject, thresholds: Thresholds) -> tuple[list[Signal], float, str] | None:
    """Whether this party is this record: certain by NPI; a lead for a researcher by a name close enough in one
    of our states, surer when the city or the address agrees. None when it is not a match."""
    scored = signals(party, summary, subject, thresholds)
    by_name = {s.signal: s for s in scored}
    if by_name["NPI"].score == 1.0:
        return scored, CONFIDENCE_NPI, "NPI"
    if not (by_name["state"].agrees and by_name["name (token set)"].agrees and by_name["name (Jaro-Winkler)"].agrees):
        return None
    exact = party.name_key == summary["name_key"]
    place = "city" if by_name["city"].agrees else "address" if by_name["address"].agrees else None
    confidence = CONFIDENCE_NAME_STATE_CITY if place else CONFIDENCE_NAME_STATE
    if not exact:
        confidence = round(confidence * (by_name["name (token set)"].score or 0), 2)
    how = ("name" if exact else "similar name") + (f", state and {place}" if place else " and state")
    return scored, confidence, how


# Subjects scored together: each block is scored once for all of them (one cdist call), so the chunk is large.
SCREEN_CHUNK = 25_000


def screen(session: Session, screened: list[Party], states: set[str], cities: set[str], today: date,
           thresholds: Thresholds | None = None, addresses: set[str] | None = None) -> CheckResult:
    """Match the parties against every imported list; reinstated or ended exclusions do not count."""
    return screen_many(session, [Subject(screened, states, cities, addresses or set())], today, thresholds)[0]


def screen_many(session: Session, subjects: list[Subject], today: date,
                thresholds: Thresholds | None = None) -> list[CheckResult]:
    """Screen many providers in one pass over an in-memory index of the lists (built once per list version);
    only the records that match are read in full."""
    thresholds = thresholds or Thresholds()
    if session.scalar(select(ExclusionSource.id).limit(1)) is None:
        # Screening against nothing is not a pass.
        return [CheckResult.error("No exclusion list has been imported: nothing to screen against", _evidence(s, 0))
                for s in subjects]
    version = source_version(session)
    index = list_index(session)
    source_files = dict(session.execute(select(ExclusionSource.id, ExclusionSource.file_name)).all())
    results = []
    for start in range(0, len(subjects), SCREEN_CHUNK):
        chunk = subjects[start:start + SCREEN_CHUNK]
        with gc_paused():
            found = candidates(index, chunk, thresholds)
            # The latest version of each record only, and only exclusions in force.
            latest: list[dict[str, ListRow]] = []
            for pairs in found:
                rows: dict[str, ListRow] = {}
                for row in pairs.values():
                    if index.counts(row, today) and (row.identity not in rows or rows[row.identity].id < row.id):
                        rows[row.identity] = row
                latest.append(rows)
            wanted = sorted({row.id for rows in latest for row in rows.values()})
            records: dict[int, ExclusionRecord] = {}
            for offset in range(0, len(wanted), INSERT_CHUNK):
                records.update((r.id, r) for r in session.scalars(
                    select(ExclusionRecord).where(ExclusionRecord.id.in_(wanted[offset:offset + INSERT_CHUNK]))))
            for subject, rows in zip(chunk, latest, strict=True):
                matches = []
                for row in sorted(rows.values(), key=lambda r: r.id):
                    record = records[row.id]
                    summary = _record_summary(record, source_files.get(record.source_id))
                    best = max(((judged, party) for party in subject.parties
                                if (judged := judge_pair(party, summary, subject, thresholds))),
                               key=lambda pair: pair[0][1], default=None)
                    if best:
                        (scored, confidence, how), party = best
                        matches.append(Match(party, record, summary, scored, confidence, how))
                results.append(_judge(matches, subject, version))
    return results


def _evidence(subject: Subject, matches: int) -> dict:
    return {"screened": [{"role": p.role, "name": p.name, "npi": p.npi} for p in subject.parties],
            "states": sorted(subject.states), "matches": matches}


def _judge(matches: list[Match], subject: Subject, version: str) -> CheckResult:
    """The run's outcome and a finding per matched record: by NPI critical, by name a warning to look at."""
    found: list[FindingSpec] = []
    for match in matches:
        record, party = match.record, match.party
        confirmed = match.confidence >= CONFIDENCE_NPI
        detail: dict[str, Any] = {
            "party": {"role": party.role, "name": party.name, "npi": party.npi},
            "record": match.summary, "matched_by": match.how, "confidence": match.confidence,
            "signals": [s.as_dict() for s in match.signals],
            "exclusion_record_id": record.id, "record_identity": record.identity,
            "record_fingerprint": record.row_key, "party_key": party.key,
        }
        label = "Excluded" if confirmed else "Probable exclusion match"
        found.append(FindingSpec(
            f"exclusion:{record.identity}:{party.key}"[:200],
            FindingSeverity.CRITICAL if confirmed else FindingSeverity.WARNING,
            f"{label}: {party.role} {party.name} on {record.list_name} ({match.how})"[:300], detail,
        ))
    evidence = _evidence(subject, len(found))
    if not found:
        return CheckResult(CheckOutcome.PASS, f"No exclusion match ({version})"[:500], evidence, source_version=version[:200])
    critical = any(f.severity == FindingSeverity.CRITICAL for f in found)
    return CheckResult(CheckOutcome.FAIL if critical else CheckOutcome.WARN,
                       "; ".join(f.title for f in found)[:500], evidence, found, source_version=version[:200])
