"""open findings worklist: index on finding state, severity and opened_at

Revision ID: c4e2d9a7f310
Revises: b1b120593f70
Create Date: 2026-11-26 16:00:00

"""
from alembic import op

revision = 'c4e2d9a7f310'
down_revision = 'b1b120593f70'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_index('ix_finding_state_severity')
        batch_op.create_index('ix_finding_state_severity_opened', ['state', 'severity', 'opened_at'], unique=False)


def downgrade():
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_index('ix_finding_state_severity_opened')
        batch_op.create_index('ix_finding_state_severity', ['state', 'severity'], unique=False)
