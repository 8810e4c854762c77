"""Exclusion screening at scale: every provider and its principals against the ~80k-row exclusion table.

Usage: BACKOFFICE_INSTANCE_PATH=/tmp/bench DATABASE_URL=... python -m benchmarks.screening [--size full]

Ours: `screening.screen_many` over every provider (one candidate query per 500 providers), their facts
read in bulk. Also `screening.screen` one provider at a time (what one exclusion re-check task calls) on a
sample, extrapolated: that was the only way before screen_many. Baseline: a plain nested comparison of every party with every exclusion row in
Python, timed on a 1k-provider sample and extrapolated to all providers.
"""
from __future__ import annotations

import argparse
import json
import time

from sqlalchemy import func, select

from backoffice.extensions import db
from backoffice.models import ExclusionRecord, ExclusionRecordKind, Location, Principal, Provider, utcnow
from backoffice.services import screening
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
        started = time.perf_counter()
        results = screening.screen_many(db.session, everyone, today)
        ours = time.perf_counter() - started + read_seconds
        matches = sum(len(r.findings) for r in results)
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
        "seconds": round(ours, 2), "read_seconds": round(read_seconds, 2),
        "per_provider_ms": round(ours / len(everyone) * 1000, 3),
        "one_by_one_sample": min(one_by_one, len(everyone)), "one_by_one_extrapolated_seconds": round(single, 1),
        "baseline_sample": sample, "baseline_sample_seconds": round(base_sample, 2),
        "baseline_extrapolated_seconds": round(base_sample / sample * len(everyone), 1),
    }
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
