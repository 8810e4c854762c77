"""Links to a staff list with its filters set, by column and value rather than by Flask-Admin's numbered
filter arguments (flt0_5=...), which move whenever a view's filters change."""
from __future__ import annotations

from flask import current_app, url_for

from backoffice.admin.filters import HoldsNow


def list_url(endpoint: str, *holds: str, **columns) -> str:
    """The list at `endpoint` filtered by each column's value ('equals'; a list or tuple of values: 'in list')
    and by each named condition of the moment (a HoldsNow filter, by its name). An unknown filter is an error
    here, never a link that quietly shows everything."""
    view = next(v for v in current_app.extensions["admin"][0]._views if getattr(v, "endpoint", None) == endpoint)
    wanted = {**{name: ("is", "yes") for name in holds},
              **{column: ("in list", ",".join(map(str, value))) if isinstance(value, (list, tuple))
                 else ("equals", str(value)) for column, value in columns.items()}}
    args = {}
    for index, flt in enumerate(view._filters):
        key = flt.name if isinstance(flt, HoldsNow) else getattr(getattr(flt, "column", None), "key", None)
        if key in wanted and str(flt.operation()) == wanted[key][0]:
            args[f"flt{len(args)}_{view.get_filter_arg(index, flt)}"] = wanted.pop(key)[1]
    if wanted:
        raise LookupError(f"the {endpoint} list has no filter for {', '.join(wanted)}")
    return url_for(f"{endpoint}.index_view", **args)
