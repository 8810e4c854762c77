"""The offline verifier over a whole-chain export, in one process and in parts side by side, against its floor.

Usage: python -m benchmarks.offline_verify [--events 1000000] [--jobs 2] [--rounds 3] [--write]

Writes an export of N valid events in the layout the product writes (no database needed) and runs, each as a
process of its own as an auditor runs it, alternating in every round:
  floor       a bare loop with nothing but the necessary work: each line read as bytes (as the verifier reads
              them) and one SHA-256 of it, in one process and in --jobs parts side by side;
  verifier    `python backoffice/auditverify.py EXPORT --jobs 1`, and `--jobs N`.
Reports events per second of wall time and per CPU second (user + system of the processes), best of --rounds,
with the load average before and after; --write records it in benchmarks/results/offline/.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backoffice import auditverify  # noqa: E402
from benchmarks.audit_checkpoints import figures, timed, write_export  # noqa: E402
from benchmarks.expect import expect  # noqa: E402

# The floor: the file cut into the same parts and its lines read the same way as the verifier does (its own
# part_bounds and lines_between), and nothing else done to each line but one SHA-256 of it.
FLOOR = """
import hashlib, os, sys
from concurrent.futures import ProcessPoolExecutor
sys.path.insert(0, sys.argv[3])
from auditverify import lines_between, part_bounds
path, jobs = sys.argv[1], int(sys.argv[2])
def part(bounds):
    sha256, count = hashlib.sha256, 0
    for line in lines_between(path, *bounds):
        sha256(line).hexdigest()
        count += 1
    return count
with open(path, "rb") as raw:
    bounds = part_bounds(raw, 0, os.path.getsize(path), jobs)
pieces = list(zip(bounds, bounds[1:]))
if jobs == 1:
    lines = part(pieces[0])
else:
    with ProcessPoolExecutor(jobs) as pool:
        lines = sum(pool.map(part, pieces))
print(f"{lines} lines hashed")
"""


def run(events: int = 1_000_000, jobs: int = 2, rounds: int = 3) -> dict:
    load_before = os.getloadavg()
    script = str(ROOT / "backoffice" / "auditverify.py")
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmp:
        export = Path(tmp) / "export.jsonl"
        write_export(export, events, events + 1)
        size = export.stat().st_size
        kinds = {
            "floor, one process": ["-c", FLOOR, str(export), "1", str(ROOT / "backoffice")],
            f"floor, {jobs} processes": ["-c", FLOOR, str(export), str(jobs), str(ROOT / "backoffice")],
            "verifier, --jobs 1": [script, str(export), "--jobs", "1"],
            f"verifier, --jobs {jobs}": [script, str(export), "--jobs", str(jobs)],
        }
        best: dict[str, tuple[float, float, str]] = {}
        for _ in range(rounds):  # alternated, so that each kind meets the same load
            for name, args in kinds.items():
                seconds, cpu, output = timed(args, 1)
                kept = best.get(name)
                best[name] = (min(seconds, kept[0]) if kept else seconds, min(cpu, kept[1]) if kept else cpu, output)
        for name, (_, _, output) in best.items():
            wanted = f"{events + 1} lines hashed" if name.startswith("floor") else f"OK: {events} events verified"
            expect(output.startswith(wanted), f"{name}: {output}")
    results = {name: figures(events, seconds, cpu) for name, (seconds, cpu, _) in best.items()}
    floor, floor_parts = results["floor, one process"], results[f"floor, {jobs} processes"]
    one, parts = results["verifier, --jobs 1"], results[f"verifier, --jobs {jobs}"]
    return {
        "events": events, "export_mb": round(size / 1e6, 1), "jobs": jobs, "rounds": rounds,
        "cores": auditverify.available_cores(),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "results": results,
        "verifier_over_floor": {"one_process_wall": round(one["events_per_s"] / floor["events_per_s"], 2),
                                "parts_wall": round(parts["events_per_s"] / floor_parts["events_per_s"], 2),
                                "per_cpu_s": round(one["events_per_cpu_s"] / floor["events_per_cpu_s"], 2)},
        "goal_500k_events_per_s": "met" if parts["events_per_s"] >= 500_000 else "missed",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=auditverify.available_cores())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="record it in benchmarks/results/offline/")
    args = parser.parse_args()
    result = run(args.events, args.jobs, args.rounds)
    print(json.dumps(result, indent=2))
    if args.write:
        folder = ROOT / "benchmarks" / "results" / "offline"
        folder.mkdir(exist_ok=True)
        now = time.localtime()
        name = f"offline-verify-{now.tm_mday}{time.strftime('%b', now).lower()}-{time.strftime('%H%M', now)}.json"
        (folder / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
