"""The signing key of receipts and checkpoints: loaded from outside the database, published with its predecessors.

The current private key comes from SIGNING_KEY (PEM text) or SIGNING_KEY_FILE; development generates one under
instance/signing/ and production refuses to start without one (config.load). Keys that signed before a rotation
stay published with the period they signed in, read from SIGNING_RETIRED_KEYS_FILE (a JWK set), so what they
signed still verifies; a key's period starts where the one before it ended.
"""
from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

import config
from backoffice import jws


@dataclass(frozen=True)
class SigningKeys:
    """The key that signs now, and every public key a verifier should trust, current first."""

    private_key: Ed25519PrivateKey
    kid: str
    published: tuple[dict[str, str], ...]

    def sign(self, payload: Mapping[str, Any], typ: str) -> str:
        return jws.sign_compact(self.private_key, self.kid, payload, typ)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [dict(jwk) for jwk in self.published]}

    def trusted(self) -> dict[str, jws.TrustedKey]:
        return jws.read_jwks(self.jwks())


def default_key_file() -> Path:
    return config.INSTANCE / "signing" / "ed25519.pem"


def default_retired_file() -> Path:
    return config.INSTANCE / "signing" / "retired-keys.json"


def key_file(settings: Mapping[str, Any]) -> Path | None:
    """Where the private key is kept, or None when it comes from SIGNING_KEY itself."""
    if settings.get("SIGNING_KEY"):
        return None
    return Path(settings["SIGNING_KEY_FILE"]) if settings.get("SIGNING_KEY_FILE") else default_key_file()


def retired_file(settings: Mapping[str, Any]) -> Path:
    named = settings.get("SIGNING_RETIRED_KEYS_FILE")
    return Path(named) if named else default_retired_file()


def load(settings: Mapping[str, Any]) -> SigningKeys:
    """The keys the settings name; outside production a missing key file is generated (readable by its owner only)."""
    path = key_file(settings)
    if path is None:
        pem = settings["SIGNING_KEY"].encode("utf-8")
        where = "SIGNING_KEY"
    else:
        if not path.exists():
            if settings.get("ENV_NAME") == "production":
                raise config.SettingsError(f"SIGNING_KEY_FILE {path} does not exist")
            create_key_file_once(path)
        pem = path.read_bytes()
        where = f"SIGNING_KEY_FILE {path}"
    private_key = _read_private_key(pem, where)
    retired = read_retired(retired_file(settings))
    valid_from = (jws.parse_rfc3339(settings["SIGNING_KEY_VALID_FROM"], "SIGNING_KEY_VALID_FROM")
                  if settings.get("SIGNING_KEY_VALID_FROM") else _end_of(retired))
    current = jws.public_jwk(private_key.public_key(), valid_from=valid_from)
    if any(jwk["kid"] == current["kid"] for jwk in retired):
        raise config.SettingsError(f"the signing key {current['kid']} is also listed as retired in "
                                   f"{retired_file(settings)}: a retired key must not sign again")
    return SigningKeys(private_key, current["kid"], (current, *retired))


def _read_private_key(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise config.SettingsError(f"{where} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise config.SettingsError(f"{where} is not an Ed25519 key (generate one with `flask signing new-key`)")
    return key


def read_retired(path: Path) -> tuple[dict[str, str], ...]:
    """The retired public keys, oldest first; each must say until when it signed."""
    if not path.exists():
        return ()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        keys = jws.read_jwks(document)
    except (ValueError, jws.Refused) as error:
        raise config.SettingsError(f"SIGNING_RETIRED_KEYS_FILE {path} cannot be read: {error}") from None
    undated = [kid for kid, key in keys.items() if key.valid_until is None]
    if undated:
        raise config.SettingsError(f"retired signing key {undated[0]} in {path} has no valid_until")
    jwks = [jwk for jwk in document["keys"] if jwk.get("kid") in keys]
    return tuple(sorted(jwks, key=lambda jwk: jwk["valid_until"]))


def _end_of(retired: tuple[dict[str, str], ...]) -> datetime | None:
    return jws.parse_rfc3339(retired[-1]["valid_until"], "valid_until") if retired else None


def pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _written_beside(path: Path, private_key: Ed25519PrivateKey) -> Path:
    """The key in a new file of this process's own beside `path` (readable by its owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem(private_key))
    return temporary


def write_private_key(path: Path, private_key: Ed25519PrivateKey) -> None:
    """Write a key file readable by its owner only, replacing any other in one step."""
    os.replace(_written_beside(path, private_key), path)


def create_key_file_once(path: Path) -> None:
    """Generate the missing key file, unless another process does first: the web, worker and beat processes
    of a fresh instance start at once, and each must sign with the one key the file holds. The file appears
    whole (a hard link to a file already written) and only once (linking fails where it exists)."""
    temporary = _written_beside(path, Ed25519PrivateKey.generate())
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass  # another process made it first: its key is the one
    finally:
        temporary.unlink()


def new_key_file(path: Path) -> str:
    """Write a new key to a file that must not exist yet (readable by its owner only); returns its key id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    private_key = Ed25519PrivateKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise config.SettingsError(f"{path} already exists: a key file is never overwritten (rotate with "
                                   "`flask signing rotate`, or name another file)") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem(private_key))
    return jws.public_jwk(private_key.public_key())["kid"]


def rotate(settings: Mapping[str, Any], now: datetime) -> tuple[str, str]:
    """Retire the key file's key as of `now` and put a new one in its place; returns (old kid, new kid).

    The old public key goes into the retired key set first, so a crash between the two writes leaves the old
    key refused to sign again (load says so) rather than a signature nobody can check.
    """
    path = key_file(settings)
    if path is None:
        raise config.SettingsError("the signing key comes from SIGNING_KEY: put the new key there, and the old "
                                   "public key (see `flask signing jwks`) with its valid_until in "
                                   "SIGNING_RETIRED_KEYS_FILE")
    keys = load(settings)
    current = dict(keys.published[0], valid_until=jws.rfc3339(now))
    retired_path = retired_file(settings)
    document = {"keys": [*keys.published[1:], current]}
    retired_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = retired_path.with_name(retired_path.name + ".new")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, retired_path)
    new_key = Ed25519PrivateKey.generate()
    write_private_key(path, new_key)
    return keys.kid, jws.public_jwk(new_key.public_key())["kid"]
