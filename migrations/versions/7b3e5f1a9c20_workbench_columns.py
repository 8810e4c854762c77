"""the research workbench: a freshness limit per criterion, carried-over assessments, the advertising copy of
an advertiser application, each person's and each organisation's time zone

Revision ID: 7b3e5f1a9c20
Revises: 6a1f0c3d8e52
Create Date: 2026-12-01 21:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = "7b3e5f1a9c20"
down_revision = "6a1f0c3d8e52"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("criterion") as batch:
        batch.add_column(sa.Column("freshness_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("provider") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
    with op.batch_alter_table("assessment") as batch:
        batch.add_column(sa.Column("carried_from_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_assessment_carried_from_id_assessment", "assessment",
                                 ["carried_from_id"], ["id"])
    op.create_table(
        "advertising_copy",
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submission.id"), primary_key=True),
        sa.Column("provider_id", sa.Integer(), sa.ForeignKey("provider.id"), nullable=False),
        sa.Column("headline", sa.String(length=120), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("claims", sa.JSON(), nullable=False),
        sa.Column("landing_url", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_advertising_copy_provider_approved", "advertising_copy", ["provider_id", "approved_at"])


def downgrade():
    op.drop_index("ix_advertising_copy_provider_approved", table_name="advertising_copy")
    op.drop_table("advertising_copy")
    with op.batch_alter_table("assessment") as batch:
        batch.drop_constraint("fk_assessment_carried_from_id_assessment", type_="foreignkey")
        batch.drop_column("carried_from_id")
    with op.batch_alter_table("provider") as batch:
        batch.drop_column("time_zone")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("time_zone")
    with op.batch_alter_table("criterion") as batch:
        batch.drop_column("freshness_days")
