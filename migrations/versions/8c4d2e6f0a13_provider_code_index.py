"""provider_code: a provider's coded lists (levels of care, services, populations, payment) one row a code,
so the feed's filters read an index instead of every provider's JSON list; filled from the lists

Revision ID: 8c4d2e6f0a13
Revises: 7b3e5f1a9c20
Create Date: 2026-12-01 21:20:00.000000

"""
import json

import sqlalchemy as sa
from alembic import op

revision = "8c4d2e6f0a13"
down_revision = "7b3e5f1a9c20"
branch_labels = None
depends_on = None

# As models.CODED_LISTS and services.provider_codes.rows_for, frozen here: a migration never imports the app.
LISTS = {"levels_of_care": "level_of_care", "services": "service", "populations": "population",
         "payment_accepted": "payment"}
BATCH = 5000


def _values(raw) -> set[str]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return set()
    return {str(value)[:200] for value in raw or [] if value is not None} if isinstance(raw, list) else set()


def upgrade():
    table = op.create_table(
        "provider_code",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("code", sa.String(length=200), nullable=False),
        sa.Column("provider_id", sa.Integer(), sa.ForeignKey("provider.id", ondelete="CASCADE"), nullable=False),
        sa.PrimaryKeyConstraint("kind", "code", "provider_id"),
    )
    op.create_index("ix_provider_code_provider", "provider_code", ["provider_id"])
    connection = op.get_bind()
    provider = sa.table("provider", sa.column("id", sa.Integer), *(sa.column(name, sa.JSON) for name in LISTS))
    last = 0
    while True:
        rows = connection.execute(sa.select(provider).where(provider.c.id > last).order_by(provider.c.id)
                                  .limit(BATCH)).mappings().all()
        if not rows:
            break
        codes = [{"kind": kind, "code": code, "provider_id": row["id"]}
                 for row in rows for name, kind in LISTS.items() for code in sorted(_values(row[name]))]
        if codes:
            connection.execute(table.insert(), codes)
        last = rows[-1]["id"]


def downgrade():
    op.drop_index("ix_provider_code_provider", table_name="provider_code")
    op.drop_table("provider_code")
