"""The offline verifier's speed with and without signed checkpoints, against the verifier as it was before them.

Usage: python -m benchmarks.audit_checkpoints [--events 1000000] [--checkpoints 365] [--rounds 3]
       BACKOFFICE_INSTANCE_PATH=/tmp/bench python -m benchmarks.audit_checkpoints --folder 1000,10000 [--rounds 5]

Writes an export of N valid events in the layout the product writes (no database needed), a folder of signed
checkpoints along it, and times, in the same run, each as a separate process as an auditor runs it:
the baseline (backoffice/auditverify.py as committed on `main`, or --baseline FILE), today's verifier alone,
and today's verifier with --checkpoints/--jwks. Best of --rounds; records the load average before and after.

--folder N,...: the published folder as the pages and the publishing after each grant read it, with N files
(a scratch SQLite database for the publication's audit event and mail): `folder_state` and one `publish`,
before (every file read and verified: main's `read_checkpoints` for the page, the daily verification's reading
for the publish) and after (what this process verified already taken by its files' status), in the same run.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backoffice import auditverify, jws  # noqa: E402
from backoffice.models import utcnow  # noqa: E402
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


def _median(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def main_reader(folder: Path):
    """main's read_checkpoints, loaded from `git show` beside a copy of jws.py (as the script runs standalone)."""
    target = folder / "main-verifier"
    target.mkdir()
    (target / "auditverify.py").write_text(subprocess.run(
        ["git", "show", "main:backoffice/auditverify.py"], cwd=ROOT, capture_output=True, text=True,
        check=True).stdout)
    shutil.copyfile(ROOT / "backoffice" / "jws.py", target / "jws.py")
    sys.path.insert(0, str(target))
    try:
        importlib.import_module("jws")  # what its _jws() imports when first called
        return importlib.import_module("auditverify").read_checkpoints
    finally:
        sys.path.remove(str(target))


def folder_run(sizes: list[int], rounds: int) -> dict:
    from flask_migrate import upgrade

    from backoffice.extensions import db
    from backoffice.services import audit_publish
    from benchmarks.generate import bench_app, scratch_database

    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-folder-") as tmp:
        folder = Path(tmp)
        main_read = main_reader(folder)
        with scratch_database("checkpoint_folder", folder) as url:
            app = bench_app(SQLALCHEMY_DATABASE_URI=url)
            with app.app_context():
                upgrade()
                for size in sizes:
                    directory = folder / f"published-{size}"
                    directory.mkdir()
                    publication = audit_publish.Publication(directory, app.extensions["signing"])
                    previous = None
                    for number in range(1, size + 1):
                        payload = {"number": number, "previous": previous, "seq": number, "hash": "c" * 64,
                                   "taken_at": "2026-12-01T00:00:00Z", "occasion": audit_publish.GRANT}
                        data = (publication.signing.sign(payload, auditverify.CHECKPOINT_TYP) + "\n").encode()
                        (directory / auditverify.checkpoint_file_name(number)).write_bytes(data)
                        previous = hashlib.sha256(data).hexdigest()
                    time.sleep(auditverify.VerifiedPrefix.SETTLE_NS / 1e9 + 0.1)  # files as old as a day's are
                    keys = publication.signing.trusted()
                    known = audit_publish.verified_prefix(directory)
                    page_before, page_after, publish_before, publish_after = [], [], [], []
                    seq = size
                    for _ in range(rounds):
                        started = time.perf_counter()
                        state = audit_publish.FolderState(directory, len(main_read(str(directory), keys)), None, None)
                        page_before.append(time.perf_counter() - started)
                        audit_publish.folder_state(publication)  # what the daily verification left
                        started = time.perf_counter()
                        state = audit_publish.folder_state(publication)
                        page_after.append(time.perf_counter() - started)
                        expect(state.problem is None and state.count >= size, f"the folder did not read: {state}")
                        reads_page = known.last_read
                        for timings, every in ((publish_before, True), (publish_after, False)):
                            seq += 1
                            started = time.perf_counter()
                            if every:
                                known.forget()
                            audit_publish.publish(db.session, publication, seq, "d" * 64, utcnow(),
                                                  audit_publish.GRANT)
                            timings.append(time.perf_counter() - started)
                            db.session.rollback()
                        reads_publish = known.last_read
                    results.append({"files": size, "rounds": rounds, "unit": "ms, median",
                                    "folder_state_before": _median(page_before),
                                    "folder_state_after": _median(page_after),
                                    "publish_before": _median(publish_before),
                                    "publish_after": _median(publish_after),
                                    "files_verified_by_last_page_after": reads_page,
                                    "files_verified_by_last_publish_after": reads_publish})
                db.engine.dispose()
    return {"load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()], "folders": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=365)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="the verifier to compare with (default: main's)")
    parser.add_argument("--write", action="store_true", help="record in benchmarks/results/audit_checkpoints.json")
    parser.add_argument("--folder", default=None, help="file counts (1000,10000): the published folder's reading")
    args = parser.parse_args()
    if args.folder:
        print(json.dumps(folder_run([int(n) for n in args.folder.split(",")], args.rounds), indent=2))
        return
    result = run(args.events, args.checkpoints, args.rounds, args.baseline)
    print(json.dumps(result, indent=2))
    if args.write:
        (ROOT / "benchmarks" / "results" / "audit_checkpoints.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
