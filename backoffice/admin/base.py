"""The one secured base for every staff view: deny by default, each view names its roles."""
from __future__ import annotations

import flask_admin.model.base
from flask import flash, g, redirect, request
from flask_admin import AdminIndexView, BaseView
from flask_admin.contrib.sqla import ModelView
from flask_wtf import FlaskForm
from sqlalchemy import inspect, select
from sqlalchemy.orm import selectinload

from backoffice.admin.columns import TYPE_FORMATTERS
from backoffice.admin.filters import FilterConverter
from backoffice.auth.access import deny, has_any_role
from backoffice.auth.redirects import safe_next
from backoffice.extensions import db
from backoffice.models import Role
from backoffice.services import totals


def local_redirect_target(param_name: str = "url") -> str | None:
    """Flask-Admin's `url=` back-link parameter, admitted only if our one safe-redirect check passes."""
    return safe_next(request.values.get(param_name), None)


# Flask-Admin's list and details pages read their `url` parameter through one module-level helper; it is
# pointed at ours so every redirect target in the app passes the same check (a local path, nothing else).
flask_admin.model.base.get_redirect_target = local_redirect_target


def only(*roles: Role):
    """An exposed method open to fewer roles than its view (an auditor reads a case but never decides it)."""
    if not roles:
        raise ValueError("only() needs at least one role")

    def decorator(method):
        method.allowed_roles = frozenset(roles)
        return method

    return decorator


class SecuredMixin:
    #: Roles admitted to this view. Empty means nobody: a view must opt in.
    allowed_roles: frozenset[Role] = frozenset()

    def is_accessible(self) -> bool:
        return bool(self.allowed_roles) and has_any_role(self.allowed_roles)

    def inaccessible_callback(self, name, **kwargs):
        return deny()

    def roles_for(self, name: str) -> frozenset[Role]:
        """The roles admitted to one exposed method: its own `only(...)` roles within the view's."""
        own = getattr(getattr(self, name, None), "allowed_roles", None)
        return self.allowed_roles & own if own is not None else self.allowed_roles

    def _handle_view(self, name, **kwargs):
        denied = super()._handle_view(name, **kwargs)
        if denied is not None:
            return denied
        if not has_any_role(self.roles_for(name)):
            return deny()
        return None


class SecuredView(SecuredMixin, BaseView):
    pass


class SecuredIndexView(SecuredMixin, AdminIndexView):
    pass


class SecuredModelView(SecuredMixin, ModelView):
    """Read-only browsing; a view opts in to any edit. Status columns are changed by services only."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    can_view_details = True
    can_set_page_size = False
    action_disallowed_list = ["delete"]
    page_size = 50
    # Avoid COUNT(*) over big tables on every page: "next page" paging instead of page numbers.
    simple_list_pager = True
    form_base_class = FlaskForm
    filter_converter = FilterConverter()
    # Every cell as a person reads it: dates formatted, enums and codes in words, rows by name, JSON as text.
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_detail = TYPE_FORMATTERS
    # Related rows shown in the list (a check run's provider) load in one second query, not by a JOIN:
    # with a JOIN, OFFSET paging makes the database join every row it skips (check runs page 20000 of
    # 2M: 2.2 s -> 0.05 s on SQLite).
    column_auto_select_related = False
    # The bookkeeping of concurrency and of idempotent work is for the program, not for a person reading the row.
    column_details_exclude_list = ["row_version", "idempotency_key"]

    def _prettify_name(self, name: str) -> str:
        """A heading from a column name, as a sentence is written ("Listing status", not "Listing Status")."""
        return name.replace("_", " ").strip().capitalize()

    def search_placeholder(self) -> str | None:
        """What the search box searches, in the words of the headings ("Business name, NPI", not "business_name")."""
        if not self.column_searchable_list:
            return None
        return ", ".join(self.get_column_name(name) if isinstance(name, str) else self.get_column_name(name.key)
                         for name in self.column_searchable_list)

    def get_query(self):
        shown = set(self.column_list or ())
        related = [rel for rel in inspect(self.model).relationships if rel.key in shown and not rel.uselist]
        return super().get_query().options(*(selectinload(rel.class_attribute) for rel in related))

    #: What the list counts, for its total ("1,872 providers"); each view names its own rows.
    noun: tuple[str, str] = ("row", "rows")

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        count, rows = super().get_list(page, sort_column, sort_desc, search, filters, execute, page_size)
        if execute:
            g.list_total = self.total(search, filters).words(*self.noun)
        return count, rows

    def total(self, search, filters) -> totals.Total:
        """How many rows the list holds with its search and filters, on every page (exact up to a bound,
        then an estimate that says so: services/totals.py)."""
        query, joins, count_joins = self.get_query(), {}, {}
        if self._search_supported and search:
            query, _, joins, count_joins = self._apply_search(query, None, joins, count_joins, search)
        if filters and self._filters:
            query, _, joins, count_joins = self._apply_filters(query, None, joins, count_joins, filters)
        key = self.model.__mapper__.primary_key[0]
        ids = query.with_entities(key).options().statement
        whole = ids.whereclause is None  # the whole table: its statistics (or its span of ids) can estimate it
        return totals.of(db.session, ids, table=self.model.__table__.name if whole else None,
                         key=key if whole else None)

    def _apply_pagination(self, query, page, page_size):
        """A page past the first picks its ids first, then loads those rows: the rows OFFSET skips are then
        read from the primary-key index only (check runs page 20000 of 2M on PostgreSQL: 219 -> 43 ms)."""
        paged = super()._apply_pagination(query, page, page_size)
        if not page:
            return paged
        key = self.model.__mapper__.primary_key[0]
        ids = paged.with_entities(key).options().subquery()
        return query.filter(key.in_(select(ids.c[0])))

    def handle_action(self, return_view=None):
        """A bulk action posted with no row ticked says so, instead of doing nothing without a word."""
        if request.method == "POST" and not request.form.getlist("rowid"):
            flash("Tick at least one row, then choose the action.", "warning")
            return redirect(local_redirect_target() or self.get_url(".index_view"))
        return super().handle_action(return_view)

    _WRITE_ENDPOINTS = {"create_view": "can_create", "edit_view": "can_edit", "delete_view": "can_delete",
                        "action_view": "can_delete", "ajax_update": "can_edit", "export": "can_export"}

    def roles_for(self, name: str) -> frozenset[Role]:
        """A write endpoint the view has not opted in to is closed to every role (403, not a quiet redirect)."""
        flag = self._WRITE_ENDPOINTS.get(name)
        if flag and not getattr(self, flag):
            return frozenset()
        return super().roles_for(name)



def flash_and_redirect(message: str, target: str, category: str = "success"):
    """What a page answers once its action is done: the message, then the page to land on."""
    flash(message, category)
    return redirect(target)
