"""The research team is told what waits for them: by e-mail at once, in a daily digest, or not at all.

Who is told:
- a provider submits a request or answers a question: the request's assignee, or the researchers when nobody
  has it;
- a decision awaits its second sign-off: the research leads, except the one who decided;
- a critical finding opens: the assignee of the provider's open request, or the researchers when there is
  none or nobody has it.

Each person chooses per kind (`set_preferences`, on the page under the account menu). Notices never carry what
a provider may not see the other way round, and they carry nothing a provider typed beyond the organisation's
name: staff open the page the notice links to.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from backoffice import mail
from backoffice.models import (
    OPEN_FINDING_STATES,
    OPEN_STATES,
    Account,
    AccountRole,
    Decision,
    DecisionStatus,
    Finding,
    FindingSeverity,
    NoticeMode,
    Provider,
    Role,
    StaffDigestItem,
    StaffNoticePreference,
    Submission,
    utcnow,
)
from backoffice.services import audit, outbox, queue


@dataclass(frozen=True)
class NoticeKind:
    title: str
    who: str


KINDS = {
    "provider_answered": NoticeKind("A provider submits a request or answers a question",
                                    "the request's assignee, or every researcher while nobody has it"),
    "signoff_waiting": NoticeKind("A decision awaits a second sign-off", "research leads"),
    "critical_finding": NoticeKind("A critical finding opens",
                                   "the assignee of the provider's open request, or every researcher"),
}
DIGEST_KIND = "staff_digest"


def _chosen(session: Session, account_ids: list[int]) -> dict[tuple[int, str], NoticeMode]:
    """The choices people made, by (account, kind), in one query; no row means an e-mail at once."""
    if not account_ids:
        return {}
    rows = session.execute(select(StaffNoticePreference.account_id, StaffNoticePreference.kind,
                                  StaffNoticePreference.mode)
                           .where(StaffNoticePreference.account_id.in_(account_ids))).all()
    return {(account_id, kind): mode for account_id, kind, mode in rows}


def preferences(session: Session, account: Account) -> dict[str, NoticeMode]:
    chosen = _chosen(session, [account.id])
    return {kind: chosen.get((account.id, kind), NoticeMode.IMMEDIATELY) for kind in KINDS}


def set_preferences(session: Session, account: Account, modes: dict[str, NoticeMode]) -> bool:
    """Keep one person's choices (audited); False when nothing changed."""
    unknown = set(modes) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown notice kinds: {sorted(unknown)}")
    before = {kind: mode.value for kind, mode in preferences(session, account).items()}
    after = {**before, **{kind: NoticeMode(mode).value for kind, mode in modes.items()}}
    if after == before:
        return False
    session.execute(delete(StaffNoticePreference).where(StaffNoticePreference.account_id == account.id))
    session.add_all(StaffNoticePreference(account_id=account.id, kind=kind, mode=NoticeMode(mode))
                    for kind, mode in after.items() if mode != NoticeMode.IMMEDIATELY.value)
    old, new = audit.changed(before, after)
    audit.record(session, account, "account.notice_preferences_changed", "account", account.id, before=old,
                 after=new)
    session.flush()
    return True


def _active_with_role(session: Session, role: Role) -> list[Account]:
    return list(session.scalars(select(Account).join(AccountRole, AccountRole.account_id == Account.id)
                                .where(AccountRole.role == role, Account.is_active.is_(True))
                                .order_by(Account.id)))


def _team_for(session: Session, assignee: Account | None) -> list[Account]:
    if assignee is not None and assignee.is_active:
        return [assignee]
    return _active_with_role(session, Role.RESEARCHER)


def tell(session: Session, kind: str, recipients: list[Account], subject: str, body: str, link: str) -> int:
    """Tell each recipient as they chose; returns how many were told at once or kept for the digest."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    told = 0
    people = {a.id: a for a in recipients}
    chosen = _chosen(session, list(people))
    for account in people.values():
        mode = chosen.get((account.id, kind), NoticeMode.IMMEDIATELY)
        if mode == NoticeMode.IMMEDIATELY:
            outbox.enqueue(session, kind=f"staff_{kind}", account=account, subject=subject, body=body, link=link)
        elif mode == NoticeMode.DAILY:
            session.add(StaffDigestItem(account_id=account.id, kind=kind, subject=subject, link=link))
        else:
            continue
        told += 1
    session.flush()
    return told


def _name(provider: Provider) -> str:
    return provider.public_name or provider.legal_name or f"provider #{provider.id}"


def request_submitted(session: Session, submission: Submission) -> int:
    return tell(session, "provider_answered", _team_for(session, submission.assignee),
                f"{_name(submission.provider)}: request #{submission.id} submitted ({submission.kind.label})",
                f"{_name(submission.provider)} sent request #{submission.id} ({submission.kind.label}) to the "
                "research team. Open the case to claim and review it.",
                f"/admin/review/case/{submission.id}")


def provider_answered(session: Session, submission: Submission) -> int:
    return tell(session, "provider_answered", _team_for(session, submission.assignee),
                f"{_name(submission.provider)} answered your question on request #{submission.id}",
                f"{_name(submission.provider)} answered the research team's question on request #{submission.id}; "
                "the request is back in review. Read the answer on the case page.",
                f"/admin/review/case/{submission.id}")


def signoff_waiting(session: Session, submission: Submission, decided_by: Account) -> int:
    leads = [lead for lead in _active_with_role(session, Role.RESEARCH_LEAD) if lead.id != decided_by.id]
    return tell(session, "signoff_waiting", leads,
                f"{_name(submission.provider)}: a decision on request #{submission.id} awaits your sign-off",
                f"{decided_by.name or decided_by.email} decided request #{submission.id} "
                f"({submission.kind.label}); it takes effect once someone else on the research team signs it off.",
                f"/admin/review/case/{submission.id}")


def critical_finding(session: Session, finding: Finding, provider: Provider) -> int:
    open_request = session.scalar(select(Submission).where(Submission.provider_id == provider.id,
                                                           Submission.state.in_(OPEN_STATES))
                                  .order_by(Submission.id.desc()).limit(1))
    return tell(session, "critical_finding", _team_for(session, open_request.assignee if open_request else None),
                f"{_name(provider)}: critical finding: {finding.title}",
                f"A re-check of {_name(provider)} found a critical problem: {finding.title}. Open the findings "
                "of the provider to acknowledge, confirm or dismiss it.",
                f"/admin/review/provider/{provider.id}")


def write_digests(session: Session, base_url: str = "", now: datetime | None = None) -> int:
    """One message per person with what was kept for the digest since the last one; returns how many. The
    items' page links are written out on the public address (PUBLIC_BASE_URL)."""
    now = now or utcnow()
    waiting = session.scalars(select(StaffDigestItem).where(StaffDigestItem.digested_at.is_(None))
                              .order_by(StaffDigestItem.account_id, StaffDigestItem.id)).all()
    by_account: dict[int, list[StaffDigestItem]] = {}
    for item in waiting:
        by_account.setdefault(item.account_id, []).append(item)
    written = 0
    for account_id, items in by_account.items():
        account = session.get(Account, account_id)
        if account is None or not account.is_active:
            for item in items:
                item.digested_at = now
            continue
        lines = [f"What happened for you since the last digest ({len(items)}):", ""]
        for item in items:
            lines.append(f"- {item.subject}")
            if item.link:
                lines.append(f"  {mail.absolute_link(item.link, base_url)}")
        lines += ["", "Change what you are told, and how, from Notifications in your account menu."]
        note = outbox.enqueue(session, kind=DIGEST_KIND, account=account,
                              subject=f"Your daily digest: {len(items)} {'item' if len(items) == 1 else 'items'}",
                              body="\n".join(lines), link="/admin/review/")
        for item in items:
            item.digested_at = now
            item.notification_id = note.id
        written += 1
    session.flush()
    return written


@dataclass(frozen=True)
class MyWork:
    answered: int
    signoffs: int
    findings: int

    @property
    def total(self) -> int:
        return self.answered + self.signoffs + self.findings


def my_work(session: Session, account: Account) -> MyWork:
    """What waits for this person: assigned requests the provider has answered (back in review, the last
    message an answer), decisions awaiting their sign-off (leads), open critical findings on providers whose
    open request they hold. Three indexed counts."""
    answered = session.scalar(select(func.count()).select_from(Submission).where(
        Submission.assignee_id == account.id, queue.answered_clause())) or 0
    signoffs = 0
    if account.has_role(Role.RESEARCH_LEAD):
        signoffs = session.scalar(select(func.count()).select_from(Decision).where(
            Decision.status == DecisionStatus.AWAITING_SIGNOFF, Decision.decided_by_id != account.id)) or 0
    held = select(Submission.provider_id).where(Submission.assignee_id == account.id,
                                                Submission.state.in_(OPEN_STATES))
    findings = session.scalar(select(func.count()).select_from(Finding).where(
        Finding.severity == FindingSeverity.CRITICAL, Finding.state.in_(OPEN_FINDING_STATES),
        Finding.provider_id.in_(held))) or 0
    return MyWork(answered, signoffs, findings)
