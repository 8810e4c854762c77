"""Staff pages served by the real gunicorn, with and without the start-up heap frozen (the GC_FREEZE setting).

Usage: DATABASE_URL=... python -m benchmarks.gc_freeze [--size full] [--rounds 2] [--requests 100]

The Procfile's web server (gunicorn --preload), one worker, on the scale database the other benchmarks build,
started once per setting and round, alternating (off, on, off, on) so both see the same machine. Each run
signs in over HTTP (password, then the second-factor code), then asks for a mix of staff pages in turn,
`--requests` times each; every answer must be the page itself (200). Reported per page: median and p95 of
the client-side time, and the worker's peak resident memory (VmHWM) after the run. The pause being measured
is Python's full (generation 2) garbage collection: it walks every object the process holds, which without
the freeze includes everything start-up built.
"""
from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from sqlalchemy import select

from backoffice.extensions import db
from benchmarks.expect import NotMeasured, expect
from benchmarks.generate import BENCH_EMAIL, BENCH_PASSWORD, bench_app, ensure_built, parse_size, with_second_factor
from benchmarks.pages import percentiles

PAGES = [
    ("open findings worklist", "/admin/finding-work/"),
    ("review queue", "/admin/review/"),
    ("providers list", "/admin/providers/"),
    ("audit log", "/admin/audit/"),
    ("dashboard", "/admin/"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """Just enough of a browser: one connection, the session cookie, no redirects followed."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookie = ""

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, dict, bytes]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("session="):
                self.cookie = value.split(";", 1)[0]
        return response.status, dict(response.getheaders()), data


def _serve(database_url: str, instance: Path, freeze: bool) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ, "BACKOFFICE_ENV": "testing", "DATABASE_URL": database_url,
           "BACKOFFICE_INSTANCE_PATH": str(instance), "GC_FREEZE": "1" if freeze else "0",
           "WTF_CSRF_ENABLED": "false", "RATELIMIT_ENABLED": "false"}
    env.pop("REDIS_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                               "--preload", "backoffice.wsgi:app"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if Client(port).request("GET", "/healthz")[0] == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise NotMeasured(f"gunicorn did not answer on port {port}: {server.stderr.read().decode()[-500:]}")


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    expect(len(children) == 1, f"gunicorn {master} has {len(children)} workers, not 1")
    return int(children[0])


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise NotMeasured(f"no VmHWM for process {pid}")


def _sign_in(app, client: Client) -> None:
    from backoffice.models import Account
    from tests.conftest import fresh_code

    status, headers, _ = client.request("POST", "/login", {"email": BENCH_EMAIL, "password": BENCH_PASSWORD})
    expect(status == 302 and headers.get("Location", "").endswith("/login/code"),
           f"the password step answered {status} {headers.get('Location')}")
    with app.app_context():
        account = db.session.scalar(select(Account).where(Account.email == BENCH_EMAIL))
        code = fresh_code(account)
        db.session.remove()
    status, headers, _ = client.request("POST", "/login/code", {"code": code})
    expect(status == 302 and "/login" not in headers.get("Location", ""),
           f"the second-factor step answered {status} {headers.get('Location')}")


def one_run(app, database_url: str, instance: Path, freeze: bool, requests: int) -> dict:
    server, port = _serve(database_url, instance, freeze)
    try:
        client = Client(port)
        _sign_in(app, client)
        samples: dict[str, list[float]] = {label: [] for label, _ in PAGES}
        for _label, path in PAGES:  # warm-up: templates compiled, caches filled
            status, _, _ = client.request("GET", path)
            expect(status == 200, f"{path} answered {status}")
        for _ in range(requests):
            for label, path in PAGES:
                started = time.perf_counter()
                status, _, _ = client.request("GET", path)
                samples[label].append((time.perf_counter() - started) * 1000)
                expect(status == 200, f"{path} answered {status}")
        rss = _peak_rss_mb(_worker_pid(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"freeze": freeze, "worker_peak_rss_mb": rss,
            "pages": {label: dict(zip(("median_ms", "p95_ms"), percentiles(s), strict=True)) for label, s in samples.items()}}


def run(size: str, rounds: int = 2, requests: int = 100, log=print) -> dict:
    scale = parse_size(size)
    app = bench_app()
    with app.app_context():
        ensure_built(scale, log)
        from backoffice.models import Account
        with_second_factor(db.session.scalar(select(Account).where(Account.email == BENCH_EMAIL)))
        database_url = app.config["SQLALCHEMY_DATABASE_URI"]
        db.session.remove()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for freeze in (False, True):
                result = one_run(app, database_url, Path(folder), freeze, requests)
                log(f"  GC_FREEZE={'on ' if freeze else 'off'}  worker peak RSS {result['worker_peak_rss_mb']} MB  " +
                    "  ".join(f"{label}: {v['median_ms']}/{v['p95_ms']}" for label, v in result["pages"].items()))
                runs.append(result)
    return {"requests_per_page": requests, "load_average": os.getloadavg(), "runs": runs}


def collections(size: str, requests: int = 200, path: str = "/admin/finding-work/", log=print) -> dict:
    """Why a page's p95 moves with the freeze: in this process, the page `requests` times with the collector as
    is, then after gc.freeze(), then after gc.freeze() once the page has been served (its caches filled), each
    time counting the collections of each generation during the requests and the time they took
    (gc.callbacks). Each setting runs on a heap as start-up and the first request left it."""
    scale = parse_size(size)
    app = bench_app()
    with app.app_context():
        ensure_built(scale, log)
        client = app.test_client()
        from benchmarks.generate import sign_in

        sign_in(client)
        db.session.remove()
    results = {}
    for setting in ("as is", "frozen at start", "frozen after warm-up"):
        gc.collect()
        gc.unfreeze()
        if setting == "frozen at start":
            gc.collect()
            gc.freeze()
        expect(client.get(path).status_code == 200, f"{path} did not answer 200")
        if setting == "frozen after warm-up":
            gc.collect()
            gc.freeze()
        pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        begun: list[float] = []

        def watch(phase: str, info: dict, pauses=pauses, begun=begun) -> None:
            if phase == "start":
                begun.append(time.perf_counter())
            else:
                pauses[info["generation"]].append((time.perf_counter() - begun.pop()) * 1000)

        gc.callbacks.append(watch)
        samples = []
        try:
            for _ in range(requests):
                started = time.perf_counter()
                expect(client.get(path).status_code == 200, f"{path} did not answer 200")
                samples.append((time.perf_counter() - started) * 1000)
        finally:
            gc.callbacks.remove(watch)
        median, p95 = percentiles(samples)
        results[setting] = {"median_ms": median, "p95_ms": p95, "frozen_objects": gc.get_freeze_count(),
                            "collections": {f"gen{g}": len(v) for g, v in pauses.items()},
                            "gen2_ms_each": round(sum(pauses[2]) / len(pauses[2]), 1) if pauses[2] else None,
                            "gc_ms_per_request": round(sum(map(sum, pauses.values())) / requests, 2)}
        log(f"  {setting:<22} {median:.1f} / {p95:.1f} ms  {results[setting]}")
    gc.unfreeze()
    return {"page": path, "requests": requests, "load_average": os.getloadavg(), "settings": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--collections", action="store_true",
                        help="count the collector's passes in this process instead (see collections())")
    args = parser.parse_args()
    if args.collections:
        print(json.dumps(collections(args.size, args.requests), indent=1))
        return
    print(json.dumps(run(args.size, args.rounds, args.requests), indent=1))


if __name__ == "__main__":
    main()
