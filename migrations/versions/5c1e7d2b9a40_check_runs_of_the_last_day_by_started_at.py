"""check runs of the last day by check and outcome: index on started_at, check, outcome (for /metrics)

Revision ID: 5c1e7d2b9a40
Revises: 1aa26a253f06
Create Date: 2026-12-01 15:00:00

"""
from alembic import op

revision = '5c1e7d2b9a40'
down_revision = '1aa26a253f06'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('check_run', schema=None) as batch_op:
        batch_op.create_index('ix_check_run_started_check_outcome', ['started_at', 'check', 'outcome'], unique=False)


def downgrade():
    with op.batch_alter_table('check_run', schema=None) as batch_op:
        batch_op.drop_index('ix_check_run_started_check_outcome')
