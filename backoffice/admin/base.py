"""The one secured base for every staff view: deny by default, each view names its roles."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

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

# The pager's keyset arguments: the key a page starts after (next page) or before (previous page).
KEYSET_ARGS = ("after", "before")
MAX_KEY = 2**63 - 1


@dataclass(frozen=True)
class KeysetStart:
    """Where a page in key order starts: after (or, going back, before) this key."""
    name: str
    key: int
    descending: bool
    backwards: bool


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
        # A page past the first that a pager link reached carries the key it starts after (or before):
        # in key order, the database then reads the page from the index instead of skipping every row before it.
        start = self._keyset_start(page, sort_column) if execute else None
        g.list_start = start
        count, rows = super().get_list(page, sort_column, sort_desc, search, filters, execute, page_size)
        if execute:
            if start is not None and start.backwards:
                rows = rows[::-1]
            g.list_total = self.total(search, filters).words(*self.noun)
            key = self.model.__mapper__.primary_key[0].key
            g.list_bounds = (getattr(rows[0], key), getattr(rows[-1], key)) if rows else None
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

    def _key_order(self, sort_column) -> bool | None:
        """Whether the list is in its default order and that is its one-column primary key: None if not, else
        descending or not. Only that order lets a page start after a key (a sort by another column has ties)."""
        keys = self.model.__mapper__.primary_key
        if len(keys) != 1 or sort_column is not None:
            return None
        key = getattr(self.model, keys[0].key)
        order = list(self._get_default_order())
        return bool(order[0][2]) if len(order) == 1 and order[0][0] is key else None

    def _keyset_start(self, page, sort_column) -> KeysetStart | None:
        """Where the page starts, from the pager link's `after` / `before` key; None (paging by OFFSET) for the
        first page, for a sort other than the key, or for a key that is not a whole number."""
        descending = self._key_order(sort_column)
        if not page or descending is None:
            return None
        for name, backwards in (("after", False), ("before", True)):
            value = request.args.get(name, "")
            if value.isascii() and value.isdigit() and int(value) <= MAX_KEY:
                return KeysetStart(name, int(value), descending, backwards)
        return None

    def _get_list_extra_args(self):
        args = super()._get_list_extra_args()
        for name in KEYSET_ARGS:
            args.extra_args.pop(name, None)
        g.list_args = args
        return args

    def _get_list_url(self, view_args) -> str:
        """The list's links, the pager's next and previous pages carrying the key their page starts after or
        before (when the list is in key order); every other link pages by number."""
        url = super()._get_list_url(view_args)
        current, bounds, start = g.get("list_args"), g.get("list_bounds"), g.get("list_start")
        if current is None or view_args.page is None or not self._same_list(view_args, current):
            return url
        sort_column = self._get_column_by_idx(current.sort)
        if self._key_order(sort_column[0] if sort_column else None) is None:
            return url
        cursor = None
        if bounds and view_args.page == (current.page or 0) + 1:
            cursor = ("after", bounds[1])
        elif bounds and view_args.page == (current.page or 0) - 1 and view_args.page > 0:
            cursor = ("before", bounds[0])
        elif view_args.page == current.page and start is not None:
            cursor = (start.name, start.key)
        if cursor is None:
            return url
        return f"{url}{'&' if '?' in url else '?'}{urlencode([cursor])}"

    @staticmethod
    def _same_list(one, other) -> bool:
        """The same rows in the same order (only the page differs)."""
        return (one.sort, one.sort_desc, one.search, list(one.filters or []), one.extra_args) == \
            (other.sort, other.sort_desc, other.search, list(other.filters or []), other.extra_args)

    def _apply_pagination(self, query, page, page_size):
        """A page that starts after (or before) a key reads its rows from there in key order. Any other page past
        the first picks its ids first, then loads those rows: the rows OFFSET skips are then read from the
        primary-key index only (check runs page 20000 of 2M on PostgreSQL: 219 -> 43 ms)."""
        start = g.get("list_start")
        if start is not None:
            key = self.model.__mapper__.primary_key[0]
            toward_end = start.descending != start.backwards
            query = query.filter(key < start.key if toward_end else key > start.key)
            if start.backwards:
                query = query.order_by(None).order_by(key.asc() if start.descending else key.desc())
            return query.limit(page_size or self.page_size)
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
