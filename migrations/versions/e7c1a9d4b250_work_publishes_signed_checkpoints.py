"""work: a signed checkpoint of the audit chain's head, asked for when a provider's verification is granted

Revision ID: e7c1a9d4b250
Revises: 8c4d2e6f0a13
Create Date: 2026-12-02 01:30:00

The work kind's CHECK constraint gains 'checkpoint'; its column is long enough already.
"""
import sqlalchemy as sa
from alembic import op

revision = 'e7c1a9d4b250'
down_revision = 'e7a1c5f93b24'
branch_labels = None
depends_on = None

BEFORE = ('recheck_now', 'scheduled_check', 'screening', 'import_screening', 'expiry_sweep')
AFTER = (*BEFORE, 'checkpoint')


def _kinds(kinds):
    with op.batch_alter_table('work', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_work_work_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_work_work_kind'), sa.column('kind').in_(kinds))


def upgrade():
    _kinds(AFTER)


def downgrade():
    op.execute("DELETE FROM work WHERE kind = 'checkpoint'")
    _kinds(BEFORE)
