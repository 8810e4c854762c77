"""The offline verifier's speed with and without signed checkpoints, against the verifier as it was before them.

Usage: python -m benchmarks.audit_checkpoints [--events 1000000] [--checkpoints 365] [--rounds 3]

Writes an export of N valid events in the layout the product writes (no database needed), a folder of signed
checkpoints along it, and times, in the same run, each as a separate process as an auditor runs it:
the baseline (backoffice/auditverify.py as committed on `main`, or --baseline FILE), today's verifier alone,
and today's verifier with --checkpoints/--jwks. Best of --rounds; records the load average before and after.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backoffice import auditverify, jws  # noqa: E402
from benchmarks.expect import expect  # noqa: E402

ACTIONS = ["assessment.recorded", "submission.transitioned", "decision.recorded", "finding.opened"]


def write_export(path: Path, events: int, every: int) -> list[tuple[int, str]]:
    """An export through its head; returns (seq, hash) every `every` events, where checkpoints are taken."""
    marks, prev = [], auditverify.GENESIS_HASH
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"record": "export", "contiguous": True, "through_head": True, "head_seq": events,
                              "head_hash": None, "filters": {"from_seq": 1, "to_seq": None, "provider_id": None}},
                             separators=(",", ":")) + "\n")
        lines = []
        for seq in range(1, events + 1):
            fields = {"seq": seq, "occurred_at": f"2026-12-01T00:{seq // 60 % 60:02d}:{seq % 60:02d}+00:00",
                      "actor": f"user:{1 + seq % 40}", "action": ACTIONS[seq % 4], "entity_type": "provider",
                      "entity_id": str(1 + seq % 100_000), "provider_id": 1 + seq % 100_000,
                      "before": {"status": "pending"}, "after": {"status": "met"}, "reason": "scale data",
                      "request_id": None, "ip": None}
            digest = auditverify.compute_hash(prev, fields)
            lines.append(auditverify.event_line(fields, "Researcher", prev, digest) + "\n")
            prev = digest
            if seq % every == 0 or seq == events:
                marks.append((seq, digest))
            if len(lines) == 50_000:
                out.writelines(lines)
                lines = []
        out.writelines(lines)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"head_hash":null', f'"head_hash":"{prev}"', 1), encoding="utf-8")
    return marks


def write_checkpoints(folder: Path, marks: list[tuple[int, str]]) -> Path:
    """Signed checkpoints at the marks, as services/audit_publish.py writes them; returns the key set file."""
    key = Ed25519PrivateKey.generate()
    jwk = jws.public_jwk(key.public_key())
    folder.mkdir(parents=True)
    previous = None
    for number, (seq, digest) in enumerate(marks, start=1):
        payload = {"number": number, "previous": previous, "seq": seq, "hash": digest,
                   "taken_at": "2026-12-01T00:00:00Z", "occasion": "verification"}
        data = (jws.sign_compact(key, jwk["kid"], payload, auditverify.CHECKPOINT_TYP) + "\n").encode("ascii")
        (folder / auditverify.checkpoint_file_name(number)).write_bytes(data)
        previous = hashlib.sha256(data).hexdigest()
    keys = folder.parent / "jwks.json"
    keys.write_text(json.dumps({"keys": [jwk]}))
    return keys


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], rounds: int) -> tuple[float, float, str]:
    """Best wall-clock and best CPU seconds (user + system) of the process over `rounds`: on a shared machine
    the CPU time is the steadier figure."""
    best, best_cpu, output = float("inf"), float("inf"), ""
    for _ in range(rounds):
        cpu, started = _children_cpu(), time.perf_counter()
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
        elapsed, used = time.perf_counter() - started, _children_cpu() - cpu
        expect(done.returncode == 0, f"the verifier failed: {done.stdout}{done.stderr}")
        best, best_cpu, output = min(best, elapsed), min(best_cpu, used), done.stdout.strip()
    return best, best_cpu, output


def figures(events: int, seconds: float, cpu: float) -> dict:
    return {"seconds": round(seconds, 2), "events_per_s": round(events / seconds), "cpu_seconds": round(cpu, 2),
            "events_per_cpu_s": round(events / cpu)}


def baseline_script(folder: Path, named: str | None) -> Path:
    target = folder / "baseline" / "auditverify.py"
    target.parent.mkdir()
    if named:
        shutil.copyfile(named, target)
    else:
        text = subprocess.run(["git", "show", "main:backoffice/auditverify.py"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
        target.write_text(text)
    return target


def run(events: int = 1_000_000, checkpoints: int = 365, rounds: int = 3, baseline: str | None = None) -> dict:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-checkpoints-") as tmp:
        folder = Path(tmp)
        export = folder / "export.jsonl"
        marks = write_export(export, events, max(events // checkpoints, 1))
        keys = write_checkpoints(folder / "checkpoints", marks)
        before = baseline_script(folder, baseline)
        script = str(ROOT / "backoffice" / "auditverify.py")
        base_s, base_cpu, base_out = timed([str(before), str(export)], rounds)
        plain_s, plain_cpu, _ = timed([script, str(export)], rounds)
        held_s, held_cpu, held_out = timed([script, str(export), "--checkpoints", str(folder / "checkpoints"),
                                            "--jwks", str(keys)], rounds)
        expect("agrees with all" in held_out, f"the checkpoints were not held: {held_out}")
    return {
        "events": events, "signed_checkpoints": len(marks), "rounds": rounds,
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "baseline_main": {**figures(events, base_s, base_cpu), "output": base_out},
        "now_without_checkpoints": figures(events, plain_s, plain_cpu),
        "now_with_checkpoints": {**figures(events, held_s, held_cpu), "output": held_out},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="the verifier to compare with (default: main's)")
    parser.add_argument("--write", action="store_true", help="record in benchmarks/results/audit_checkpoints.json")
    args = parser.parse_args()
    result = run(args.events, args.checkpoints, args.rounds, args.baseline)
    print(json.dumps(result, indent=2))
    if args.write:
        (ROOT / "benchmarks" / "results" / "audit_checkpoints.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
