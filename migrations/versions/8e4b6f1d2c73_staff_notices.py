"""staff notices: each person's choice per kind, the daily digest's waiting items, decisions awaiting sign-off

Revision ID: 8e4b6f1d2c73
Revises: 3f1c9a7e5b20
Create Date: 2026-12-01 15:45:00
"""
import sqlalchemy as sa
from alembic import op

revision = '8e4b6f1d2c73'
down_revision = '3f1c9a7e5b20'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'staff_notice_preference',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('mode', sa.Enum('immediately', 'daily', 'off', name='notice_mode', native_enum=False,
                                  create_constraint=True, length=11), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'],
                                name=op.f('fk_staff_notice_preference_account_id_account'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('account_id', 'kind', name=op.f('pk_staff_notice_preference')),
    )
    op.create_table(
        'staff_digest_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=False),
        sa.Column('link', sa.String(length=1000), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('digested_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('notification_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['account_id'], ['account.id'],
                                name=op.f('fk_staff_digest_item_account_id_account'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['notification_id'], ['notification.id'],
                                name=op.f('fk_staff_digest_item_notification_id_notification')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_digest_item')),
    )
    op.create_index('ix_staff_digest_item_waiting', 'staff_digest_item', ['digested_at', 'account_id', 'id'])
    op.create_index('ix_decision_status', 'decision', ['status'])


def downgrade():
    op.drop_index('ix_decision_status', table_name='decision')
    op.drop_index('ix_staff_digest_item_waiting', table_name='staff_digest_item')
    op.drop_table('staff_digest_item')
    op.drop_table('staff_notice_preference')
