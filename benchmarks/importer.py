"""Import of the real SAMHSA facility files (about 25k facilities) end to end, in rows per second.

Usage: DATABASE_URL=... python -m benchmarks.importer [--rows N]

Each file goes through what `flask import findtreatment FILE` does (read and validate, create the providers
with their audit events, commit once) into a new, empty database of its own. `--rows` reads only the first N
rows of each file (the tiny size of the benchmark test); the recorded figures read every row.
"""
from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

from backoffice.extensions import db
from backoffice.importers.locator import read_file
from backoffice.services import imports
from benchmarks.expect import expect
from benchmarks.generate import DATA, SAMHSA_FILES, bench_app, scratch_database


def run(rows_per_file: int | None = None, log=print) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
    files = {}
    with scratch_database("import", folder) as url:
        app = bench_app(SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            for name in SAMHSA_FILES:
                started = time.perf_counter()
                source, rows = read_file(DATA / name)
                records, summary = imports.validate(itertools.islice(rows, rows_per_file), source)
                imports.apply(db.session, "system:import", records, summary)
                db.session.commit()
                elapsed = time.perf_counter() - started
                expect(bool(records) and summary.created == len(records),
                       f"{name}: {summary.created} providers created from {len(records)} rows read "
                       f"({len(summary.rejected)} rejected): the import did not write what it read")
                files[name] = {"rows": len(records), "rejected": len(summary.rejected), "seconds": round(elapsed, 2),
                               "rows_per_s": round(len(records) / elapsed)}
                log(f"  import {name}: {len(records):,} rows in {elapsed:.1f} s, {len(records) / elapsed:,.0f} rows/s")
            db.session.remove()
            db.engine.dispose()
    rows = sum(f["rows"] for f in files.values())
    seconds = sum(f["seconds"] for f in files.values())
    return {"files": files, "rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="only the first ROWS rows of each file")
    args = parser.parse_args()
    print(json.dumps(run(args.rows), indent=1))


if __name__ == "__main__":
    main()
