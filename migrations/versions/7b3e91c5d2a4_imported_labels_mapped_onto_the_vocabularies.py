"""imported labels mapped onto the vocabularies: providers and open requests hold codes only

Providers imported before the locator mapping carry the SAMHSA labels themselves in populations and
payment_accepted ("Cash or self-payment", "Adult men", "Male"); this rewrites every provider's four coded lists,
and the proposed lists of every open request, through version 1 of the mapping (data/vocab/samhsa-locator-v1.json,
the one the importer used when this was written; versions are never edited, so this migration does the same
thing whenever it runs). A label may add codes to another list ("Persons with co-occurring ... disorders" is a
service). Codes, and values the mapping does not know, stay as they are; the latter are printed. Each row
rewritten gets an audit event in the chain, with the lists before and after.

Revision ID: 7b3e91c5d2a4
Revises: 5ef493963012
Create Date: 2026-12-01 12:00:00

"""
import json
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from backoffice.auditverify import compute_hash
from backoffice.vocab import LIST_FIELDS, samhsa_mapping

revision = '7b3e91c5d2a4'
down_revision = '5ef493963012'
branch_labels = None
depends_on = None

MAPPING_VERSION = 1
ACTOR = "system:migration"
REASON = f"imported labels mapped onto the vocabularies (data/vocab/samhsa-locator-v{MAPPING_VERSION}.json)"
OPEN_STATES = ("draft", "submitted", "in_review", "needs_info")

provider = sa.table("provider", sa.column("id", sa.Integer), sa.column("row_version", sa.Integer),
                    sa.column("updated_at", sa.DateTime(timezone=True)),
                    *(sa.column(name, sa.JSON) for name in LIST_FIELDS))
submission = sa.table("submission", sa.column("id", sa.Integer), sa.column("provider_id", sa.Integer),
                      sa.column("state", sa.String), sa.column("proposed", sa.JSON),
                      sa.column("row_version", sa.Integer), sa.column("updated_at", sa.DateTime(timezone=True)))
chain_lock = sa.table("audit_chain_lock", sa.column("id", sa.Integer), sa.column("head_seq", sa.BigInteger),
                      sa.column("head_hash", sa.String))
audit_event = sa.table("audit_event", *(sa.column(name) for name in (
    "seq", "actor", "action", "entity_type", "entity_id", "provider_id", "reason", "request_id", "ip",
    "prev_hash", "hash")), sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("before", sa.JSON), sa.column("after", sa.JSON))


def _lists(value) -> list:
    if isinstance(value, str):  # a JSON column read without its type on some drivers
        value = json.loads(value)
    return list(value or [])


class _Chain:
    """Appends events after the chain's head exactly as the product does (auditverify's hash, the head moved)."""

    def __init__(self, bind):
        self.bind = bind
        self.sqlite = bind.dialect.name == "sqlite"
        # FOR UPDATE holds the head on PostgreSQL as the product's appenders do (SQLite has one writer anyway).
        self.seq, self.prev_hash = bind.execute(
            sa.select(chain_lock.c.head_seq, chain_lock.c.head_hash).where(chain_lock.c.id == 1)
            .with_for_update()).one()
        self.now = datetime.now(timezone.utc)

    def append(self, action: str, entity_type: str, entity_id: int, provider_id: int, before: dict, after: dict):
        self.seq += 1
        fields = {"seq": self.seq, "occurred_at": self.now.isoformat(), "actor": ACTOR, "action": action,
                  "entity_type": entity_type, "entity_id": str(entity_id), "provider_id": provider_id,
                  "before": before, "after": after, "reason": REASON, "request_id": None, "ip": None}
        digest = compute_hash(self.prev_hash, fields)
        # SQLite keeps naive UTC (as the models' UTCDateTime does), PostgreSQL a zoned timestamp.
        occurred = self.now.replace(tzinfo=None) if self.sqlite else self.now
        self.bind.execute(audit_event.insert().values(
            **{**fields, "occurred_at": occurred}, prev_hash=self.prev_hash, hash=digest))
        self.prev_hash = digest

    def close(self) -> None:
        self.bind.execute(chain_lock.update().where(chain_lock.c.id == 1)
                          .values(head_seq=self.seq, head_hash=self.prev_hash))


def _changes(old: dict, new: dict) -> tuple[dict, dict]:
    changed = [name for name in LIST_FIELDS if old.get(name) is not None or new[name]]
    changed = [name for name in changed if _lists(old.get(name)) != new[name]]
    return {name: _lists(old.get(name)) for name in changed}, {name: new[name] for name in changed}


def upgrade():
    bind = op.get_bind()
    mapping = samhsa_mapping(MAPPING_VERSION)
    chain = _Chain(bind)
    unknown: set[str] = set()
    now = chain.now.replace(tzinfo=None) if chain.sqlite else chain.now

    rows = bind.execute(sa.select(provider.c.id, provider.c.row_version, *(provider.c[n] for n in LIST_FIELDS))
                        .order_by(provider.c.id)).all()
    for row in rows:
        old = {name: _lists(getattr(row, name)) for name in LIST_FIELDS}
        mapped = mapping.remap(old)
        unknown.update(mapped.unmapped)
        before, after = _changes(old, mapped.codes)
        if not after:
            continue
        bind.execute(provider.update().where(provider.c.id == row.id)
                     .values(**after, row_version=(row.row_version or 0) + 1, updated_at=now))
        chain.append("provider.vocabulary_mapped", "provider", row.id, row.id, before, after)

    rows = bind.execute(sa.select(submission.c.id, submission.c.provider_id, submission.c.row_version,
                                  submission.c.proposed)
                        .where(submission.c.state.in_(OPEN_STATES)).order_by(submission.c.id)).all()
    for row in rows:
        proposed = row.proposed if isinstance(row.proposed, dict) else json.loads(row.proposed or "{}")
        present = [name for name in LIST_FIELDS if name in proposed]
        if not present:
            continue
        mapped = mapping.remap({name: _lists(proposed.get(name)) for name in present})
        unknown.update(mapped.unmapped)
        # A request proposes only the lists it names; a label that maps into another list adds that list.
        new = {name: values for name, values in mapped.codes.items() if name in present or values}
        before, after = _changes({name: proposed.get(name) for name in present}, {**dict.fromkeys(LIST_FIELDS, []),
                                                                                 **new})
        if not after:
            continue
        bind.execute(submission.update().where(submission.c.id == row.id)
                     .values(proposed={**proposed, **after}, row_version=(row.row_version or 0) + 1, updated_at=now))
        chain.append("submission.vocabulary_mapped", "submission", row.id, row.provider_id,
                     {"proposed": before}, {"proposed": after})
    chain.close()
    if unknown:
        print(f"values the mapping does not know, left as they are ({len(unknown)}): "
              + "; ".join(sorted(map(str, unknown))))


def downgrade():
    # The labels are gone from the rows (the audit events keep them); the codes are valid on the older schema.
    pass
