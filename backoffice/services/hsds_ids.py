"""HSDS ids: deterministic, invertible RFC 9562 version-8 UUIDs that carry the record's kind and our integer ids.

HSDS wants a UUID for every record. Ours are computed, never stored: the same row always gets the same id, and
an id decodes back to the row it names (an organization id is its provider's id), so `/organizations/{id}`
finds the provider without a lookup table. The 122 free bits of a version-8 UUID hold, from the top:

    24 bits  a constant that marks the id as this directory's (a foreign UUID never decodes)
     8 bits  the kind of record (organization, service, location, ...)
     4 bits  the taxonomy of the term the record is about (0: none)
    24 bits  the term's code, as 24 bits of its SHA-256 (0: none); a test proves no two codes share them
    31 bits  the first id (a provider, a location or the high half of an audit sequence number)
    31 bits  the second id (a location, a term's number or the low half of an audit sequence number)

Only the canonical lower-case text of an id decodes: the same record has exactly one spelling.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from enum import IntEnum

from backoffice.vocab import LEVELS_OF_CARE, PAYMENT_ACCEPTED, POPULATIONS, SERVICES

MARK = 0x0D5E7C  # 24 bits: this directory's ids
ID_BITS = 31
MAX_ID = 2**ID_BITS - 1
HASH_BITS = 24
ANY_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# An organization id: kind 1, no term, the provider id in the top 31 bits of the last 62 (the rest zero).
ORGANIZATION_PATTERN = r"^0d5e7c01-0000-8000-[89ab][0-9a-f]{3}-[0-9a-f]{4}[08]0{7}$"


class Kind(IntEnum):
    ORGANIZATION = 1
    ORGANIZATION_IDENTIFIER = 2
    ORGANIZATION_PHONE = 3
    LOCATION = 4
    ADDRESS = 5
    LOCATION_PHONE = 6
    SERVICE = 7
    SERVICE_AT_LOCATION = 8
    ATTRIBUTE = 9
    TAXONOMY = 10
    TAXONOMY_TERM = 11
    METADATA = 12


@dataclass(frozen=True)
class Taxonomy:
    number: int  # 1..15, fixed forever: it is part of every id of the taxonomy's terms
    name: str  # the coded list's kind in provider_code
    title: str
    description: str
    terms: dict[str, str]  # code -> label


# Our published taxonomies, one per coded list; their numbers never change.
TAXONOMIES = (
    Taxonomy(1, "level_of_care", "Levels of care",
             "The levels of care a treatment provider offers; each is published as one HSDS service.", LEVELS_OF_CARE),
    Taxonomy(2, "service", "Services",
             "Treatment and harm-reduction services a provider offers (naloxone, fentanyl test strips, syringe "
             "services, medications for opioid use disorder, peer support among them).", SERVICES),
    Taxonomy(3, "population", "Populations served", "The people a provider's programmes are for.", POPULATIONS),
    Taxonomy(4, "payment", "Payment accepted", "The ways of paying a provider accepts.", PAYMENT_ACCEPTED),
)
TAXONOMY_BY_NUMBER = {t.number: t for t in TAXONOMIES}
TAXONOMY_BY_NAME = {t.name: t for t in TAXONOMIES}


def code_hash(code: str) -> int:
    return int.from_bytes(hashlib.sha256(code.encode()).digest()[:3], "big")


# (taxonomy number, code hash) -> code, for decoding a term's id
_CODES = {(t.number, code_hash(code)): code for t in TAXONOMIES for code in t.terms}
if len(_CODES) != sum(len(t.terms) for t in TAXONOMIES):  # pragma: no cover - a new code collided: rename it
    raise RuntimeError("two codes of one taxonomy share their 24-bit hash; HSDS ids would be ambiguous")


@dataclass(frozen=True)
class Term:
    taxonomy: Taxonomy
    code: str

    @property
    def number(self) -> int:
        """The term as one 28-bit number (taxonomy and code hash): fits in an id slot."""
        return self.taxonomy.number << HASH_BITS | code_hash(self.code)

    @property
    def label(self) -> str:
        return self.taxonomy.terms[self.code]


def term(taxonomy_name: str, code: str) -> Term:
    return Term(TAXONOMY_BY_NAME[taxonomy_name], code)


def term_from_number(number: int) -> Term | None:
    code = _CODES.get((number >> HASH_BITS, number & (2**HASH_BITS - 1)))
    return Term(TAXONOMY_BY_NUMBER[number >> HASH_BITS], code) if code is not None else None


def encode(kind: Kind, first: int = 0, second: int = 0, taxonomy: int = 0, hashed: int = 0) -> str:
    if not (0 <= first <= MAX_ID and 0 <= second <= MAX_ID):
        raise ValueError("id out of range")
    payload = (((MARK << 8 | kind) << 4 | taxonomy) << HASH_BITS | hashed) << ID_BITS * 2 | first << ID_BITS | second
    custom_a, custom_b, custom_c = payload >> 74, (payload >> 62) & 0xFFF, payload & (2**62 - 1)
    return str(uuid.UUID(int=custom_a << 80 | 0x8 << 76 | custom_b << 64 | 0b10 << 62 | custom_c))


@dataclass(frozen=True)
class Decoded:
    kind: Kind
    first: int
    second: int
    taxonomy: int
    hashed: int

    @property
    def term(self) -> Term | None:
        return term_from_number(self.taxonomy << HASH_BITS | self.hashed)


def decode(text: str) -> Decoded | None:
    """The record an id of ours names, or None for anything else (malformed, foreign, another spelling)."""
    if not CANONICAL.match(text):
        return None
    value = uuid.UUID(text).int
    custom_a, custom_b, custom_c = value >> 80, (value >> 64) & 0xFFF, value & (2**62 - 1)
    payload = custom_a << 74 | custom_b << 62 | custom_c
    second, first = payload & MAX_ID, (payload >> ID_BITS) & MAX_ID
    hashed = (payload >> 62) & (2**HASH_BITS - 1)
    taxonomy = (payload >> 86) & 0xF
    kind, mark = (payload >> 90) & 0xFF, payload >> 98
    if mark != MARK or kind not in Kind._value2member_map_:
        return None
    return Decoded(Kind(kind), first, second, taxonomy, hashed)


def decode_as(text: str, kind: Kind) -> Decoded | None:
    decoded = decode(text)
    return decoded if decoded is not None and decoded.kind == kind else None


# The ids of each kind of record, from the rows they stand for.

def organization(provider_id: int) -> str:
    return encode(Kind.ORGANIZATION, provider_id)


def organization_identifier(provider_id: int) -> str:
    return encode(Kind.ORGANIZATION_IDENTIFIER, provider_id)


def organization_phone(provider_id: int) -> str:
    return encode(Kind.ORGANIZATION_PHONE, provider_id)


def location(location_id: int) -> str:
    return encode(Kind.LOCATION, location_id)


def address(location_id: int) -> str:
    return encode(Kind.ADDRESS, location_id)


def location_phone(location_id: int) -> str:
    return encode(Kind.LOCATION_PHONE, location_id)


def _term_parts(level: Term | None) -> tuple[int, int]:
    return (level.taxonomy.number, code_hash(level.code)) if level else (0, 0)


def service(provider_id: int, level: Term) -> str:
    taxonomy, hashed = _term_parts(level)
    return encode(Kind.SERVICE, provider_id, 0, taxonomy, hashed)


def service_at_location(provider_id: int, level: Term, location_id: int) -> str:
    taxonomy, hashed = _term_parts(level)
    return encode(Kind.SERVICE_AT_LOCATION, provider_id, location_id, taxonomy, hashed)


def attribute(provider_id: int, level: Term, tagged: Term) -> str:
    taxonomy, hashed = _term_parts(tagged)
    return encode(Kind.ATTRIBUTE, provider_id, level.number, taxonomy, hashed)


def taxonomy(item: Taxonomy) -> str:
    return encode(Kind.TAXONOMY, 0, 0, item.number, 0)


def taxonomy_term(item: Term) -> str:
    taxonomy_number, hashed = _term_parts(item)
    return encode(Kind.TAXONOMY_TERM, 0, 0, taxonomy_number, hashed)


def metadata(seq: int, field_number: int) -> str:
    """One field's last change: the audit event's sequence number and the field's place in the mapping."""
    return encode(Kind.METADATA, seq >> ID_BITS, seq & MAX_ID, 0, field_number)
