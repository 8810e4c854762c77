"""mail delivery: each message's state, Message-ID, attempts and the mail server's reply

Revision ID: d5a8c31e7f02
Revises: 5c1e7d2b9a40
Create Date: 2026-12-01 15:00:00

Messages already sent stay sent; messages never sent are waiting. Attempts made before this version wrote
files only, so they keep their count and are marked sent when they were.
"""
import sqlalchemy as sa
from alembic import op

revision = 'd5a8c31e7f02'
down_revision = '5c1e7d2b9a40'
branch_labels = None
depends_on = None

STATES = ("pending", "sending", "sent", "failed")


def upgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column(
            'delivery_state', sa.Enum(*STATES, name='delivery_state', native_enum=False, create_constraint=True,
                                      length=7),
            nullable=False, server_default='pending'))
        batch_op.add_column(sa.Column('message_id', sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('attempt_started_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_reply', sa.Text(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_notification_message_id'), ['message_id'])
        batch_op.create_index('ix_notification_due', ['delivery_state', 'next_attempt_at', 'id'], unique=False)
    notification = sa.table("notification", sa.column("sent_at"), sa.column("delivery_state"))
    op.execute(notification.update().where(notification.c.sent_at.is_not(None)).values(delivery_state="sent"))


def downgrade():
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_due')
        batch_op.drop_constraint(batch_op.f('uq_notification_message_id'), type_='unique')
        batch_op.drop_constraint('delivery_state', type_='check')
        for column in ('last_reply', 'failed_at', 'attempt_started_at', 'next_attempt_at', 'message_id',
                       'delivery_state', 'link'):
            batch_op.drop_column(column)
