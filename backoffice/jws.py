"""Compact JWS signed with Ed25519 (RFC 7515, RFC 8037) over RFC 8785 canonical JSON, and JWK sets.

Standard library plus `cryptography` only: the standalone verifiers (backoffice/receiptverify.py,
backoffice/auditverify.py) load this file beside them, so a directory or an auditor needs nothing of the
back-office to check what it signed.

Why compact JWS over canonical JSON: any JOSE library (jose, jwcrypto, PyJWT with EdDSA, panva/jose) checks
the token as it is, and because the payload is the canonical encoding, the signed bytes of one receipt are
the same wherever and however often it is produced.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALGORITHM = "EdDSA"
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class Refused(ValueError):
    """A token, key or key set that does not verify; the message says why, in one line."""


class UnknownKey(Refused):
    """A token whose key id names no key of the trusted set: signed by someone else, or by a key not yet fetched."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Unpadded base64url, strictly: padding, other alphabets and stray characters are refused."""
    if not isinstance(text, str) or not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise Refused(f"the {what} is not unpadded base64url")
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise Refused(f"the {what} is not unpadded base64url") from None
    if b64url(decoded) != text:  # non-canonical trailing bits would let two texts carry one value
        raise Refused(f"the {what} is not canonical base64url")
    return decoded


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) for the values we sign: objects with ASCII keys, text, integers, booleans and null.

    For such values JCS is JSON with keys sorted, no whitespace and UTF-8 text, which is what this writes;
    floats (whose JCS form needs ECMAScript number printing) are refused rather than encoded differently.
    """
    _refuse_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _refuse_floats(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("signed payloads carry no floats (RFC 8785 number form); send text or integers")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise TypeError(f"signed payload keys are ASCII text, not {key!r}")
            _refuse_floats(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_floats(item)


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def thumbprint(x: str) -> str:
    """The key id: the RFC 7638 thumbprint (SHA-256) of the Ed25519 public key `x`."""
    members = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(members.encode("ascii")).digest())


def public_jwk(public_key: Ed25519PublicKey, valid_from: datetime | None = None,
               valid_until: datetime | None = None) -> dict[str, str]:
    """A public JWK with its key id and, when known, the period it signed in (RFC 3339, UTC)."""
    x = b64url(raw_public_key(public_key))
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": thumbprint(x), "alg": ALGORITHM, "use": "sig"}
    if valid_from is not None:
        jwk["valid_from"] = rfc3339(valid_from)
    if valid_until is not None:
        jwk["valid_until"] = rfc3339(valid_until)
    return jwk


def rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError, AttributeError):
        raise Refused(f"{what} is not an RFC 3339 date-time: {text!r}") from None
    if moment.tzinfo is None:
        raise Refused(f"{what} has no time zone: {text!r}")
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class TrustedKey:
    """A public key from a key set, with the period it signed in (None: open on that side)."""

    kid: str
    key: Ed25519PublicKey
    valid_from: datetime | None
    valid_until: datetime | None

    def covers(self, moment: datetime) -> bool:
        return ((self.valid_from is None or moment >= self.valid_from)
                and (self.valid_until is None or moment <= self.valid_until))


def read_jwks(document: Any) -> dict[str, TrustedKey]:
    """The Ed25519 signing keys of a JWK set, by key id; a set with no usable key, or a malformed one, is refused."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise Refused('the key set is not a JWK set (an object with a "keys" list)')
    keys: dict[str, TrustedKey] = {}
    for number, jwk in enumerate(document["keys"], start=1):
        if not isinstance(jwk, dict):
            raise Refused(f"key {number} of the key set is not an object")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue  # a set may carry keys for other uses; only Ed25519 ones can have signed ours
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Refused(f"key {number} of the key set has no kid")
        raw = b64url_decode(jwk.get("x", ""), f"x of key {kid}")
        if len(raw) != 32:
            raise Refused(f"key {kid} is not a 32-byte Ed25519 public key")
        if kid in keys:
            raise Refused(f"the key set names key {kid} twice")
        valid_from = jwk.get("valid_from")
        valid_until = jwk.get("valid_until")
        keys[kid] = TrustedKey(
            kid, Ed25519PublicKey.from_public_bytes(raw),
            parse_rfc3339(valid_from, f"valid_from of key {kid}") if valid_from is not None else None,
            parse_rfc3339(valid_until, f"valid_until of key {kid}") if valid_until is not None else None,
        )
    if not keys:
        raise Refused("the key set holds no Ed25519 key")
    return keys


def sign_compact(private_key: Ed25519PrivateKey, kid: str, payload: Mapping[str, Any], typ: str) -> str:
    header = {"alg": ALGORITHM, "kid": kid, "typ": typ}
    signing_input = b64url(canonical_json(header)) + "." + b64url(canonical_json(dict(payload)))
    return signing_input + "." + b64url(private_key.sign(signing_input.encode("ascii")))


@dataclass(frozen=True)
class Verified:
    header: dict[str, Any]
    payload: dict[str, Any]
    key: TrustedKey


def verify_compact(token: str, keys: Mapping[str, TrustedKey], typ: str | None = None) -> Verified:
    """Check a compact JWS against trusted keys: its form, its algorithm, its key id and its signature.

    What the payload claims (expiry, status) is the caller's to judge; this only says who signed which bytes.
    """
    if not isinstance(token, str):
        raise Refused("the token is not text")
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise Refused("the token is not a compact JWS (three base64url parts joined by dots)")
    header = _json_object(b64url_decode(parts[0], "header"), "header")
    if header.get("alg") != ALGORITHM:
        raise Refused(f"the token is signed with {header.get('alg')!r}, not EdDSA (Ed25519)")
    if "crit" in header:
        raise Refused("the token asks for extensions this verifier does not know (crit)")
    if typ is not None and header.get("typ") != typ:
        raise Refused(f"the token is a {header.get('typ')!r}, not a {typ!r}")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise UnknownKey(f"the token is signed by key {kid!r}, which is not in the trusted key set")
    signature = b64url_decode(parts[2], "signature")
    try:
        key.key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
    except InvalidSignature:
        raise Refused(f"the signature does not verify with key {kid}: the token was altered or not signed by it") \
            from None
    payload = _json_object(b64url_decode(parts[1], "payload"), "payload")
    return Verified(header, payload, key)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(f"the {what} is not a JSON object")
    return value
