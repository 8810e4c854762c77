"""proposed states of a request, for the review queue's state column and filter

Revision ID: 1aa26a253f06
Revises: 7b3e91c5d2a4
Create Date: 2026-12-01 11:40:27.903032

The states of the locations each request proposes, kept beside the request (services.submissions.propose
writes them with `proposed`), so the review queue shows and finds a new provider's request under the state
it would be listed in. Existing requests are filled from their proposed listing, in batches.
"""
import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '1aa26a253f06'
down_revision = '7b3e91c5d2a4'
branch_labels = None
depends_on = None

BATCH = 5_000
# The vocabulary as it stands when this migration was written (backoffice.vocab.US_STATES).
US_STATES = {
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY",
    "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH",
    "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR", "GU", "VI",
    "AS", "MP", "FM", "MH", "PW",
}


def upgrade():
    op.create_table('submission_proposed_state',
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=2), nullable=False),
    sa.ForeignKeyConstraint(['submission_id'], ['submission.id'], name=op.f('fk_submission_proposed_state_submission_id_submission'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('submission_id', 'state', name=op.f('pk_submission_proposed_state'))
    )
    with op.batch_alter_table('submission_proposed_state', schema=None) as batch_op:
        batch_op.create_index('ix_submission_proposed_state_state_submission', ['state', 'submission_id'], unique=False)
    fill()


def states_of(proposed) -> set[str]:
    if isinstance(proposed, str):
        proposed = json.loads(proposed)
    locations = proposed.get("locations") if isinstance(proposed, dict) else None
    return {str(item.get("state") or "").strip().upper() for item in locations or []
            if isinstance(item, dict)} & US_STATES


def fill():
    """Each existing request's proposed states, read by keyset in batches so memory stays flat."""
    bind = op.get_bind()
    submission = sa.table("submission", sa.column("id", sa.Integer), sa.column("proposed", sa.JSON))
    target = sa.table("submission_proposed_state", sa.column("submission_id", sa.Integer),
                      sa.column("state", sa.String))
    last = 0
    while True:
        rows = bind.execute(sa.select(submission.c.id, submission.c.proposed).where(submission.c.id > last)
                            .order_by(submission.c.id).limit(BATCH)).all()
        if not rows:
            return
        values = [{"submission_id": ident, "state": code} for ident, proposed in rows
                  for code in sorted(states_of(proposed))]
        if values:
            bind.execute(target.insert(), values)
        last = rows[-1][0]


def downgrade():
    with op.batch_alter_table('submission_proposed_state', schema=None) as batch_op:
        batch_op.drop_index('ix_submission_proposed_state_state_submission')

    op.drop_table('submission_proposed_state')
