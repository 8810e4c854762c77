"""External sources and how fresh they are; which source last confirmed each listed field of a provider.

A check is only as good as its source. A screening against an exclusion list older than its expected freshness,
or an NPI check while NPPES has not answered for longer than its freshness, is recorded as "source stale": an
error run, so never a pass and never the reason to close a finding. The warning itself is about the source, not
a provider (findings are per provider): the source's row carries it (`stale_since`, audited), the dashboard
names it with its last date and its expected freshness, and a fresh import or answer clears it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Mapping, Sequence, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backoffice import zones
from backoffice.checks.result import CheckResult
from backoffice.models import (
    CheckKind,
    CheckOutcome,
    CheckRun,
    DataSource,
    ExclusionSource,
    FieldConfirmation,
    Provider,
    utcnow,
)
from backoffice.services import audit

LEIE = "oig_leie"
NPPES = "nppes"
LABELS = {LEIE: "OIG LEIE", "ny_omig": "NY OMIG exclusion list", "pa_medicheck": "PA Medicheck list",
          NPPES: "NPPES NPI Registry"}
# A state list screens the providers that operate in its state; the LEIE screens everyone.
LIST_STATES = {"ny_omig": "NY", "pa_medicheck": "PA"}
# An NPPES answer is noted at most this often: otherwise every NPI check would write the same row.
ANSWER_GRANULARITY = timedelta(hours=1)
WEBSITE_SOURCE = "the provider's website"
EXPIRY_SOURCE = "the recorded expiry date"
# The listed fields whose confirmation is published, in the order pages show them.
FIELDS = ("website", "npi", "address", "licence", "accreditation")
FIELD_LABELS = {"website": "Website", "npi": "NPI", "address": "Address", "licence": "Licence",
                "accreditation": "Accreditation"}


def label(name: str) -> str:
    return LABELS.get(name, name)


def how_refreshed(name: str) -> str:
    return "answered" if name == NPPES else "imported"


@dataclass(frozen=True)
class Freshness:
    """How many days old each kind of source may be (settings LEIE_, STATE_LIST_ and NPPES_FRESHNESS_DAYS)."""

    leie_days: int = 31
    state_list_days: int = 31
    nppes_days: int = 7

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Freshness":
        return cls(config["LEIE_FRESHNESS_DAYS"], config["STATE_LIST_FRESHNESS_DAYS"], config["NPPES_FRESHNESS_DAYS"])

    def days(self, name: str) -> int:
        return self.nppes_days if name == NPPES else self.leie_days if name == LEIE else self.state_list_days


# The settings' defaults, for callers that record a run outside a task (the task passes the settings).
DEFAULT_FRESHNESS = Freshness()


def expected_words(days: int) -> str:
    """'monthly (at most 31 days old)': the expected freshness as a person says it."""
    word = {1: "daily", 7: "weekly"}.get(days) or ("monthly" if 28 <= days <= 31 else f"every {days} days")
    return f"{word} (at most {days} day{'s' if days != 1 else ''} old)"


@dataclass(frozen=True)
class Standing:
    """One source now: its last date, how fresh it must be, and whether it is stale."""

    name: str
    last_refreshed_at: datetime | None
    freshness_days: int
    stale: bool
    stale_since: datetime | None

    @property
    def label(self) -> str:
        return label(self.name)

    @property
    def expected(self) -> str:
        return expected_words(self.freshness_days)

    @property
    def how(self) -> str:
        return how_refreshed(self.name)

    @property
    def last_words(self) -> str:
        """'last imported 1 Oct 2026' or 'never answered'."""
        how = how_refreshed(self.name)
        if self.last_refreshed_at is None:
            return f"never {how}"
        return f"last {how} {zones.day_text(self.last_refreshed_at.date())}"

    def as_evidence(self) -> dict:
        return {"source": self.name, "label": self.label, "as_of": self.last_refreshed_at,
                "how": how_refreshed(self.name), "freshness_days": self.freshness_days, "stale": self.stale}


def _standing(name: str, last: datetime | None, stale_since: datetime | None, freshness: Freshness,
              now: datetime) -> Standing:
    days = freshness.days(name)
    return Standing(name, last, days, last is None or now - last > timedelta(days=days), stale_since)


def _known(session: Session, freshness: Freshness, now: datetime) -> dict[str, Standing]:
    """Every source known here, by name: a list's last import is read from its imported files (so lists
    imported before sources were tracked count too), NPPES's last answer from its row."""
    imported = dict(session.execute(select(ExclusionSource.list_name, func.max(ExclusionSource.imported_at))
                                    .group_by(ExclusionSource.list_name)).all())
    rows = {row.name: row for row in session.scalars(select(DataSource))}
    found = {}
    for name in sorted(set(imported) | set(rows)):
        row = rows.get(name)
        dates = [d for d in (imported.get(name), row.last_refreshed_at if row else None) if d is not None]
        found[name] = _standing(name, max(dates) if dates else None, row.stale_since if row else None, freshness, now)
    return found


def standings(session: Session, freshness: Freshness, now: datetime) -> list[Standing]:
    """Every source known here (imported or answered once, or found stale by a check), by name."""
    return list(_known(session, freshness, now).values())


def stale(session: Session, freshness: Freshness, now: datetime) -> list[Standing]:
    """The sources older than their expected freshness now (the dashboard's warning)."""
    return [s for s in standings(session, freshness, now) if s.stale]


def _row(session: Session, actor: audit.Actor, name: str) -> DataSource:
    """The source's row, created (and audited) the first time it is imported, answered or found stale."""
    row = session.scalar(select(DataSource).where(DataSource.name == name))
    if row is not None:
        return row
    try:
        with session.begin_nested():  # another check may create it at the same moment
            row = DataSource(name=name)
            session.add(row)
    except IntegrityError:
        return session.scalars(select(DataSource).where(DataSource.name == name)).one()
    audit.record(session, actor, "source.registered", "data_source", row.id, after={"name": name})
    return row


def refreshed(session: Session, actor: audit.Actor, name: str, at: datetime) -> DataSource:
    """A list was imported (or NPPES answered after being stale): the source is fresh as of `at`, its warning
    cleared."""
    row = _row(session, actor, name)
    before = {"last_refreshed_at": row.last_refreshed_at, "stale_since": row.stale_since}
    row.last_refreshed_at = max(at, row.last_refreshed_at or at)
    row.stale_since = None
    old, new = audit.changed(before, {"last_refreshed_at": row.last_refreshed_at, "stale_since": None})
    if new:
        audit.record(session, actor, "source.refreshed", "data_source", row.id, before=old, after=new,
                     reason=f"{label(name)} {how_refreshed(name)}")
    session.flush()
    return row


def answered(session: Session, actor: audit.Actor, name: str, at: datetime) -> None:
    """NPPES answered a check. Noted at most hourly with one conditional UPDATE (no row lock held for the rest of
    the check's transaction when nothing changes); a stale source made fresh again is audited."""
    row = session.execute(select(DataSource.id, DataSource.stale_since, DataSource.last_refreshed_at)
                          .where(DataSource.name == name)).first()
    if row is None or row.stale_since is not None or row.last_refreshed_at is None:
        refreshed(session, actor, name, at)
        return
    session.execute(update(DataSource).where(DataSource.id == row.id, DataSource.stale_since.is_(None),
                                             DataSource.last_refreshed_at < at - ANSWER_GRANULARITY)
                    .values(last_refreshed_at=at), execution_options={"synchronize_session": False})


def flag_stale(session: Session, actor: audit.Actor, name: str, now: datetime, freshness: Freshness) -> None:
    """A check met the source stale: the source carries the warning from now on (audited once)."""
    row = _row(session, actor, name)
    if row.stale_since is not None:
        return
    row.stale_since = now
    standing = _known(session, freshness, now)[name]
    audit.record(session, actor, "source.stale", "data_source", row.id, before={"stale_since": None},
                 after={"stale_since": now},
                 reason=f"{standing.label} {standing.last_words}; expected {standing.expected}")
    session.flush()


# -- what a run may conclude ------------------------------------------------------------------------


class _Reads:
    """What judging runs reads of the sources, read once for a batch of runs and only if a run needs it."""

    def __init__(self, session: Session, freshness: Freshness, now: datetime) -> None:
        self.session, self.freshness, self.now = session, freshness, now
        self._known: dict[str, Standing] | None = None
        self._nppes: tuple[DataSource | None] | None = None

    def known(self) -> dict[str, Standing]:
        if self._known is None:
            self._known = _known(self.session, self.freshness, self.now)
        return self._known

    def nppes(self) -> DataSource | None:
        if self._nppes is None:
            self._nppes = (self.session.scalar(select(DataSource).where(DataSource.name == NPPES)),)
        return self._nppes[0]


def _used(reads: _Reads, check: CheckKind, result: CheckResult) -> list[Standing]:
    """The sources a run rests on and their standing; empty for a check that asks no external source."""
    freshness, now = reads.freshness, reads.now
    if check == CheckKind.EXCLUSION:
        if result.inconclusive:
            return []  # nothing was screened (no list imported yet): that error already says so
        states = set(result.evidence.get("states") or ())
        return [standing for name, standing in reads.known().items()
                if name != NPPES and (LIST_STATES.get(name) is None or LIST_STATES[name] in states)]
    if check == CheckKind.NPI:
        if nppes_answered(result):
            return [Standing(NPPES, now, freshness.nppes_days, False, None)]
        row = reads.nppes()
        # Never answered: no NPI check has rested on it yet, so there is no date to be stale against.
        if result.outcome == CheckOutcome.ERROR and row is not None and row.last_refreshed_at is not None:
            return [_standing(NPPES, row.last_refreshed_at, row.stale_since, freshness, now)]
    return []


def nppes_answered(result: CheckResult) -> bool:
    """The registry answered this NPI check (a verdict on the NPI, not 'no NPI on file' nor an error)."""
    return result.outcome != CheckOutcome.ERROR and bool(result.evidence.get("npi"))


def judge(session: Session, check: CheckKind, result: CheckResult, now: datetime, freshness: Freshness) -> CheckResult:
    """What a run may be recorded as, given the age of its sources (`judge_many` of one)."""
    return judge_many(session, [(check, result)], now, freshness)[0]


def judge_many(session: Session, checked: Sequence[tuple[CheckKind, CheckResult]], now: datetime,
               freshness: Freshness) -> list[CheckResult]:
    """What each run may be recorded as, given the age of its sources: a clean result against a stale source is
    'source stale' (an inconclusive error run); matches found on a stale list still stand. The run's evidence
    names each source and its date. The sources are read once for all the runs."""
    reads = _Reads(session, freshness, now)
    return [_judged(check, result, _used(reads, check, result)) for check, result in checked]


def _judged(check: CheckKind, result: CheckResult, used: list[Standing]) -> CheckResult:
    if not used:
        return result
    evidence = {**result.evidence, "sources": [s.as_evidence() for s in used]}
    stale_ones = [s for s in used if s.stale]
    if not stale_ones:
        return replace(result, evidence=evidence)
    words = "; ".join(f"{s.label} {s.last_words}, expected {s.expected}" for s in stale_ones)
    evidence["source_stale"] = [s.name for s in stale_ones]
    if result.outcome == CheckOutcome.PASS or (check == CheckKind.NPI and result.outcome == CheckOutcome.ERROR):
        before = "no clean result" if result.outcome == CheckOutcome.PASS else result.summary
        return CheckResult(CheckOutcome.ERROR, f"Source stale: {words}: {before}"[:500], evidence,
                           source_version=result.source_version, inconclusive=True)
    return replace(result, evidence=evidence, summary=f"{result.summary} (source stale: {words})"[:500])


# -- per-field freshness ---------------------------------------------------------------------------


def confirmed_fields(check: CheckKind, result: CheckResult) -> dict[str, str]:
    """The listed fields this run confirms, each with the source that confirmed it; a failed run confirms none."""
    if result.inconclusive or result.outcome in (CheckOutcome.ERROR, CheckOutcome.FAIL):
        return {}
    keys = {spec.subject_key for spec in result.findings}
    if check == CheckKind.WEBSITE:
        return {"website": WEBSITE_SOURCE} if result.evidence.get("names_provider") and not keys - {"website:no_https"} \
            else {}
    if check == CheckKind.NPI and nppes_answered(result):
        confirmed = {}
        if not keys & {"npi:not_found", "npi:inactive", "npi:not_organisation"}:
            confirmed["npi"] = label(NPPES)
        if result.evidence.get("registry_location") and "npi:address_mismatch" not in keys:
            confirmed["address"] = label(NPPES)
        return confirmed
    return {}


def confirmed_by_decision(provider: Provider, submission_id: int, today: date) -> dict[str, str]:
    """The credential fields a research decision confirms: each the provider holds on file with every one current.

    Licences and accreditations are confirmed against their primary source by the research team when it decides
    (the evidence of its assessments), not by a sweep reading the expiry dates we hold ourselves."""
    source = f"the research team's review of request #{submission_id}"
    held = {"licence": [item.expires_on for item in provider.licences],
            "accreditation": [item.expires_on for item in provider.accreditations]}
    return {name: source for name, expiries in held.items()
            if expiries and all(expires is not None and expires >= today for expires in expiries)}


def confirm(session: Session, actor: audit.Actor, provider_id: int, fields: Mapping[str, str], at: datetime,
            check_run_id: int | None = None) -> None:
    """Record that these fields were confirmed at `at` by these sources (one audited event); a later date only
    moves them forward."""
    confirm_many(session, [Confirming(actor, provider_id, fields, at, check_run_id)])


@dataclass(frozen=True)
class Confirming:
    """One run's (or decision's) confirmation of a provider's fields."""

    actor: audit.Actor
    provider_id: int
    fields: Mapping[str, str]
    at: datetime
    check_run_id: int | None = None


# Core statements on the table: a batch of runs confirms many fields, and the ORM's unit of work (an entity
# built, tracked and flushed per row) cost more than the rest of the confirmation. Nothing holds these rows as
# entities (`confirmations` reads columns), so no loaded object can go stale behind them.
_CONFIRMED = cast(Table, FieldConfirmation.__table__)
_MOVE_CONFIRMED = (_CONFIRMED.update().where(_CONFIRMED.c.id == bindparam("row_id"))
                   .values(confirmed_at=bindparam("at", type_=_CONFIRMED.c.confirmed_at.type),
                           source=bindparam("by", type_=_CONFIRMED.c.source.type),
                           check_run_id=bindparam("run_id", type_=_CONFIRMED.c.check_run_id.type)))


def confirm_many(session: Session, confirmations: Sequence[Confirming]) -> None:
    """`confirm` for several, in order, with one read of the rows they touch and one write of each kind: each
    still its own audited event, as if confirmed one after the other."""
    confirmations = [c for c in confirmations if c.fields]
    if not confirmations:
        return
    wanted = {(c.provider_id, name) for c in confirmations for name in c.fields}
    c_ = _CONFIRMED.c
    current: dict[tuple[int, str], dict[str, Any]] = {
        (row.provider_id, row.field): dict(row._mapping) for row in session.execute(
            select(c_.id, c_.provider_id, c_.field, c_.confirmed_at, c_.source)
            .where(c_.provider_id.in_(sorted({pid for pid, _ in wanted})),
                   c_.field.in_(sorted({name for _, name in wanted}))))}
    new: dict[tuple[int, str], dict[str, Any]] = {}
    moved: dict[int, dict[str, Any]] = {}
    for c in confirmations:
        before, after = {}, {}
        for name, source in c.fields.items():
            key = (c.provider_id, name)
            row = new.get(key) or current.get(key)
            if row is not None and row["confirmed_at"] >= c.at:
                continue
            if row is None:
                row = new[key] = {"provider_id": c.provider_id, "field": name}
            else:  # confirmed before: on file, or by an earlier run of this batch
                before[name] = {"confirmed_at": row["confirmed_at"], "source": row["source"]}
            row.update(confirmed_at=c.at, source=source, check_run_id=c.check_run_id)
            if key not in new:
                moved[row["id"]] = {"row_id": row["id"], "at": c.at, "by": source, "run_id": c.check_run_id}
            after[name] = {"confirmed_at": c.at, "source": source, "check_run_id": c.check_run_id}
        if after:
            audit.record(session, c.actor, "field.confirmed", "provider", c.provider_id, before=before or None,
                         after=after, provider_id=c.provider_id)
    if new:
        session.execute(insert(_CONFIRMED), list(new.values()))
    if moved:
        session.execute(_MOVE_CONFIRMED, list(moved.values()))


def recorded(session: Session, actor: audit.Actor, run: CheckRun, result: CheckResult, freshness: Freshness) -> None:
    """After a run is written: note the sources it found answering or stale, and the fields it confirmed."""
    recorded_many(session, [(actor, run, result)], freshness)


def recorded_many(session: Session, written: Sequence[tuple[audit.Actor, CheckRun, CheckResult]],
                  freshness: Freshness) -> None:
    """`recorded` for a batch of runs: a source found stale is flagged once (by the first run that found it), an
    NPPES answer noted once, and the fields confirmed with one read."""
    flagged: set[str] = set()
    answered_at: tuple[audit.Actor, datetime] | None = None
    for actor, run, result in written:
        now = run.finished_at or utcnow()
        for used in result.evidence.get("sources") or ():
            if used["stale"]:
                if used["source"] not in flagged:
                    flagged.add(used["source"])
                    flag_stale(session, actor, used["source"], now, freshness)
            elif used["source"] == NPPES and run.check == CheckKind.NPI and nppes_answered(result):
                answered_at = (actor, now) if answered_at is None or now > answered_at[1] else answered_at
    if answered_at is not None:
        answered(session, answered_at[0], NPPES, answered_at[1])
    confirm_many(session, [Confirming(actor, run.provider_id, confirmed_fields(run.check, result),
                                      run.finished_at or utcnow(), run.id) for actor, run, result in written])


@dataclass(frozen=True)
class Confirmation:
    field: str
    confirmed_at: datetime | None
    source: str | None

    @property
    def label(self) -> str:
        return FIELD_LABELS[self.field]


# Built once: the feed asks for a page's confirmations on every request.
_CONFIRMATIONS = select(_CONFIRMED.c.provider_id, _CONFIRMED.c.field, _CONFIRMED.c.confirmed_at,
                        _CONFIRMED.c.source).where(_CONFIRMED.c.provider_id.in_(bindparam("ids", expanding=True)))


def confirmations(session: Session, provider_ids: list[int]) -> dict[int, dict[str, Confirmation]]:
    """Each provider's last confirmation of every listed field (None where none was ever confirmed)."""
    found = {pid: confirmations_unknown() for pid in provider_ids}
    if provider_ids:
        for row in session.execute(_CONFIRMATIONS, {"ids": list(provider_ids)}):
            if row.field in FIELDS:
                found[row.provider_id][row.field] = Confirmation(row.field, row.confirmed_at, row.source)
    return found


def confirmations_unknown() -> dict[str, Confirmation]:
    """Every listed field, none confirmed."""
    return {f: Confirmation(f, None, None) for f in FIELDS}


def published(confirmed: Mapping[str, Confirmation]) -> dict[str, dict]:
    """The feed's and the receipt's `confirmed` block: per field, when it was last confirmed and by which source."""
    return {name: {"confirmed_at": c.confirmed_at, "source": c.source} for name, c in confirmed.items()}


def as_of(day: date | datetime | None) -> str:
    return zones.day_text(day.date() if isinstance(day, datetime) else day) if day else "never"


# -- what the pages and the receipt say of a run's sources ------------------------------------------


def of_run(run: CheckRun) -> list[dict]:
    """The sources a run rested on, each with its date and whether it was stale: a list or NPPES as the run's
    evidence names it; the provider's own website, or its recorded expiry dates, as of the run."""
    named = run.evidence.get("sources") if isinstance(run.evidence, dict) else None
    if named:
        return [{"source": s["label"], "as_of": s["as_of"], "stale": bool(s["stale"])} for s in named]
    if run.check == CheckKind.WEBSITE:
        return [{"source": WEBSITE_SOURCE, "as_of": run.started_at, "stale": False}]
    if run.check in (CheckKind.LICENCE_EXPIRY, CheckKind.ACCREDITATION_EXPIRY):
        return [{"source": EXPIRY_SOURCE, "as_of": run.started_at, "stale": False}]
    return []
