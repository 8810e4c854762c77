"""Service-level due dates in business days (Monday to Friday; public holidays are not modelled)."""
from __future__ import annotations

from datetime import datetime, timedelta


def add_business_days(start: datetime, days: int) -> datetime:
    """`days` working days after `start`, at the same time of day; a weekend start counts from Monday."""
    moment = start
    while moment.weekday() >= 5:
        moment = (moment + timedelta(days=1)).replace(hour=start.hour, minute=start.minute)
    added = 0
    while added < days:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            added += 1
    return moment
