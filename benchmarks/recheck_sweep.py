"""Re-check sweep throughput: N website checks through a real Celery worker against a local farm of slow sites.

Usage: DATABASE_URL=... [REDIS_URL=...] python -m benchmarks.recheck_sweep [--checks 10000] [--hosts 1000]

The farm: threaded HTTP servers on 127.0.0.1, each answer delayed 100-300 ms (uniform), reached under
`--hosts` distinct names through OUTBOUND_HOST_OVERRIDES with OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS (only this
benchmark sets them). The worker is started with the Procfile's worker command (same pool and concurrency)
on its own database (a new SQLite file, or DATABASE_URL's server with a database of its own), and runs the
product's `run_check` task for each listed provider's website, asked for as the sweep asks: a work row per
check, a batch of rows per commit, each sent after it (the timing includes every row's claim and finish). Baseline: the same check one after another
in this process, timed on a sample and extrapolated. Bound: mean latency x checks / worker concurrency.
Plain HTTP: TLS handshakes are CPU work measured by benchmarks/website_checks.py, not network waiting.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import func, insert, select

from backoffice.checks import website
from backoffice.checks.http import client_for
from backoffice.extensions import db
from backoffice.models import (
    CheckKind,
    CheckOutcome,
    CheckRun,
    ListingStatus,
    Location,
    Provider,
    Work,
    WorkKind,
    WorkState,
    utcnow,
)
from backoffice.services import work
from benchmarks.expect import expect
from benchmarks.generate import bench_app, scratch_database

ROOT = Path(__file__).resolve().parent.parent
LATENCY = (0.100, 0.300)


class SlowSite(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512


def farm(servers: int) -> list[SlowSite]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            time.sleep(random.uniform(*LATENCY))
            name = self.path.strip("/").replace("-", " ")
            body = f"<html><body><h1>{name}</h1><p>Admissions and services.</p></body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    started = []
    for _ in range(servers):
        server = SlowSite(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
    return started


def worker_command() -> list[str]:
    """The Procfile's worker line, run with this interpreter."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            args = shlex.split(line.split(":", 1)[1])
            return [sys.executable, "-m", "celery", *args[1:]]
    raise SystemExit("no worker line in the Procfile")


def worker_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the worker process has used: on a shared machine, less noisy than wall time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float | None:
    """The most resident memory the process has held (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def concurrency_of(command: list[str]) -> int:
    for flag in ("--concurrency", "-c"):
        if flag in command:
            return int(command[command.index(flag) + 1])
    return os.cpu_count() or 1


def run(checks: int = 10_000, hosts: int = 1000, servers: int = 8, sample: int = 50, log=print) -> dict:
    instance = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    sample = min(sample, checks)
    sites = farm(servers)
    names = [f"site{n}.farm.test" for n in range(hosts)]
    settings = {
        "OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS": "1",
        "OUTBOUND_HOST_OVERRIDES": json.dumps({name: "127.0.0.1" for name in names}),
        "CHECK_MAX_RETRIES": "0",
        "BROKER_FOLDER": str(instance / "broker"),
        "CELERY_QUEUE": f"bench-sweep-{os.getpid()}",
        "BEAT_SCHEDULE_FILE": str(instance / "beat"),
        "OUTBOX_FOLDER": str(instance / "outbox"),
    }
    with scratch_database("sweep", instance) as url:
        env = {**os.environ, **settings, "BACKOFFICE_ENV": "testing", "BACKOFFICE_INSTANCE_PATH": str(instance),
               "DATABASE_URL": url}
        app = bench_app(SQLALCHEMY_DATABASE_URI=url, **{**settings, "OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS": True,
                                                         "OUTBOUND_HOST_OVERRIDES": {n: "127.0.0.1" for n in names},
                                                         "CHECK_MAX_RETRIES": 0})
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            now = utcnow()
            urls = {}
            for start in range(0, checks, 5000):
                ids = range(start + 1, min(start + 5000, checks) + 1)
                rows = []
                for pid in ids:
                    site = sites[pid % servers]
                    urls[pid] = f"http://{names[pid % hosts]}:{site.server_address[1]}/Clinic-{pid}"
                    rows.append({"id": pid, "legal_name": f"Clinic {pid}", "public_name": f"Clinic {pid}",
                                 "website": urls[pid], "levels_of_care": [], "services": [], "populations": [],
                                 "payment_accepted": [], "listing_status": ListingStatus.LISTED, "created_at": now,
                                 "updated_at": now, "row_version": 1})
                db.session.execute(insert(Provider), rows)
                db.session.execute(insert(Location), [{"provider_id": pid, "street1": "1 Main St", "city": "Town",
                                                       "state": "VA", "zip": "22902"} for pid in ids])
            db.session.commit()

            # Baseline: the same check, one after another.
            client = client_for(app.config)
            started = time.perf_counter()
            for pid in range(1, sample + 1):
                # Plain HTTP: "warn" (not HTTPS) is the expected outcome; anything else means the farm is wrong.
                outcome = website.check(client, urls[pid], [f"Clinic {pid}"]).outcome.value
                expect(outcome == "warn", f"the sequential check of {urls[pid]} ended {outcome!r}, not 'warn' "
                                          "(reached over plain HTTP): the farm is not what is being checked")
            sequential_per_check = (time.perf_counter() - started) / sample

            command = worker_command() + ["-Q", settings["CELERY_QUEUE"], "--without-mingle", "--without-gossip"]
            concurrency = concurrency_of(command)
            log_file = instance / "worker.log"
            worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file.open("w"), stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 60
                while "ready." not in log_file.read_text():
                    if worker.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"worker did not start:\n{log_file.read_text()[-3000:]}")
                    time.sleep(0.2)
                started = time.perf_counter()
                # As the sweep asks for them: a work row per check, a batch per commit, sent after it.
                policy = work.Policy.from_config(app.config)
                batch = app.config["RECHECK_BATCH_SIZE"]
                for first in range(1, checks + 1, batch):
                    work.request_many(db.session, "system:recheck-sweep", [
                        work.check_spec(WorkKind.SCHEDULED_CHECK, pid, CheckKind.WEBSITE, "bench")
                        for pid in range(first, min(first + batch, checks + 1))], policy)
                    db.session.commit()
                enqueued = time.perf_counter() - started
                budget = checks * LATENCY[1] / max(1, concurrency) * 3 + 120
                while True:
                    db.session.rollback()
                    done = db.session.scalar(select(func.count()).select_from(CheckRun))
                    if done >= checks:
                        break
                    if time.perf_counter() - started > budget or worker.poll() is not None:
                        raise SystemExit(f"{done} of {checks} checks after {time.perf_counter() - started:.0f} s:\n"
                                         f"{log_file.read_text()[-3000:]}")
                    time.sleep(0.5)
                elapsed = time.perf_counter() - started
                worker_cpu = worker_cpu_seconds(worker.pid)
                worker_rss = peak_rss_mb(worker.pid)
                outcomes = dict(db.session.execute(select(CheckRun.outcome, func.count()).group_by(CheckRun.outcome)).all())
                db.session.rollback()
                # A check refused, failed or errored is quick and measures nothing of the sweep.
                expect(set(outcomes) == {CheckOutcome.WARN},
                       f"the worker's checks ended {({str(k): v for k, v in outcomes.items()})}, not all 'warn' "
                       f"(reached over plain HTTP):\n{log_file.read_text()[-3000:]}")
                # Recorded runs are not enough: every work row is finished with its run.
                time.sleep(0.5)
                finished = db.session.scalar(select(func.count()).select_from(Work).where(Work.state == WorkState.DONE))
                db.session.rollback()
                expect(finished == checks, f"{finished} of {checks} work rows are done")
            finally:
                # Cold shutdown: every check is recorded (or the run has failed), so there is nothing for a
                # warm shutdown to wait for but its own pool winding down.
                worker.send_signal(signal.SIGQUIT)
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            db.session.remove()
            db.engine.dispose()
    for site in sites:
        site.shutdown()
    mean_latency = sum(LATENCY) / 2
    bound = mean_latency * checks / concurrency
    rate = checks / elapsed
    result = {
        "checks": checks, "hosts": hosts, "work_rows": True, "worker": " ".join(command[3:]),
        "concurrency": concurrency,
        "seconds": round(elapsed, 1), "enqueue_seconds": round(enqueued, 1),
        "worker_cpu_ms_per_check": round(worker_cpu * 1000 / checks, 2) if worker_cpu is not None else None,
        "checks_per_s": round(rate, 1),
        "worker_peak_rss_mb": worker_rss,
        "outcomes": {str(k): v for k, v in outcomes.items()},
        "sequential_ms_per_check": round(sequential_per_check * 1000, 1),
        "sequential_checks_per_s": round(1 / sequential_per_check, 2),
        "ratio_to_sequential": round(rate * sequential_per_check, 1),
        "bound_seconds": round(bound, 1), "ratio_to_bound": round(elapsed / bound, 2),
    }
    log(f"  sweep {checks:,} checks: {elapsed:.1f} s, {rate:.1f} checks/s, {result['ratio_to_sequential']}x sequential, "
        f"bound {bound:.0f} s ({result['ratio_to_bound']}x the bound) with concurrency {concurrency}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1000)
    args = parser.parse_args()
    print(json.dumps(run(args.checks, args.hosts), indent=1))


if __name__ == "__main__":
    main()
