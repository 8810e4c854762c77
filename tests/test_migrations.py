"""Migrations: one head, and `upgrade head` on an empty database gives exactly the models' schema."""
import re
import warnings

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


# Indexes on an expression (lower(city)): SQLAlchemy cannot reflect them on SQLite (it warns and leaves them
# out on both sides of the comparison), so the next test checks they exist by name.
EXPRESSION_INDEXES = {"ix_location_city_lower"}


def _on_this_engine(dialect: str):
    """Leaves out of the comparison what the models create on another engine only (`ddl_if(dialect=...)`: the
    trigram indexes exist on PostgreSQL alone)."""
    def include(obj, name, type_, reflected, compare_to):
        only_on = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return only_on is None or only_on == dialect
    return include


def test_upgraded_database_matches_the_models(app):
    with db.engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Skipped unsupported reflection of expression-based index "
                                          rf"({'|'.join(EXPRESSION_INDEXES)})$")
        warnings.filterwarnings("ignore", r"autogenerate skipping metadata-specified expression-based index "
                                          rf"'({'|'.join(EXPRESSION_INDEXES)})'")
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": _on_this_engine(conn.dialect.name)})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_the_expression_indexes_exist_after_the_upgrade(app):
    """Each one on its table, over its expression (the comparison above cannot see them on SQLite)."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            found = dict(conn.exec_driver_sql(
                "SELECT name, tbl_name || ': ' || sql FROM sqlite_master WHERE type = 'index'").all())
        else:
            found = dict(conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes").all())
    made = found.get("ix_location_city_lower", "")
    assert "location" in made and re.search(r"lower\(\(?city\)?(::text)?\)", made), made


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
