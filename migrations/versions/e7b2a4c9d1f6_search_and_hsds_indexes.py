"""trigram indexes on the providers' names and NPI for the searches by a word (PostgreSQL only, pg_trgm); provider_code
by kind in provider order for the HSDS services pages

Revision ID: e7b2a4c9d1f6
Revises: 8c4d2e6f0a13
Create Date: 2026-12-02 01:10:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = "e7b2a4c9d1f6"
down_revision = 'e7f1a2b3c4d5'
branch_labels = None
depends_on = None

NAMES = ("public_name", "legal_name", "npi")


def upgrade():
    op.create_index("ix_provider_code_kind_provider", "provider_code", ["kind", "provider_id", "code"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    for name in NAMES:
        op.create_index(f"ix_provider_{name}_trgm", "provider", [name], postgresql_using="gin",
                        postgresql_ops={name: "gin_trgm_ops"})


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in NAMES:
            op.drop_index(f"ix_provider_{name}_trgm", table_name="provider")
        # The extension stays: another database object may use it, and dropping it needs more rights.
    op.drop_index("ix_provider_code_kind_provider", table_name="provider_code")
