"""source freshness and per-field confirmations: each external source's last import or answer and its stale warning;
when each listed field of a provider was last confirmed, and by which source

Revision ID: e7a1c5f93b24
Revises: 8c4d2e6f0a13
Create Date: 2026-12-02 01:20:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'e7a1c5f93b24'
down_revision = '8c4d2e6f0a13'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'data_source',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('last_refreshed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('stale_since', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_data_source')),
        sa.UniqueConstraint('name', name=op.f('uq_data_source_name')),
    )
    op.create_table(
        'field_confirmation',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider_id', sa.Integer(), nullable=False),
        sa.Column('field', sa.String(length=20), nullable=False),
        sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('check_run_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['check_run_id'], ['check_run.id'],
                                name=op.f('fk_field_confirmation_check_run_id_check_run')),
        sa.ForeignKeyConstraint(['provider_id'], ['provider.id'],
                                name=op.f('fk_field_confirmation_provider_id_provider'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_field_confirmation')),
        sa.UniqueConstraint('provider_id', 'field', name=op.f('uq_field_confirmation_provider_id_field')),
    )
    with op.batch_alter_table('field_confirmation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_field_confirmation_provider_id'), ['provider_id'], unique=False)


def downgrade():
    with op.batch_alter_table('field_confirmation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_field_confirmation_provider_id'))
    op.drop_table('field_confirmation')
    op.drop_table('data_source')
