"""Validate one HSDS record against the shipped HSDS 3.0 schemas and our profile, read from a running app.

Usage: python -m tests.hsds_validate FILE KIND BASE_URL
  KIND: organization, organization_list, service, service_list, service_at_location, service_at_location_list
  BASE_URL: where the app runs, e.g. http://127.0.0.1:5000 (its /hsds/profile/ names the profile's files)
"""
from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import jsonschema

from tests.hsds_schemas import FORMATS, registry


class _Answer:
    def __init__(self, body: bytes):
        self.body = body

    def get_json(self):
        return json.loads(self.body)


class _Http:
    """Just enough of a test client for `registry`: GET an absolute URL or a path on the app."""

    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def get(self, url: str) -> _Answer:
        with urllib.request.urlopen(url if "://" in url else self.base + url, timeout=10) as response:  # noqa: S310
            return _Answer(response.read())


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, kind, base = argv
    http = _Http(base)
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    profile_url = http.get("/hsds/profile/").get_json()["schema_changes"][kind]
    validator = jsonschema.Draft202012Validator({"$ref": profile_url}, registry=registry(http), format_checker=FORMATS)
    errors = sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path))
    for error in errors:
        print(f"{'/'.join(map(str, error.absolute_path)) or '(record)'}: {error.message}")
    if not errors:
        print(f"valid: HSDS 3.0 {kind} and the profile ({profile_url})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
