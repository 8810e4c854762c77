"""Exclusion screening at scale: every provider and its principals against the ~80k-row exclusion table.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.screening [--size full]

Ours: `screening.screen_many` over every provider, their facts read in bulk: one read of the lists into an
in-memory index (NPI, exact name key and state, (state, word) blocks), the fuzzy candidates of each block
scored in one rapidfuzz cdist call, only the matched records read in full. Timed twice in the same run, each
time with the index built afresh: exact names only (SCREENING_FUZZY off) and exact plus fuzzy (the default).
Bare baseline, same run: a dict join over the same normalised keys (read the rows' keys, build the dicts, look
every party up by NPI and by name key and state), the goal being ours <= 2x it. Also `screening.screen` one
provider at a time (what one exclusion re-check task calls) on a sample, extrapolated, and the old nested
comparison of every party with every row, on a sample, extrapolated. Also the dict join with the garbage
collector paused (as screen_many pauses it: the stricter baseline), and the sweep's own path short of recording:
every provider read and screened a batch of SCREENING_BATCH_SIZE at a time (tasks.checks.screen_batch). The load
average is recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import time

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import CheckKind, ExclusionRecord, ExclusionRecordKind, Location, Principal, Provider, utcnow
from backoffice.services import rechecks, screening
from benchmarks.generate import bench_app, ensure_built, parse_size


def subjects(limit: int | None = None) -> list[screening.Subject]:
    """(parties, states, cities) per provider, read in bulk like rechecks.facts reads one."""
    providers = db.session.execute(select(Provider.id, Provider.legal_name, Provider.public_name, Provider.npi)
                                   .order_by(Provider.id).limit(limit)).all()
    last = providers[-1].id
    principals: dict[int, list] = {}
    for pid, name, npi in db.session.execute(select(Principal.provider_id, Principal.name, Principal.npi)
                                             .where(Principal.provider_id <= last)):
        principals.setdefault(pid, []).append((name, npi))
    places: dict[int, tuple[set, set]] = {}
    for pid, state, city in db.session.execute(select(Location.provider_id, Location.state, Location.city)
                                               .where(Location.provider_id <= last)):
        states, cities = places.setdefault(pid, (set(), set()))
        states.add(state)
        cities.add(city)
    return [screening.Subject(screening.parties(p.legal_name, p.public_name, p.npi, principals.get(p.id, [])),
                              *places.get(p.id, (set(), set()))) for p in providers]


def nested(records: list, parties: list, states: set) -> int:
    """The baseline: compare each party with each exclusion row."""
    hits = 0
    for record in records:
        if record.kind != ExclusionRecordKind.EXCLUSION:
            continue
        for party in parties:
            if (party.npi and record.npi == party.npi) or (
                    party.name_key and record.name_key == party.name_key and record.state in states):
                hits += 1
                break
    return hits


def dict_join(subjects_: list[screening.Subject]) -> tuple[int, float]:
    """The bare baseline: read the keys, build two dicts, look every party up (hits, seconds)."""
    started = time.perf_counter()
    by_npi: dict[str, list] = {}
    by_name: dict[tuple, list] = {}
    for row in db.session.execute(select(ExclusionRecord.id, ExclusionRecord.kind, ExclusionRecord.npi,
                                         ExclusionRecord.name_key, ExclusionRecord.state)):
        if row.npi:
            by_npi.setdefault(row.npi, []).append(row)
        by_name.setdefault((row.name_key, row.state), []).append(row)
    hits = 0
    for subject in subjects_:
        found = set()
        for party in subject.parties:
            found.update(r.id for r in by_npi.get(party.npi or "", ()) if r.kind == ExclusionRecordKind.EXCLUSION)
            for state in subject.states:
                found.update(r.id for r in by_name.get((party.name_key, state), ())
                             if r.kind == ExclusionRecordKind.EXCLUSION)
        hits += len(found)
    return hits, time.perf_counter() - started


def dict_join_gc_paused(subjects_: list[screening.Subject]) -> tuple[int, float]:
    """The dict join with the garbage collector paused as screen_many pauses it: the stricter baseline."""
    with screening.gc_paused():
        return dict_join(subjects_)


def timed_batches(provider_ids: list[int], today, thresholds: screening.Thresholds, batch_size: int) -> float:
    """What the sweep's batch tasks do short of recording: read each batch's providers (rechecks.facts_many) and
    screen them with screen_many, the index built by the first batch and kept, as in one worker process."""
    screening.forget_index()
    started = time.perf_counter()
    for start in range(0, len(provider_ids), batch_size):
        found = rechecks.facts_many(db.session, [(provider_id, CheckKind.EXCLUSION)
                                                 for provider_id in provider_ids[start:start + batch_size]])
        subjects_ = [rechecks.screening_subject(f) for f in found.values()]
        screening.screen_many(db.session, subjects_, today, thresholds)
    return time.perf_counter() - started


def timed_screening(everyone: list[screening.Subject], today, thresholds: screening.Thresholds) -> tuple[list, float]:
    screening.forget_index()  # each measurement builds the index of the lists, as a new worker process does
    started = time.perf_counter()
    results = screening.screen_many(db.session, everyone, today, thresholds)
    return results, time.perf_counter() - started


def run(size: str, sample: int = 200, one_by_one: int = 5000, log=print) -> dict:
    scale = parse_size(size)
    app = bench_app()
    with app.app_context():
        ensure_built(scale, log)
        rows = db.session.scalar(select(func.count()).select_from(ExclusionRecord))
        today = utcnow().date()
        started = time.perf_counter()
        everyone = subjects()
        read_seconds = time.perf_counter() - started
        parties = sum(len(s.parties) for s in everyone)
        load_at_start = [round(x, 2) for x in os.getloadavg()]
        join_hits, join_seconds = dict_join(everyone)
        exact_results, exact_seconds = timed_screening(everyone, today, screening.Thresholds(fuzzy=False))
        results, fuzzy_seconds = timed_screening(everyone, today, screening.Thresholds())
        join_hits_again, join_again = dict_join(everyone)
        baseline = min(join_seconds, join_again)
        strict_baseline = min(dict_join_gc_paused(everyone)[1] for _ in range(2))
        batch_size = app.config["SCREENING_BATCH_SIZE"]
        batched_seconds = timed_batches(list(db.session.scalars(select(Provider.id).order_by(Provider.id))), today,
                                        screening.Thresholds(), batch_size)
        ours = fuzzy_seconds + read_seconds
        matches = sum(len(r.findings) for r in results)
        exact_matches = sum(len(r.findings) for r in exact_results)
        started = time.perf_counter()
        for subject in everyone[:one_by_one]:
            screening.screen(db.session, subject.parties, subject.states, subject.cities, today)
        single = (time.perf_counter() - started) / min(one_by_one, len(everyone)) * len(everyone)
        records = list(db.session.execute(select(ExclusionRecord.kind, ExclusionRecord.npi, ExclusionRecord.name_key,
                                                 ExclusionRecord.state)))
        started = time.perf_counter()
        for subject in everyone[:sample]:
            nested(records, subject.parties, subject.states)
        base_sample = time.perf_counter() - started
        db.session.rollback()
    result = {
        "providers": len(everyone), "parties": parties, "exclusion_rows": rows, "matches": matches,
        "exact_matches": exact_matches, "dict_join_hits": join_hits,
        "dict_join_seconds": round(baseline, 3), "exact_seconds": round(exact_seconds, 3),
        "fuzzy_seconds": round(fuzzy_seconds, 3),
        "exact_vs_dict_join": round(exact_seconds / baseline, 2), "fuzzy_vs_dict_join": round(fuzzy_seconds / baseline, 2),
        "dict_join_gc_paused_seconds": round(strict_baseline, 3),
        "fuzzy_vs_dict_join_gc_paused": round(fuzzy_seconds / strict_baseline, 2),
        "batch_size": batch_size, "batched_read_and_screen_seconds": round(batched_seconds, 2),
        "load_at_start": load_at_start, "load_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(ours, 2), "read_seconds": round(read_seconds, 2),
        "per_provider_ms": round(ours / len(everyone) * 1000, 3),
        "one_by_one_sample": min(one_by_one, len(everyone)), "one_by_one_extrapolated_seconds": round(single, 1),
        "baseline_sample": sample, "baseline_sample_seconds": round(base_sample, 2),
        "baseline_extrapolated_seconds": round(base_sample / sample * len(everyone), 1),
    }
    log(f"  exact {exact_seconds:.2f} s, exact+fuzzy {fuzzy_seconds:.2f} s, dict join {baseline:.2f} s "
        f"({result['exact_vs_dict_join']}x, {result['fuzzy_vs_dict_join']}x; against the dict join with the "
        f"collector paused {strict_baseline:.2f} s: {result['fuzzy_vs_dict_join_gc_paused']}x); load {load_at_start}")
    log(f"  the sweep's batches of {batch_size} (read the providers, screen): {batched_seconds:.1f} s")
    log(f"  screening {len(everyone):,} providers ({parties:,} parties) against {rows:,} rows: {ours:.1f} s, "
        f"{matches} matches; nested baseline extrapolated {result['baseline_extrapolated_seconds']} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    args = parser.parse_args()
    print(json.dumps(run(args.size), indent=1))


if __name__ == "__main__":
    main()
