"""exclusion_record.identity (the same list record across imports) and exclusion_judgement (a researcher's
dismissal or confirmation of a match, kept against that identity)

Revision ID: e7f1a2b3c4d5
Revises: 8c4d2e6f0a13
Create Date: 2026-12-02 01:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = "e7f1a2b3c4d5"
down_revision = 'e7c1a9d4b250'
branch_labels = None
depends_on = None

VERDICT = sa.Enum("dismissed", "confirmed", name="exclusion_verdict", native_enum=False, create_constraint=True,
                  length=9)


def upgrade():
    with op.batch_alter_table("exclusion_record") as batch:
        batch.add_column(sa.Column("identity", sa.String(length=64), nullable=True))
    # Rows imported before identities existed stand for themselves: their content digest is their identity
    # (re-importing the file that holds them adds nothing, so they keep it).
    op.execute("UPDATE exclusion_record SET identity = row_key WHERE identity IS NULL")
    with op.batch_alter_table("exclusion_record") as batch:
        batch.alter_column("identity", existing_type=sa.String(length=64), nullable=False)
        batch.create_index("ix_exclusion_record_identity", ["identity"])
    op.create_table(
        "exclusion_judgement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("record_identity", sa.String(length=64), nullable=False),
        sa.Column("party_key", sa.String(length=200), nullable=False),
        sa.Column("list_name", sa.String(length=40), nullable=False),
        sa.Column("verdict", VERDICT, nullable=False),
        sa.Column("record_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("finding_id", sa.Integer(), nullable=True),
        sa.Column("judged_by", sa.String(length=100), nullable=False),
        sa.Column("judged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["provider.id"], name="fk_exclusion_judgement_provider_id_provider"),
        sa.ForeignKeyConstraint(["finding_id"], ["finding.id"], name="fk_exclusion_judgement_finding_id_finding"),
        sa.PrimaryKeyConstraint("id", name="pk_exclusion_judgement"),
        sa.UniqueConstraint("provider_id", "record_identity", "party_key",
                            name="uq_exclusion_judgement_provider_id_record_identity_party_key"),
    )
    op.create_index("ix_exclusion_judgement_provider_id", "exclusion_judgement", ["provider_id"])


def downgrade():
    op.drop_index("ix_exclusion_judgement_provider_id", table_name="exclusion_judgement")
    op.drop_table("exclusion_judgement")
    with op.batch_alter_table("exclusion_record") as batch:
        batch.drop_index("ix_exclusion_record_identity")
        batch.drop_column("identity")
