"""The names a template binds by importing macros, so a name that hides a variable the view passes is caught.

`{% from "m.html" import listing %}` in a template that is also given `listing=` makes every `listing` in
it the macro: the page then shows the macro's attributes (nothing) instead of the data, with no error.
"""
from __future__ import annotations

from flask import Flask, before_render_template
from jinja2 import Environment, nodes

_bound: dict[str, frozenset[str]] = {}


def imported_names(env: Environment, name: str) -> frozenset[str]:
    """Names bound by `{% import %}` and `{% from ... import %}` in the template and the ones it extends or
    includes (they render with the same variables)."""
    if name not in _bound:
        _bound[name] = frozenset()  # a template that includes itself stops here
        source, _, _ = env.loader.get_source(env, name)
        tree = env.parse(source)
        names: set[str] = set()
        for node in tree.find_all((nodes.FromImport, nodes.Import, nodes.Extends, nodes.Include)):
            if isinstance(node, nodes.FromImport):
                names.update(alias if isinstance(alias, str) else alias[1] for alias in node.names)
            elif isinstance(node, nodes.Import):
                names.add(node.target)
            elif isinstance(node.template, nodes.Const) and isinstance(node.template.value, str):
                names |= imported_names(env, node.template.value)
        _bound[name] = frozenset(names)
    return _bound[name]


def refuse_shadowed_context(app: Flask) -> None:
    """Fail any render in this app whose variables include a name the template binds to an imported macro."""

    def check(sender, template, context, **extra):
        hidden = sorted(imported_names(sender.jinja_env, template.name) & context.keys())
        assert not hidden, (f"{template.name} imports {', '.join(hidden)} under the name of a variable its view "
                            "passes; the import hides the value. Rename the macro.")

    before_render_template.connect(check, app, weak=False)
