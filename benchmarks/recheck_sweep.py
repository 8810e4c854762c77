"""Re-check sweep throughput: N website checks through a real Celery worker against a local farm of slow sites.

Usage: DATABASE_URL=... [REDIS_URL=...] python -m benchmarks.recheck_sweep [--checks 10000] [--hosts 1000]
       [--processes N] [--profile DIR]

The farm: threaded HTTP servers on 127.0.0.1, each answer delayed 100-300 ms (uniform), reached under
`--hosts` distinct names through OUTBOUND_HOST_OVERRIDES with OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS (only this
benchmark sets them). The worker is started with the Procfile's worker command (same pool and concurrency)
on its own database (a new SQLite file, or DATABASE_URL's server with a database of its own), and runs the
product's `run_check` task for each listed provider's website, asked for as the sweep asks: a work row per
check, a batch of rows per commit, each sent after it (the timing includes every row's claim and finish). Baseline: the same check one after another
in this process, timed on a sample and extrapolated. Bound: mean latency x checks / worker concurrency.
Plain HTTP: TLS handshakes are CPU work measured by benchmarks/website_checks.py, not network waiting.

CPU, the figure the goal is set in: the worker processes' user + system time a check, against the same check's
CPU in this process (thread time of the sequential sample: `website.check`, and a bare `http.client` GET of the
same page), both from the same run. `--processes` starts that many copies of the Procfile's worker line (one per
core by default: threads share one interpreter lock, so one process uses one core at most). `--profile DIR`
attaches py-spy to each worker for the sweep (sampling the thread that holds the interpreter lock: where the
CPU goes) and writes its samples there (py-spy must be installed).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import func, insert, select

from backoffice import unit_of_work
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


def database_server_cpu_seconds(url: str) -> float:
    """CPU every PostgreSQL server process on this machine has used (0 for SQLite, whose work is the worker's):
    on a shared server this counts the other clients' statements too, so it is an upper bound."""
    total = 0.0
    if not url.startswith("postgresql"):
        return total
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of every core since boot, from /proc/stat: what the whole machine did in a span
    (the workers, the database, Redis, this process's farm and enqueue, anything else running)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def bare_http_cpu(urls: dict[int, str], sample: int) -> float:
    """CPU a check's GET costs with nothing around it: http.client, one connection per request, as the check."""
    started = time.thread_time()
    for pid in range(1, sample + 1):
        url = urllib.parse.urlsplit(urls[pid])
        connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
        connection.request("GET", url.path, headers={"Host": url.netloc})
        expect(connection.getresponse().read().startswith(b"<html>"), "the farm did not answer the bare GET")
        connection.close()
    return (time.thread_time() - started) / sample


def run(checks: int = 10_000, hosts: int = 1000, servers: int = 8, sample: int = 50, processes: int | None = None,
        profile: Path | None = None, record_batch: int | None = None, message_rows: int | None = None,
        log=print) -> dict:
    instance = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    sample = min(sample, checks)
    processes = processes or os.cpu_count() or 1
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
        # The product's setting unless asked otherwise (1: each check recorded in its own transaction).
        **({"RECHECK_RECORD_BATCH": str(record_batch)} if record_batch else {}),
        # The product's setting unless asked otherwise (1: each check in a message of its own).
        **({"RECHECK_MESSAGE_ROWS": str(message_rows)} if message_rows else {}),
    }
    with scratch_database("sweep", instance) as url:
        env = {**os.environ, **settings, "BACKOFFICE_ENV": "testing", "BACKOFFICE_INSTANCE_PATH": str(instance),
               "DATABASE_URL": url}
        app = bench_app(SQLALCHEMY_DATABASE_URI=url, **{**settings, "OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS": True,
                                                         "OUTBOUND_HOST_OVERRIDES": {n: "127.0.0.1" for n in names},
                                                         "CHECK_MAX_RETRIES": 0,
                                                         **({"RECHECK_RECORD_BATCH": record_batch} if record_batch else {}),
                                                         **({"RECHECK_MESSAGE_ROWS": message_rows} if message_rows else {})})
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
            started, cpu_started = time.perf_counter(), time.thread_time()
            for pid in range(1, sample + 1):
                # Plain HTTP: "warn" (not HTTPS) is the expected outcome; anything else means the farm is wrong.
                outcome = website.check(client, urls[pid], [f"Clinic {pid}"]).outcome.value
                expect(outcome == "warn", f"the sequential check of {urls[pid]} ended {outcome!r}, not 'warn' "
                                          "(reached over plain HTTP): the farm is not what is being checked")
            sequential_per_check = (time.perf_counter() - started) / sample
            # The farm's servers answer in their own threads: this thread's CPU is the check's own.
            check_cpu = (time.thread_time() - cpu_started) / sample
            bare_cpu = bare_http_cpu(urls, sample)

            command = worker_command() + ["-Q", settings["CELERY_QUEUE"], "--without-mingle", "--without-gossip"]
            # Checks in flight: the worker's threads, or with several checks a message its check threads.
            rows = int(app.config["RECHECK_MESSAGE_ROWS"])
            concurrency = processes * (min(concurrency_of(command) * rows, int(app.config["RECHECK_CHECK_THREADS"]))
                                       if rows > 1 else concurrency_of(command))
            logs = [instance / f"worker-{n}.log" for n in range(processes)]
            workers = [subprocess.Popen(command + ["-n", f"sweep{n}@%h"], cwd=ROOT, env=env, stdout=log.open("w"),
                                        stderr=subprocess.STDOUT) for n, log in enumerate(logs)]
            log_file = logs[0]
            profilers: list[subprocess.Popen] = []
            try:
                deadline = time.monotonic() + 180  # several starting at once, on a busy machine
                for worker, log_file in zip(workers, logs, strict=True):
                    while "ready." not in log_file.read_text():
                        if worker.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit(f"worker did not start:\n{log_file.read_text()[-3000:]}")
                        time.sleep(0.2)
                cpu_before = sum(worker_cpu_seconds(w.pid) or 0 for w in workers)
                if profile:
                    profile.mkdir(parents=True, exist_ok=True)
                    profilers = [subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(w.pid), "--rate", "100",
                                                   "--format", "raw", "--nonblocking", "--gil", "-o",
                                                   str(profile / f"worker-{n}.txt")],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                                 for n, w in enumerate(workers)]
                load_at_start = os.getloadavg()
                database_cpu_before = database_server_cpu_seconds(url)
                machine_before, own_before = machine_cpu_seconds(), own_cpu_seconds()
                started = time.perf_counter()
                # As the sweep asks for them: a work row per check, a batch per commit, sent after it.
                policy = work.Policy.from_config(app.config)
                batch = app.config["RECHECK_BATCH_SIZE"]
                for first in range(1, checks + 1, batch):
                    # Retried when it loses the write lock to the workers' commits, as the sweep's claim is.
                    unit_of_work.retrying(db.session, lambda first=first: work.request_many(
                        db.session, "system:recheck-sweep", [
                            work.check_spec(WorkKind.SCHEDULED_CHECK, pid, CheckKind.WEBSITE, "bench")
                            for pid in range(first, min(first + batch, checks + 1))], policy),
                        attempts=5, what="the benchmark's batch of work")
                enqueued = time.perf_counter() - started
                # Generous: a machine shared with other work may run it at a fraction of its speed.
                budget = checks * LATENCY[1] / max(1, concurrency) * 3 + 120 + checks / 10
                while True:
                    db.session.rollback()
                    done = db.session.scalar(select(func.count()).select_from(CheckRun))
                    if done >= checks:
                        break
                    if time.perf_counter() - started > budget or any(w.poll() is not None for w in workers):
                        raise SystemExit(f"{done} of {checks} checks after {time.perf_counter() - started:.0f} s:\n"
                                         f"{log_file.read_text()[-3000:]}")
                    time.sleep(0.5)
                elapsed = time.perf_counter() - started
                machine_after, own_used = machine_cpu_seconds(), own_cpu_seconds() - own_before
                load_at_end = os.getloadavg()
                database_cpu = database_server_cpu_seconds(url) - database_cpu_before
                # Start-up (imports, the app, the pool) is not the sweep's: only what the workers used since ready.
                cpu_used = [worker_cpu_seconds(w.pid) for w in workers]
                worker_cpu = None if None in cpu_used else sum(c or 0 for c in cpu_used) - cpu_before
                rss = [peak_rss_mb(w.pid) for w in workers]
                worker_rss = max((r for r in rss if r is not None), default=None)

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
                for profiler in profilers:  # py-spy writes its samples when interrupted
                    profiler.send_signal(signal.SIGINT)
                    try:
                        profiler.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        profiler.kill()
                for worker in workers:
                    worker.send_signal(signal.SIGQUIT)
                for worker in workers:
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
        "processes": processes, "concurrency": concurrency, "record_batch": int(app.config["RECHECK_RECORD_BATCH"]),
        "message_rows": int(app.config["RECHECK_MESSAGE_ROWS"]),
        "load_average": {"start": [round(x, 2) for x in load_at_start], "end": [round(x, 2) for x in load_at_end]},
        "seconds": round(elapsed, 1), "enqueue_seconds": round(enqueued, 1),
        "worker_cpu_ms_per_check": round(worker_cpu * 1000 / checks, 2) if worker_cpu is not None else None,
        "database_server_cpu_ms_per_check": round(database_cpu * 1000 / checks, 2),
        "inprocess_check_cpu_ms": round(check_cpu * 1000, 2), "bare_http_cpu_ms": round(bare_cpu * 1000, 2),
        "cpu_ratio_to_inprocess": round(worker_cpu / checks / check_cpu, 1) if worker_cpu and check_cpu else None,
        "checks_per_s": round(rate, 1),
        "worker_peak_rss_mb": worker_rss,
        "outcomes": {str(k): v for k, v in outcomes.items()},
        "sequential_ms_per_check": round(sequential_per_check * 1000, 1),
        "sequential_checks_per_s": round(1 / sequential_per_check, 2),
        "ratio_to_sequential": round(rate * sequential_per_check, 1),
        "bound_seconds": round(bound, 1), "ratio_to_bound": round(elapsed / bound, 2),
        # Where the machine's CPU went in the sweep's span: how busy its cores were (1.0: every core all the
        # time, so the sweep could only go faster by costing less CPU), and this process's share (the farm of
        # sites and the enqueue), a check.
        "machine_busy": round((machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1]), 2),
        "benchmark_process_cpu_ms_per_check": round(own_used * 1000 / checks, 2),
    }
    log(f"  sweep {checks:,} checks: {elapsed:.1f} s, {rate:.1f} checks/s, {result['ratio_to_sequential']}x sequential, "
        f"bound {bound:.0f} s ({result['ratio_to_bound']}x the bound) with {processes} x {concurrency // processes}; "
        f"worker CPU {result['worker_cpu_ms_per_check']} ms a check ({result['cpu_ratio_to_inprocess']}x the "
        f"in-process check's {result['inprocess_check_cpu_ms']} ms, bare http.client {result['bare_http_cpu_ms']} ms), "
        f"peak RSS {worker_rss} MB, machine busy {result['machine_busy']}, load {result['load_average']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--sample", type=int, default=50, help="checks timed one after another in this process")
    parser.add_argument("--profile", type=Path, default=None, help="folder for py-spy's samples of each worker")
    parser.add_argument("--record-batch", type=int, default=None, help="RECHECK_RECORD_BATCH for the workers")
    parser.add_argument("--message-rows", type=int, default=None, help="RECHECK_MESSAGE_ROWS for the sweep")
    args = parser.parse_args()
    print(json.dumps(run(args.checks, args.hosts, sample=args.sample, processes=args.processes,
                         profile=args.profile, record_batch=args.record_batch, message_rows=args.message_rows),
                     indent=1))


if __name__ == "__main__":
    main()
