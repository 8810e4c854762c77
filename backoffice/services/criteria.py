"""The criteria catalogue: publish new versions; the current version is the highest."""
from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backoffice.jsonerrors import where_it_breaks
from backoffice.models import CriteriaCatalogue, Criterion
from backoffice.services import audit
from backoffice.services.errors import DomainError
from backoffice.vocab import LEVELS_OF_CARE

REQUIRED_KEYS = {"code", "title", "guidance", "required", "evidence"}
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


def _criterion(position: int, item: dict) -> Criterion:
    if not isinstance(item, dict):
        raise DomainError(f"criterion {position} is not an object")
    missing = REQUIRED_KEYS - item.keys()
    if missing:
        raise DomainError(f"criterion {position} lacks {', '.join(sorted(missing))}")
    code = item["code"]
    if not isinstance(code, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]{1,39}", code):
        raise DomainError(f"criterion {position}: code {code!r} must be UPPER_SNAKE_CASE")
    levels = item.get("applies_to_levels") or []
    unknown = set(levels) - LEVELS_OF_CARE.keys()
    if unknown:
        raise DomainError(f"criterion {code}: unknown levels of care {', '.join(sorted(unknown))}")
    return Criterion(
        position=position, code=code, title=str(item["title"]), guidance=str(item["guidance"]),
        required=bool(item["required"]), required_for_advertisers=bool(item.get("required_for_advertisers")),
        advertisers_only=bool(item.get("advertisers_only")), applies_to_levels=list(levels),
        evidence=str(item["evidence"]), automated_check=item.get("automated_check"),
    )


def _content(criterion: Criterion) -> tuple:
    """What a criterion says, in order: two versions that say the same are the same catalogue."""
    return (criterion.position, criterion.code, criterion.title, criterion.guidance, criterion.required,
            criterion.required_for_advertisers, criterion.advertisers_only, list(criterion.applies_to_levels or []),
            criterion.evidence, criterion.automated_check)


def publish(session: Session, actor: audit.Actor, definition: dict) -> CriteriaCatalogue:
    """Publish the next catalogue version from a definition {"notes", "criteria": [...]}; a definition whose
    criteria say exactly what the current version's say is refused (a version's notes alone change nothing)."""
    items = definition.get("criteria") if isinstance(definition, dict) else None
    if not isinstance(items, list) or not items:
        raise DomainError("a catalogue needs a non-empty 'criteria' list")
    criteria = [_criterion(position, item) for position, item in enumerate(items, start=1)]
    codes = [c.code for c in criteria]
    if len(set(codes)) != len(codes):
        raise DomainError("criterion codes must be unique within a catalogue")
    latest = current(session)
    if latest is not None and [_content(c) for c in latest.criteria] == [_content(c) for c in criteria]:
        raise DomainError(f"This is the same as v{latest.version}: nothing to publish", field="definition")
    version = (session.scalar(select(func.max(CriteriaCatalogue.version))) or 0) + 1
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


def load_definition(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DomainError(f"{path.name} is not valid JSON: {where_it_breaks(exc)}") from None
