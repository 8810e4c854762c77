"""Website checks per second against local HTTPS servers on 127.0.0.1 (no internet needed).

Run: .venv/bin/python -m benchmarks.website_checks [checks] [threads]

Each check gets its own host name (so the per-host rate limit does not serialise them), all mapped
to one local HTTPS server through host overrides: what is measured is our client and check code
(TLS handshake, guards, parsing), i.e. the ceiling our code puts on a sweep. Against real sites the
bounds are their latency and the per-host interval (OUTBOUND_PER_HOST_INTERVAL_MS).

Recorded 2026-11-26 on a 2-vCPU AMD EPYC VM, Python 3.11: 1000 checks, 1 thread: 276 checks/s;
4 threads: 277 checks/s (CPU-bound: TLS handshakes on both ends share the two cores and the GIL).
"""
from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backoffice.checks import website
from backoffice.checks.http import GuardedClient, LocalRateLimiter
from benchmarks.expect import expect
from tests.servers import LocalServer, html_page, make_certificates, tls_context


def run(checks: int = 400, threads: int = 8, log=print) -> dict:
    folder = Path(tempfile.mkdtemp())
    ca, cert, key = make_certificates(folder, ["*.clinic.test"])
    page = html_page("<h1>Harbor Recovery Center</h1>" + "<p>Admissions, services, insurance.</p>" * 200)
    server = LocalServer(lambda path, headers: page, tls_context(cert, key))
    hosts = [f"site{n}.clinic.test" for n in range(checks)]
    client = GuardedClient(allow_loopback_for_tests=True, ca_bundle=str(ca), rate_limiter=LocalRateLimiter(1.0),
                           host_overrides={h: "127.0.0.1" for h in hosts})

    def one(host: str) -> str:
        return website.check(client, server.url(host), ["Harbor Recovery Center"]).outcome.value

    try:
        with ThreadPoolExecutor(threads) as pool:
            started = time.perf_counter()
            outcomes = list(pool.map(one, hosts))
            elapsed = time.perf_counter() - started
    finally:
        server.close()
    # A refused or failed check is quick and measures nothing of the check itself.
    expect(set(outcomes) == {"pass"}, f"the checks ended {sorted(set(outcomes))}, not all 'pass'")
    log(f"{checks} website checks over HTTPS with {threads} threads: {elapsed:.2f} s, "
        f"{checks / elapsed:.0f} checks/s ({len(page[2])} byte page)")
    return {"checks": checks, "threads": threads, "seconds": round(elapsed, 2), "checks_per_s": round(checks / elapsed)}


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:3]))
