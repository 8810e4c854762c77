"""re-verification: a request kind the system opens before verified_until, and why and by when it was opened;
the impact report kept with a criteria catalogue version

Revision ID: e3f7a2c9b614
Revises: 8c4d2e6f0a13
Create Date: 2026-12-02 01:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "e3f7a2c9b614"
down_revision = 'e7b2a4c9d1f6'
branch_labels = None
depends_on = None

# Autogenerate does not see a new enum value in a CHECK constraint: the constraint is replaced by hand.
OLD_KINDS = ("new_listing", "update", "advertiser_application", "reinstatement")
NEW_KINDS = OLD_KINDS + ("reverification",)


def _kinds(kinds):
    with op.batch_alter_table("submission", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_submission_submission_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_submission_submission_kind"), sa.column("kind").in_(kinds))


def upgrade():
    _kinds(NEW_KINDS)
    op.create_table(
        "reverification",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("cause", sa.Enum("due", "criteria", name="reverification_cause", native_enum=False,
                                   create_constraint=True, length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("respond_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renews_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("catalogue_id", sa.Integer(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["catalogue_id"], ["criteria_catalogue.id"],
                                name=op.f("fk_reverification_catalogue_id_criteria_catalogue")),
        sa.ForeignKeyConstraint(["provider_id"], ["provider.id"], name=op.f("fk_reverification_provider_id_provider")),
        sa.ForeignKeyConstraint(["submission_id"], ["submission.id"],
                                name=op.f("fk_reverification_submission_id_submission")),
        sa.PrimaryKeyConstraint("submission_id", name=op.f("pk_reverification")),
    )
    op.create_index("ix_reverification_provider_renews", "reverification", ["provider_id", "renews_until"])
    op.create_index(op.f("ix_reverification_catalogue_id"), "reverification", ["catalogue_id"])
    op.create_table(
        "catalogue_impact",
        sa.Column("catalogue_id", sa.Integer(), nullable=False),
        sa.Column("compared_with_id", sa.Integer(), nullable=True),
        sa.Column("run_by", sa.String(length=100), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listed_providers", sa.Integer(), nullable=False),
        sa.Column("affected_providers", sa.Integer(), nullable=False),
        sa.Column("rereviews", sa.Integer(), nullable=False),
        sa.Column("scheduled", sa.Integer(), nullable=True),
        sa.Column("respond_by", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["catalogue_id"], ["criteria_catalogue.id"],
                                name=op.f("fk_catalogue_impact_catalogue_id_criteria_catalogue")),
        sa.ForeignKeyConstraint(["compared_with_id"], ["criteria_catalogue.id"],
                                name=op.f("fk_catalogue_impact_compared_with_id_criteria_catalogue")),
        sa.PrimaryKeyConstraint("catalogue_id", name=op.f("pk_catalogue_impact")),
    )
    op.create_table(
        "catalogue_impact_provider",
        sa.Column("catalogue_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("provider_name", sa.String(length=300), nullable=False),
        sa.Column("failing", sa.JSON(), nullable=False),
        sa.Column("new", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["catalogue_id"], ["catalogue_impact.catalogue_id"],
                                name=op.f("fk_catalogue_impact_provider_catalogue_id_catalogue_impact")),
        sa.ForeignKeyConstraint(["provider_id"], ["provider.id"],
                                name=op.f("fk_catalogue_impact_provider_provider_id_provider")),
        sa.PrimaryKeyConstraint("catalogue_id", "provider_id", name=op.f("pk_catalogue_impact_provider")),
    )


def downgrade():
    op.drop_table("catalogue_impact_provider")
    op.drop_table("catalogue_impact")
    op.drop_index(op.f("ix_reverification_catalogue_id"), table_name="reverification")
    op.drop_index("ix_reverification_provider_renews", table_name="reverification")
    op.drop_table("reverification")
    # Refused while a re-verification request exists: its kind would break the old constraint.
    _kinds(OLD_KINDS)
