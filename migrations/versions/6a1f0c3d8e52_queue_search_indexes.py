"""the review queue's search and sorts: proposed cities beside each request, a case-blind index on location
cities, partial indexes of the open requests by age and by latest activity

Revision ID: 6a1f0c3d8e52
Revises: 2b21e44d6fca
Create Date: 2026-12-01 18:45:00.000000

"""
import json

import sqlalchemy as sa
from alembic import op

revision = "6a1f0c3d8e52"
down_revision = "2b21e44d6fca"
branch_labels = None
depends_on = None

OPEN = "state IN ('submitted', 'in_review', 'needs_info')"
BATCH = 5000


def _cities(proposed) -> set[str]:
    """As services.submissions.proposed_cities, frozen here: a migration never imports the app."""
    if isinstance(proposed, str):
        try:
            proposed = json.loads(proposed)
        except ValueError:
            return set()
    locations = proposed.get("locations") if isinstance(proposed, dict) else None
    cities = {" ".join(str(item.get("city") or "").split()).lower()[:100]
              for item in locations or [] if isinstance(item, dict)}
    return cities - {""}


def upgrade():
    op.create_table(
        "submission_proposed_city",
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submission.id"],
                                name=op.f("fk_submission_proposed_city_submission_id_submission"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("submission_id", "city", name=op.f("pk_submission_proposed_city")),
    )
    op.create_index("ix_submission_proposed_city_city_submission", "submission_proposed_city",
                    ["city", "submission_id"])
    op.create_index("ix_location_city_lower", "location", [sa.text("lower(city)")])
    op.create_index("ix_submission_open_submitted", "submission", ["submitted_at", "id"],
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    op.create_index("ix_submission_open_activity", "submission", ["updated_at", "id"],
                    sqlite_where=sa.text(OPEN), postgresql_where=sa.text(OPEN))
    # Every request's proposed cities, from what it proposes, a batch at a time.
    bind = op.get_bind()
    table = sa.table("submission_proposed_city", sa.column("submission_id"), sa.column("city"))
    after = 0
    while True:
        rows = bind.execute(sa.text("SELECT id, proposed FROM submission WHERE id > :after ORDER BY id LIMIT :n"),
                            {"after": after, "n": BATCH}).all()
        if not rows:
            break
        found = [{"submission_id": ident, "city": city} for ident, proposed in rows for city in _cities(proposed)]
        if found:
            bind.execute(table.insert(), found)
        after = rows[-1][0]


def downgrade():
    op.drop_index("ix_submission_open_activity", table_name="submission")
    op.drop_index("ix_submission_open_submitted", table_name="submission")
    op.drop_index("ix_location_city_lower", table_name="location")
    op.drop_index("ix_submission_proposed_city_city_submission", table_name="submission_proposed_city")
    op.drop_table("submission_proposed_city")
