"""the provider names the research decision that granted its verification

Revision ID: 3f1c9a7e5b20
Revises: d5a8c31e7f02
Create Date: 2026-12-01 15:00:00

The receipt and the auditor's box both read `provider.verified_decision_id`. Existing providers are filled
from the audit trail: the last `verification.granted` event of each provider names its request ("request #N
approved"), whose final approved decision granted it. A provider whose trail names no request (verified
outside a decision) keeps NULL, and its receipt says so (no decision, no criteria).
"""
import re

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '3f1c9a7e5b20'
down_revision = 'd5a8c31e7f02'
branch_labels = None
depends_on = None

BATCH = 5_000
REQUEST = re.compile(r"request #(\d+) approved")


def upgrade():
    with op.batch_alter_table('provider', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verified_decision_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_provider_verified_decision_id_decision'), 'decision',
                                    ['verified_decision_id'], ['id'], use_alter=True)
    fill()


def fill():
    """Read the grants in seq order in batches (the last one per provider wins), then set each provider."""
    bind = op.get_bind()
    event = sa.table("audit_event", sa.column("seq", sa.Integer), sa.column("action", sa.String),
                     sa.column("provider_id", sa.Integer), sa.column("reason", sa.Text))
    decision = sa.table("decision", sa.column("id", sa.Integer), sa.column("submission_id", sa.Integer),
                        sa.column("status", sa.String), sa.column("outcome", sa.String))
    provider = sa.table("provider", sa.column("id", sa.Integer), sa.column("verified_decision_id", sa.Integer))
    granted_by: dict[int, int] = {}  # provider id -> submission id of its last grant
    last = 0
    while True:
        rows = bind.execute(sa.select(event.c.seq, event.c.provider_id, event.c.reason)
                            .where(event.c.action == "verification.granted", event.c.seq > last)
                            .order_by(event.c.seq).limit(BATCH)).all()
        if not rows:
            break
        for _seq, provider_id, reason in rows:
            match = REQUEST.search(reason or "")
            if provider_id is not None:
                if match:
                    granted_by[provider_id] = int(match.group(1))
                else:
                    granted_by.pop(provider_id, None)
        last = rows[-1][0]
    submissions = sorted(set(granted_by.values()))
    final: dict[int, int] = {}
    for start in range(0, len(submissions), BATCH):
        chunk = submissions[start:start + BATCH]
        final.update(bind.execute(sa.select(decision.c.submission_id, decision.c.id).where(
            decision.c.submission_id.in_(chunk), decision.c.status == "final",
            decision.c.outcome == "approved")).all())
    for provider_id, submission_id in granted_by.items():
        if submission_id in final:
            bind.execute(provider.update().where(provider.c.id == provider_id)
                         .values(verified_decision_id=final[submission_id]))


def downgrade():
    with op.batch_alter_table('provider', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_provider_verified_decision_id_decision'), type_='foreignkey')
        batch_op.drop_column('verified_decision_id')
