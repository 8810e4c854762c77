"""List filters: enums stored by value (an unknown value is ignored instead of failing the page), and conditions
of the moment the page is read."""
from __future__ import annotations

from flask_admin.contrib.sqla import filters
from flask_admin.contrib.sqla.filters import BaseSQLAFilter
from flask_admin.model.filters import convert

from backoffice.models import utcnow


class _ByValue:
    def _to_member(self, value):
        if self.enum_class is None or isinstance(value, self.enum_class):
            return value
        return self.enum_class(value)  # ValueError for an unknown value: Flask-Admin then skips the filter


class EnumEqual(_ByValue, filters.EnumEqualFilter):
    def clean(self, value):
        return self._to_member(value)


class EnumNotEqual(_ByValue, filters.EnumFilterNotEqual):
    def clean(self, value):
        return self._to_member(value)


class EnumInList(_ByValue, filters.EnumFilterInList):
    def clean(self, value):
        return [self._to_member(v) for v in filters.FilterInList.clean(self, value)]


class EnumNotInList(_ByValue, filters.EnumFilterNotInList):
    def clean(self, value):
        return [self._to_member(v) for v in filters.FilterInList.clean(self, value)]


class FilterConverter(filters.FilterConverter):
    enum = (EnumEqual, EnumNotEqual, filters.EnumFilterEmpty, EnumInList, EnumNotInList)

    @convert("enum")
    def conv_enum(self, column, name, options=None, **kwargs):
        """An enum filter offers its values in words (in review), and filters by the stored value."""
        enum_class = getattr(column.type, "enum_class", None)
        if not options and enum_class is not None:
            options = [(member.value, member.label) for member in enum_class]
        return super().conv_enum(column, name, options, **kwargs)


class HoldsNow(BaseSQLAFilter):
    """A list filter by a condition of the moment the page is read (due for re-check, an active advertiser):
    the same condition the dashboard counts, so its count and the list its link opens are the same rows."""

    def __init__(self, column, name: str, condition):
        super().__init__(column, name, options=[("yes", "yes")])
        self.condition = condition

    def apply(self, query, value, alias=None):
        return query.filter(self.condition(utcnow()))

    def operation(self) -> str:
        return "is"
