"""The criteria catalogue: publish new versions; the current version is the highest."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice.jsonerrors import where_it_breaks
from backoffice.models import CheckKind, CriteriaCatalogue, Criterion
from backoffice.services import audit
from backoffice.services.errors import Conflict, DomainError
from backoffice.vocab import LEVELS_OF_CARE

REQUIRED_KEYS = {"code", "title", "guidance", "required", "evidence"}
CODE_PATTERN = r"[A-Z][A-Z0-9_]{1,39}"
CODE_RULE = "UPPER_SNAKE_CASE: a capital letter, then 1 to 39 capitals, digits or underscores"
# The longest freshness limit: ten years. Evidence older than a criterion's limit is assessed again.
FRESHNESS_MAX_DAYS = 3650
# The checks that can stand behind a criterion, in the words a research lead chooses them by.
AUTOMATED_CHECKS = {
    CheckKind.LICENCE_EXPIRY.value: "Licence expiry dates",
    CheckKind.ACCREDITATION_EXPIRY.value: "Accreditation expiry dates",
    CheckKind.NPI.value: "NPI Registry (NPPES) lookup",
    CheckKind.EXCLUSION.value: "Exclusion list screening",
    CheckKind.WEBSITE.value: "Website check",
}
# Where anyone reads the current catalogue, signed in or not (a rejection and its e-mail link to it).
PAGE_PATH = "/criteria"


def current(session: Session) -> CriteriaCatalogue | None:
    return session.scalar(select(CriteriaCatalogue).order_by(CriteriaCatalogue.version.desc()).limit(1))


def page_url(public_base_url: str | None) -> str:
    """The criteria page's address for an e-mail: absolute on the public address when there is one."""
    return (public_base_url or "").rstrip("/") + PAGE_PATH


def titles(session: Session, catalogue_id: int, codes: list[str]) -> dict[str, str]:
    """The titles of the criteria with these codes in one catalogue version, by code."""
    if not codes:
        return {}
    return dict(session.execute(select(Criterion.code, Criterion.title).where(
        Criterion.catalogue_id == catalogue_id, Criterion.code.in_(codes))).all())


def freshness_problem(value: object) -> str | None:
    """Why a freshness limit is not acceptable (None when it is): empty, or a whole number of days 1..3650."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return "The freshness limit must be a whole number of days, or empty for no limit."
    if not 1 <= value <= FRESHNESS_MAX_DAYS:
        return f"The freshness limit must be between 1 and {FRESHNESS_MAX_DAYS} days (ten years), or empty."
    return None


def _criterion(position: int, item: dict) -> Criterion:
    if not isinstance(item, dict):
        raise DomainError(f"criterion {position} is not an object")
    missing = REQUIRED_KEYS - item.keys()
    if missing:
        raise DomainError(f"criterion {position} lacks {', '.join(sorted(missing))}")
    code = item["code"]
    if not isinstance(code, str) or not re.fullmatch(CODE_PATTERN, code):
        raise DomainError(f"criterion {position}: code {code!r} must be UPPER_SNAKE_CASE")
    if not str(item["title"]).strip():
        raise DomainError(f"criterion {code}: the title is empty")
    levels = item.get("applies_to_levels") or []
    unknown = set(levels) - LEVELS_OF_CARE.keys()
    if unknown:
        raise DomainError(f"criterion {code}: unknown levels of care {', '.join(sorted(unknown))}")
    check = item.get("automated_check") or None
    if check is not None and check not in AUTOMATED_CHECKS:
        raise DomainError(f"criterion {code}: unknown automated check {check!r}")
    freshness = item.get("freshness_days")
    problem = freshness_problem(freshness)
    if problem:
        raise DomainError(f"criterion {code}: {problem}")
    return Criterion(
        position=position, code=code, title=str(item["title"]), guidance=str(item["guidance"]),
        required=bool(item["required"]), required_for_advertisers=bool(item.get("required_for_advertisers")),
        advertisers_only=bool(item.get("advertisers_only")), applies_to_levels=list(levels),
        evidence=str(item["evidence"]), automated_check=check, freshness_days=freshness,
    )


def _content(criterion: Criterion) -> tuple:
    """What a criterion says, in order: two versions that say the same are the same catalogue."""
    return (criterion.position, criterion.code, criterion.title, criterion.guidance, criterion.required,
            criterion.required_for_advertisers, criterion.advertisers_only, list(criterion.applies_to_levels or []),
            criterion.evidence, criterion.automated_check, criterion.freshness_days)


def draft(definition: dict) -> list[Criterion]:
    """The criteria a definition {"notes", "criteria": [...]} says, checked, in order (not added to a session)."""
    items = definition.get("criteria") if isinstance(definition, dict) else None
    if not isinstance(items, list) or not items:
        raise DomainError("a catalogue needs a non-empty 'criteria' list")
    criteria = [_criterion(position, item) for position, item in enumerate(items, start=1)]
    codes = [c.code for c in criteria]
    if len(set(codes)) != len(codes):
        raise DomainError("criterion codes must be unique within a catalogue")
    return criteria


def definition_of(catalogue: CriteriaCatalogue) -> dict:
    """A published version as a definition `publish` takes (the JSON file the CLI reads)."""
    return {"notes": catalogue.notes, "criteria": [
        {"code": c.code, "title": c.title, "required": c.required,
         "required_for_advertisers": c.required_for_advertisers, "advertisers_only": c.advertisers_only,
         "applies_to_levels": list(c.applies_to_levels or []), "guidance": c.guidance, "evidence": c.evidence,
         "automated_check": c.automated_check, "freshness_days": c.freshness_days}
        for c in catalogue.criteria]}


# -- the difference between two versions, in words -------------------------------------------------


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def levels_text(levels: Sequence[str] | None) -> str:
    return ", ".join(LEVELS_OF_CARE.get(code, code) for code in levels) if levels else "every provider"


def check_text(check: str | None) -> str:
    return AUTOMATED_CHECKS.get(check, check) if check else "none"


def freshness_text(days: int | None) -> str:
    if days is None:
        return "none"
    return "1 day" if days == 1 else f"{days} days"


# Each field a criterion says, its name in words and how its value is written.
FIELDS = (
    ("title", "Title", str),
    ("guidance", "Guidance", str),
    ("evidence", "Evidence needed", str),
    ("required", "Required", _yes_no),
    ("required_for_advertisers", "Required for advertisers", _yes_no),
    ("advertisers_only", "Advertisers only", _yes_no),
    ("applies_to_levels", "Applies to", levels_text),
    ("automated_check", "Automated check", check_text),
    ("freshness_days", "Freshness limit", freshness_text),
)


@dataclass(frozen=True)
class FieldChange:
    label: str      # "Freshness limit"
    before: str     # "none"
    after: str      # "365 days"

    def __str__(self) -> str:
        return f"{self.label}: {self.before} → {self.after}"


@dataclass(frozen=True)
class CriterionDifference:
    code: str
    title: str
    kind: str                       # "added", "removed", "changed" or "moved" (moved and not changed)
    changes: tuple[FieldChange, ...] = ()
    moved: tuple[int, int] | None = None  # (position before, position after) when it moved among the others

    @property
    def summary(self) -> str:
        """One line: "NPI_ACTIVE changed: Required: no → yes; moved from 5 to 2"."""
        parts = [str(change) for change in self.changes]
        if self.moved:
            parts.append(f"moved from position {self.moved[0]} to {self.moved[1]}")
        words = {"added": "added", "removed": "removed", "changed": "changed", "moved": "moved"}[self.kind]
        return f"{self.code} {words}" + (f": {'; '.join(parts)}" if parts and self.kind != "added" else "")


def _value(criterion: Criterion, name: str):
    value = getattr(criterion, name)
    if name == "applies_to_levels":
        return list(value or [])
    if name in ("required", "required_for_advertisers", "advertisers_only"):
        return bool(value)
    return value


def _kept_in_order(sequence: list[int]) -> set[int]:
    """The longest increasing run (not necessarily adjacent) of these positions: the criteria that kept their
    order; the others are the ones that moved."""
    tails: list[int] = []          # tails[k]: index in sequence of the smallest tail of a run of length k+1
    previous = [-1] * len(sequence)
    for i, value in enumerate(sequence):
        low, high = 0, len(tails)
        while low < high:
            middle = (low + high) // 2
            if sequence[tails[middle]] < value:
                low = middle + 1
            else:
                high = middle
        previous[i] = tails[low - 1] if low else -1
        if low == len(tails):
            tails.append(i)
        else:
            tails[low] = i
    kept: set[int] = set()
    i = tails[-1] if tails else -1
    while i != -1:
        kept.add(sequence[i])
        i = previous[i]
    return kept


def difference(before: Sequence[Criterion], after: Sequence[Criterion]) -> list[CriterionDifference]:
    """How `after` differs from `before`, criterion by criterion, in the order of `after` with the removed ones
    last: added, removed, moved (among the criteria both keep: adding one above another is not a move) and, for
    a changed criterion, each field before and after in words. Empty when they say the same."""
    old = {c.code: (position, c) for position, c in enumerate(before, start=1)}
    new_codes = {c.code for c in after}
    common = [c.code for c in after if c.code in old]
    kept = _kept_in_order([old[code][0] for code in common])
    differences = []
    for position, criterion in enumerate(after, start=1):
        if criterion.code not in old:
            differences.append(CriterionDifference(criterion.code, criterion.title, "added"))
            continue
        was_position, was = old[criterion.code]
        changes = tuple(FieldChange(label, write(_value(was, name)), write(_value(criterion, name)))
                        for name, label, write in FIELDS if _value(was, name) != _value(criterion, name))
        moved = None if was_position in kept else (was_position, position)
        if changes or moved:
            differences.append(CriterionDifference(criterion.code, criterion.title,
                                                   "changed" if changes else "moved", changes, moved))
    differences += [CriterionDifference(c.code, c.title, "removed") for c in before if c.code not in new_codes]
    return differences


def publish(session: Session, actor: audit.Actor, definition: dict, based_on: int | None = None) -> CriteriaCatalogue:
    """Publish the next catalogue version from a definition {"notes", "criteria": [...]}; a definition whose
    criteria say exactly what the current version's say is refused (a version's notes alone change nothing).
    `based_on`: the version a draft was edited from (0: none was in force); another version published since
    is refused, so nobody's change is undone unseen."""
    criteria = draft(definition)
    latest = current(session)
    in_force = latest.version if latest else 0
    if based_on is not None and based_on != in_force:
        raise Conflict(f"v{in_force} was published while this draft was edited from "
                       f"{f'v{based_on}' if based_on else 'an empty catalogue'}: open the editor again to "
                       f"start from v{in_force}.")
    if latest is not None and [_content(c) for c in latest.criteria] == [_content(c) for c in criteria]:
        raise DomainError(f"This is the same as v{latest.version}: nothing to publish", field="definition")
    version = (session.scalar(select(func.max(CriteriaCatalogue.version))) or 0) + 1
    codes = [c.code for c in criteria]
    catalogue = CriteriaCatalogue(
        version=version, published_by=audit.actor_label(actor), notes=definition.get("notes"), criteria=criteria,
    )
    session.add(catalogue)
    session.flush()
    audit.record(
        session, actor, "criteria.published", "criteria_catalogue", catalogue.id,
        after={"version": version, "codes": codes},
    )
    return catalogue


def previous(session: Session, catalogue: CriteriaCatalogue) -> CriteriaCatalogue | None:
    """The version published before this one (None for the first)."""
    return session.scalar(select(CriteriaCatalogue).where(CriteriaCatalogue.version < catalogue.version)
                          .order_by(CriteriaCatalogue.version.desc()).limit(1))


def load_definition(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DomainError(f"{path.name} is not valid JSON: {where_it_breaks(exc)}") from None
