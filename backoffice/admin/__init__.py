"""The staff dashboard: Flask-Admin, built per application in init_admin()."""
from __future__ import annotations

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from backoffice import csp_nonce
from backoffice.admin.dashboard import DashboardView
from backoffice.admin.views import build_views
from backoffice.extensions import db


def init_admin(app: Flask) -> Admin:
    """Build the Admin and its views for this app (a module-level Admin breaks a second create_app)."""
    admin = Admin(
        app,
        name="Provider verification",
        theme=Bootstrap4Theme(base_template="admin/backoffice_base.html", fluid=True),
        index_view=DashboardView(name="Dashboard", url="/admin", endpoint="admin"),
        csp_nonce_generator=csp_nonce,
    )
    for view in build_views(db):
        admin.add_view(view)
    return admin
