"""work: the exclusion sweeps screen a batch of providers per piece of work

Revision ID: f4b8d2e6a1c3
Revises: e3f7a2c9b614
Create Date: 2026-12-02 06:15:00

The work kind's CHECK constraint gains 'screening_batch'; its column is long enough already.
"""
import sqlalchemy as sa
from alembic import op

revision = 'f4b8d2e6a1c3'
down_revision = 'f4a8c2e1d937'
branch_labels = None
depends_on = None

BEFORE = ('recheck_now', 'scheduled_check', 'screening', 'import_screening', 'expiry_sweep', 'checkpoint', 'rereviews')
AFTER = (*BEFORE, 'screening_batch')


def _kinds(kinds):
    with op.batch_alter_table('work', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_work_work_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_work_work_kind'), sa.column('kind').in_(kinds))


def upgrade():
    _kinds(AFTER)


def downgrade():
    op.execute("DELETE FROM work WHERE kind = 'screening_batch'")
    _kinds(BEFORE)
