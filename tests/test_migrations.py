"""Migrations: one head, and `upgrade head` on an empty database gives exactly the models' schema."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from backoffice.extensions import db
from backoffice.models import Base


def _script(app):
    return ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())


def test_there_is_a_single_head(app):
    assert len(_script(app).get_heads()) == 1


def test_upgraded_database_matches_the_models(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgraded_database_is_at_head(app):
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_heads()
    assert set(current) == set(_script(app).get_heads())


def test_downgrade_to_base_and_back(app):
    db.session.remove()
    downgrade(revision="base")
    assert "provider" not in inspect(db.engine).get_table_names()
    upgrade()
    assert "audit_event" in inspect(db.engine).get_table_names()
