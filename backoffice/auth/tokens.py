"""Signed, expiring tokens for e-mailed links (address confirmation, password reset)."""
from __future__ import annotations

import time
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer


class TokenExpired(Exception):
    """The token was genuine but is older than allowed."""


class TokenInvalid(Exception):
    """The token was altered, made for another purpose, or is not a token at all."""


def clock() -> float:
    """The signer's notion of now; tests move it to age a token."""
    return time.time()


class _ClockSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(clock())


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    # The salt keeps a token made for one purpose from being accepted for another.
    return URLSafeTimedSerializer(secret, salt=f"backoffice.{purpose}", signer=_ClockSigner)


def issue(secret: str, purpose: str, payload: dict[str, Any]) -> str:
    return _serializer(secret, purpose).dumps(payload)


def read(secret: str, purpose: str, token: str, max_age: int) -> dict[str, Any]:
    """The payload of a genuine, unexpired token; raises TokenExpired or TokenInvalid otherwise."""
    serializer = _serializer(secret, purpose)
    try:
        # itsdangerous measures age against time.time(); measure it against our clock instead.
        payload, signed_at = serializer.loads(token, return_timestamp=True)
    except SignatureExpired:
        raise TokenExpired() from None
    except (BadSignature, ValueError, TypeError):
        raise TokenInvalid() from None
    if clock() - signed_at.timestamp() > max_age:
        raise TokenExpired()
    if not isinstance(payload, dict):
        raise TokenInvalid()
    return payload
