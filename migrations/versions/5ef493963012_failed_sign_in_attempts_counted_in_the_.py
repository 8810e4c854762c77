"""failed sign-in attempts counted in the database, so a lock-out holds across every web process

Revision ID: 5ef493963012
Revises: c2b3be506b53
Create Date: 2026-12-01 11:11:07.968002

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5ef493963012'
down_revision = 'c2b3be506b53'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('failed_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('sign_in', 'second_factor', 'account_security', name='attempt_kind', native_enum=False, create_constraint=True), nullable=False),
    sa.Column('key', sa.String(length=254), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_failed_attempt'))
    )
    with op.batch_alter_table('failed_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_failed_attempt_kind_at', ['kind', 'attempted_at'], unique=False)
        batch_op.create_index('ix_failed_attempt_kind_key_at', ['kind', 'key', 'attempted_at'], unique=False)


def downgrade():
    with op.batch_alter_table('failed_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_failed_attempt_kind_key_at')
        batch_op.drop_index('ix_failed_attempt_kind_at')

    op.drop_table('failed_attempt')
