"""Declarative base, naming convention and column types shared by every model."""
from __future__ import annotations

import base64
import enum
import hashlib
from datetime import datetime, timezone

from cryptography.fernet import Fernet, MultiFernet
from flask import current_app
from sqlalchemy import DateTime, Enum, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp that is always timezone-aware UTC in Python, whatever the engine stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        # SQLite has no zone: store naive UTC so that text ordering is time ordering.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _fernet_key(material: str) -> bytes:
    """A Fernet key from any secret text: the SHA-256 of it, labelled so it is not the raw SECRET_KEY."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"backoffice sealed column:" + material.encode()).digest())


_sealers: dict[tuple, MultiFernet] = {}


def sealer(config) -> MultiFernet:
    """Seals with SEALING_KEY (or, when unset, a key derived from SECRET_KEY); also opens what was sealed with
    any key in SEALING_OLD_KEYS, so keys can be rotated without losing what is stored."""
    current = config.get("SEALING_KEY") or config["SECRET_KEY"]
    keys = (current, *config.get("SEALING_OLD_KEYS", []))
    if keys not in _sealers:
        _sealers[keys] = MultiFernet([Fernet(_fernet_key(k)) for k in keys])
    return _sealers[keys]


class SealedString(TypeDecorator):
    """Text encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256) and plain in Python. A database dump
    alone does not give it away; the key lives with the application's configuration, not in the database."""

    impl = String(255)
    cache_ok = True
    PREFIX = "fernet:"

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return self.PREFIX + sealer(current_app.config).encrypt(value.encode()).decode()

    def process_result_value(self, value, dialect):
        if value is None or not value.startswith(self.PREFIX):
            return value
        return sealer(current_app.config).decrypt(value[len(self.PREFIX):].encode()).decode()


def enum_type(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: VARCHAR plus a CHECK constraint holding the enum's values."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda cls: [m.value for m in cls],
    )


class StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")
