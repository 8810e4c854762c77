"""Templates never hide a variable their view passes behind an imported macro of the same name.

The runtime half of this guard is in every test: tests.template_helpers.refuse_shadowed_context fails any
page rendered with such a clash. This test reads the sources, so a template or view no test renders yet is
covered too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import backoffice
from tests.template_helpers import imported_names

SOURCES = Path(backoffice.__file__).resolve().parent
TEMPLATES = SOURCES / "templates"
# What Flask-Admin's BaseView.render adds to every admin page's variables.
FLASK_ADMIN_VARIABLES = {"admin_view", "admin_base_template", "admin_csp_nonce_attribute", "_gettext", "_ngettext",
                         "h", "get_url", "config", "theme"}


def passed_by_views() -> dict[str, set[str]]:
    """Each variable name a view passes by keyword to render_template() or a Flask-Admin render(), and where."""
    passed: dict[str, set[str]] = {}
    for path in SOURCES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("render_template", "render"):
                for keyword in node.keywords:
                    if keyword.arg:
                        passed.setdefault(keyword.arg, set()).add(f"{path.relative_to(SOURCES)}:{node.lineno}")
    return passed


def test_the_source_walk_finds_the_views_variables():
    passed = passed_by_views()
    assert "listing" in passed and "provider" in passed and "form" in passed


def test_no_template_imports_a_macro_under_the_name_of_a_variable(app):
    env = app.jinja_env
    with app.test_request_context():
        context: dict = {}
        app.update_template_context(context)
    variables = {name: {"views"} for name in passed_by_views()}
    for name in {*context, *env.globals, *FLASK_ADMIN_VARIABLES}:
        variables.setdefault(name, set()).add("Flask, Jinja or Flask-Admin")
    clashes = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        template = path.relative_to(TEMPLATES).as_posix()
        for name in sorted(imported_names(env, template) & variables.keys()):
            clashes.append(f"{template} imports {name!r}, a variable passed by {', '.join(sorted(variables[name]))}")
    assert not clashes, "\n".join(clashes)
