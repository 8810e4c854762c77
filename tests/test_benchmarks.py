"""The benchmark tools keep working: each runs end to end at its smallest size, and refuses to measure the wrong
thing. The figures of a tiny run mean nothing and are not kept (benchmarks/RESULTS.md is not touched)."""
from __future__ import annotations

import pytest

from backoffice.models import Role
from benchmarks import audit_checkpoints, audit_export, generate, offline_verify, pages, run, website_checks
from benchmarks.expect import NotMeasured

BENCHMARKS = {"pages", "sweep", "screening", "audit", "import", "reconciler", "gc"}


def test_every_benchmark_runs_at_its_smallest_size(database_url, tmp_path, monkeypatch):
    # run.run points DATABASE_URL at the scale database, as `make bench` does; monkeypatch puts it back after.
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BACKOFFICE_INSTANCE_PATH", str(tmp_path))
    lines = []
    record = run.run("tiny", BENCHMARKS, runs=1, url=database_url)
    assert record["providers"] == generate.SIZES["tiny"]

    labels = [page["page"] for page in record["pages"]]
    assert len(labels) == len(set(labels)) > 20 and "review queue: state=CA" in labels and "provider history" in labels
    assert all(page["median_ms"] > 0 for page in record["pages"])
    assert record["sweep"]["outcomes"] == {"warn": record["sweep"]["checks"]}
    assert record["screening"]["providers"] == generate.SIZES["tiny"] and record["screening"]["matches"] >= 1
    assert record["audit"]["events"] > generate.parse_size("tiny").audit_events
    assert [one["freeze"] for one in record["gc_freeze"]["runs"]] == [False, True]
    assert all(one["worker_peak_rss_mb"] > 0 and one["pages"]["open findings worklist"]["median_ms"] > 0
               for one in record["gc_freeze"]["runs"])
    assert {name: f["rows"] for name, f in record["import"]["files"].items()} == {
        name: generate.SIZES["tiny"] for name in generate.SAMHSA_FILES}

    reconciled = record["reconciler"]
    assert (reconciled["finished"], reconciled["open"], reconciled["due"]) == (2000, 20, 1)
    assert reconciled["quiet_pass"]["median_ms"] > 0 and reconciled["resending_pass_database"]["median_ms"] > 0

    text = run.render([record])
    for heading in ("### Staff pages", "### Re-check sweep", "### Exclusion screening", "### Audit trail",
                    "### Import of the real SAMHSA files", "### Work reconciler (target: a pass < 100 ms)"):
        assert heading in text
    assert "| review queue: first page |" in text

    checks = website_checks.run(checks=6, threads=2, log=lines.append)
    assert checks["checks"] == 6 and "6 website checks over HTTPS" in lines[-1]
    # Last, on the same database: its trail is long enough already, so the export adds no event.
    exported = audit_export.run(events=300, url=database_url, folder=tmp_path, log=lines.append)
    assert exported["db_verify_ok"] and exported["events"] == record["audit"]["events"]
    assert exported["offline_verify"].startswith("OK")


def test_a_page_benchmark_that_is_sent_to_the_sign_in_page_stops(app, client):
    with pytest.raises(NotMeasured) as refused:
        pages.timed(client, "/admin/providers/", runs=3)
    assert str(refused.value).startswith("GET /admin/providers/ answered 302 to /login")
    assert str(refused.value).endswith("not 200; nothing was recorded")


def test_the_benchmark_sign_in_passes_the_second_factor(app, client, make_account):
    researcher = make_account(Role.RESEARCHER, Role.AUDITOR, email="bench@bench.example",
                              password=generate.BENCH_PASSWORD, second_factor=False)
    generate.sign_in(client)
    assert researcher.has_second_factor
    for url in ("/admin/providers/", "/admin/audit/"):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.headers.get("Location"))
    # The same client then measures the page.
    median, p95 = pages.timed(client, "/admin/providers/", runs=2)
    assert 0 < median <= p95


def test_the_offline_verifier_benchmark_runs_at_its_smallest_size():
    result = offline_verify.run(events=200, jobs=2, rounds=1)
    assert set(result["results"]) == {"floor, one process", "floor, 2 processes", "verifier, --jobs 1",
                                      "verifier, --jobs 2"}
    assert all(kind["events_per_s"] > 0 for kind in result["results"].values())


def test_the_checkpoint_benchmark_runs_at_its_smallest_size():
    result = audit_checkpoints.run(events=300, checkpoints=3, rounds=1)
    assert result["signed_checkpoints"] == 3 and result["baseline_main"]["output"].startswith("OK: 300 events")
    assert "It agrees with all 3 signed checkpoints" in result["now_with_checkpoints"]["output"]
