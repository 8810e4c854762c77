#!/usr/bin/env python3
"""Verify a signed verification receipt with only our public keys. Standard library and `cryptography` only.

    python receiptverify.py RECEIPT --jwks JWKS.json [--status STATUS.jws] [--now 2026-12-01T12:00:00Z]

RECEIPT is a file holding the compact JWS that GET /api/v1/listings/<id>/verification?format=jws answered
("-" reads it from standard input); JWKS.json is the key set from /.well-known/jwks.json, fetched once and
pinned; STATUS.jws is the signed status list from /api/v1/receipts/status (fetch it fresh: it expires after an
hour). Copy this file and jws.py into one folder and run it there; nothing else of the back-office is needed.

Exit status 0 when the receipt holds, 1 when it is refused (the line printed says why: altered, signed by an
unknown key, signed by a key outside the period it signed in, expired, or revoked, suspended, lapsed or
superseded and since when), 2 when an input cannot be read or judged (a missing file, a key set or status list
that is malformed, does not verify or has expired).

What is checked
  the receipt's signature (EdDSA over its header and RFC 8785 canonical payload) with the key its kid names;
  that this key was valid when the receipt says it was signed (iat within the key's valid_from..valid_until);
  its claims (iss, sub, iat, exp, jti, status); that --now (default: now) is before exp; and, with --status,
  that the status list is signed by a trusted key, by the receipt's issuer, has not expired, and does not name
  the receipt's jti.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

if __package__:
    from backoffice import jws
else:  # run as a file: jws.py is the file beside this one (sys.path[0] is this file's folder)
    import jws  # type: ignore[no-redef]

RECEIPT_TYPE = "verification-receipt+jwt"
STATUS_LIST_TYPE = "receipt-status+jwt"
REQUIRED_CLAIMS = ("iss", "sub", "iat", "exp", "jti", "status")
HOLDS, REFUSED, UNREADABLE = 0, 1, 2


@dataclass(frozen=True)
class Result:
    code: int
    message: str
    claims: Mapping[str, Any] | None = None

    @property
    def holds(self) -> bool:
        return self.code == HOLDS

    def __str__(self) -> str:
        return self.message


class Unreadable(Exception):
    """An input that cannot be read or judged: exit 2."""


def _moment(value: Any, what: str) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise jws.Refused(f"{what} is not a NumericDate (whole seconds)")
    return datetime.fromtimestamp(value, timezone.utc)


def _when(moment: datetime) -> str:
    return jws.rfc3339(moment)


def _period(key: jws.TrustedKey) -> str:
    start = _when(key.valid_from) if key.valid_from else "the beginning"
    end = _when(key.valid_until) if key.valid_until else "now"
    return f"from {start} until {end}"


def _signed_at(verified: jws.Verified, what: str) -> datetime:
    """When the token says it was signed; refused when its key was not valid then."""
    iat = _moment(verified.payload.get("iat"), f"the {what}'s iat")
    if not verified.key.covers(iat):
        raise jws.Refused(f"key {verified.key.kid} was not valid when the {what} says it was signed "
                          f"({_when(iat)}): it signed {_period(verified.key)}")
    return iat


def read_status_list(token: str, keys: Mapping[str, jws.TrustedKey], issuer: str,
                     now: datetime) -> dict[str, dict[str, Any]]:
    """The entries of a signed status list by receipt id; Unreadable when it cannot be trusted."""
    try:
        verified = jws.verify_compact(token, keys, STATUS_LIST_TYPE)
        _signed_at(verified, "status list")
        expires = _moment(verified.payload.get("exp"), "the status list's exp")
    except jws.Refused as error:
        raise Unreadable(f"the status list cannot be trusted: {error}") from None
    payload = verified.payload
    if payload.get("iss") != issuer:
        raise Unreadable(f"the status list is issued by {payload.get('iss')!r}, not by the receipt's issuer "
                         f"{issuer!r}")
    if now >= expires:
        raise Unreadable(f"the status list expired at {_when(expires)}: fetch a fresh one")
    entries = payload.get("revoked")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("id"), str)
                                                for e in entries):
        raise Unreadable('the status list has no "revoked" list of entries with ids')
    return {entry["id"]: entry for entry in entries}


def verify(receipt: str, jwks: Any, status: str | None = None, now: datetime | None = None) -> Result:
    """Judge a receipt (compact JWS text) against a JWK set document and, if given, a status list token."""
    now = now or datetime.now(timezone.utc)
    try:
        keys = jws.read_jwks(jwks)
    except jws.Refused as error:
        return Result(UNREADABLE, f"UNREADABLE: {error}")
    try:
        verified = jws.verify_compact(receipt, keys, RECEIPT_TYPE)
    except jws.UnknownKey as error:
        return Result(REFUSED, f"REFUSED: unknown key: {error}; if the published key set has changed, fetch "
                               "it again and check the new key as you pinned the first")
    except jws.Refused as error:
        return Result(REFUSED, f"REFUSED: the receipt was altered or is not a receipt: {error}")
    claims = verified.payload
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        return Result(REFUSED, f"REFUSED: the receipt lacks the claim(s) {', '.join(missing)}", claims)
    try:
        signed_at = _signed_at(verified, "receipt")
        expires = _moment(claims["exp"], "the receipt's exp")
    except jws.Refused as error:
        return Result(REFUSED, f"REFUSED: {error}", claims)
    if now >= expires:
        return Result(REFUSED, f"REFUSED: the receipt expired at {_when(expires)} (it is now {_when(now)}); "
                               "fetch a new one", claims)
    if signed_at > now:
        return Result(REFUSED, f"REFUSED: the receipt says it was signed at {_when(signed_at)}, after "
                               f"{_when(now)}", claims)
    pointer = claims["status"]
    jti = claims["jti"]
    if not isinstance(pointer, dict) or pointer.get("id") != jti:
        return Result(REFUSED, "REFUSED: the receipt's status does not point at its own id in a status list",
                      claims)
    what = f"receipt {jti} for {claims['sub']}"
    if status is None:
        return Result(HOLDS, f"HOLDS (status not checked: pass --status): {what}, signed by key "
                             f"{verified.key.kid} at {_when(signed_at)}, valid until {_when(expires)}", claims)
    try:
        entries = read_status_list(status, keys, claims["iss"], now)
    except Unreadable as error:
        return Result(UNREADABLE, f"UNREADABLE: {error}", claims)
    entry = entries.get(jti)
    if entry is not None:
        return Result(REFUSED, f"REFUSED: {what} no longer holds: {entry.get('reason', 'revoked')} since "
                               f"{entry.get('since', 'an unstated time')}", claims)
    return Result(HOLDS, f"HOLDS: {what}, signed by key {verified.key.kid} at {_when(signed_at)}, valid until "
                         f"{_when(expires)}, not in the status list", claims)


def _read(path: str, what: str) -> str:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise Unreadable(f"cannot read the {what} {path}: {error.strerror}") from None
    # Bytes that are not UTF-8 are kept as replacement characters: a damaged receipt is refused, not unread.
    return data.decode("utf-8", errors="replace")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Verify a signed verification receipt.")
    parser.add_argument("receipt", help="file holding the receipt (compact JWS), or - for standard input")
    parser.add_argument("--jwks", required=True, help="the key set from /.well-known/jwks.json")
    parser.add_argument("--status", help="the status list from /api/v1/receipts/status")
    parser.add_argument("--now", help="judge as of this RFC 3339 time instead of now")
    args = parser.parse_args(argv)
    try:
        now = jws.parse_rfc3339(args.now, "--now") if args.now else None
        receipt = _read(args.receipt, "receipt")
        try:
            jwks = json.loads(_read(args.jwks, "key set"))
        except ValueError:
            raise Unreadable(f"the key set {args.jwks} is not JSON") from None
        status = _read(args.status, "status list") if args.status else None
    except (Unreadable, jws.Refused) as error:
        print(f"UNREADABLE: {error}", file=sys.stderr)
        return UNREADABLE
    result = verify(receipt, jwks, status, now)
    print(result, file=sys.stdout if result.holds else sys.stderr)
    return result.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
