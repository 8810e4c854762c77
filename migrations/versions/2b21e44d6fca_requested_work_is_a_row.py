"""requested work is a row: work with its state, lease and attempts, and partial indexes on the open states

Revision ID: 2b21e44d6fca
Revises: 8e4b6f1d2c73
Create Date: 2026-12-01 14:34:18.029374

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '2b21e44d6fca'
down_revision = '8e4b6f1d2c73'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('work',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('recheck_now', 'scheduled_check', 'screening', 'import_screening', 'expiry_sweep', name='work_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('target_type', sa.String(length=40), nullable=False),
    sa.Column('target_id', sa.String(length=60), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('state', sa.Enum('requested', 'sent', 'running', 'done', 'failed', name='work_state', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_work'))
    )
    with op.batch_alter_table('work', schema=None) as batch_op:
        batch_op.create_index('ix_work_failed', ['updated_at'], unique=False, sqlite_where=sa.text("state = 'failed'"), postgresql_where=sa.text("state = 'failed'"))
        batch_op.create_index('ix_work_open_lease', ['lease_expires_at'], unique=False, sqlite_where=sa.text("state IN ('requested', 'sent', 'running')"), postgresql_where=sa.text("state IN ('requested', 'sent', 'running')"))
        batch_op.create_index('uq_work_open_key', ['idempotency_key'], unique=True, sqlite_where=sa.text("state IN ('requested', 'sent', 'running')"), postgresql_where=sa.text("state IN ('requested', 'sent', 'running')"))



def downgrade():
    with op.batch_alter_table('work', schema=None) as batch_op:
        batch_op.drop_index('uq_work_open_key', sqlite_where=sa.text("state IN ('requested', 'sent', 'running')"), postgresql_where=sa.text("state IN ('requested', 'sent', 'running')"))
        batch_op.drop_index('ix_work_open_lease', sqlite_where=sa.text("state IN ('requested', 'sent', 'running')"), postgresql_where=sa.text("state IN ('requested', 'sent', 'running')"))
        batch_op.drop_index('ix_work_failed', sqlite_where=sa.text("state = 'failed'"), postgresql_where=sa.text("state = 'failed'"))

    op.drop_table('work')
