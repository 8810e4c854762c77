"""Passwords: Argon2id hashing and the one policy every new password meets."""
from __future__ import annotations

import gzip
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

import config

_hasher = PasswordHasher()
# A real hash to verify against when the account does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("not-a-real-password-used-for-timing")

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
COMMON_PASSWORDS_FILE = config.ROOT / "data" / "security" / "common-passwords.txt.gz"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    """19,640 passwords seen most often in breaches (data/security/PROVENANCE.md); read once per process."""
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as lines:
        return frozenset(line.strip() for line in lines if line.strip())


def password_problem(password: str | None, *, email: str | None = None) -> str | None:
    """What is wrong with a new password, in words for the person choosing it; None when it is acceptable."""
    password = password or ""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    lowered = password.strip().lower()
    if lowered in _common_passwords():
        return "That password is one of the most common ones and is easy to guess. Choose another."
    if len(set(lowered)) < 4:
        return "That password uses too few different characters. Choose another."
    if email and lowered in {email.strip().lower(), email.strip().lower().split("@")[0]}:
        return "Do not use your e-mail address as your password."
    return None
