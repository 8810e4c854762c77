"""Signed checkpoints of the audit chain, published where the database cannot rewrite them.

A checkpoint vouches for the chain's head (event number and hash) at an instant. Each is signed with the signing
key (backoffice/signing.py, kept outside the database), written as the next file NNNNNNNN.jws of the folder
CHECKPOINT_PUBLISH_DIR (instance/audit-checkpoints by default; a bucket mounted with overwrites refused serves
as an object store) and mailed to the auditors. Each names the SHA-256 of the file before it, so the folder
is a chain of its own; files are created under a name that must not exist yet and never replaced. Someone who
can rewrite the database can rewind the head or re-hash every event, but cannot sign: the next verification
here, and the offline verifier (auditverify.py --checkpoints), compare the chain with what was signed.
"""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

import config
from backoffice import auditverify, jws
from backoffice.auditverify import CheckpointsRefused, SignedCheckpoint, VerifiedPrefix
from backoffice.models import Account, AccountRole, AuditEvent, AuditVerification, Role, WorkKind, utcnow
from backoffice.services import audit, outbox, work
from backoffice.signing import SigningKeys

MAIL_KIND = "audit_checkpoint"
VERIFICATION = "verification"  # the occasion: a full verification of the chain verified through this head
GRANT = "verification granted"  # a provider's verification was granted; the head after it, not re-verified
# Tries at the next number when another publisher took it first (each try reads the folder again).
ATTEMPTS = 5


class PublishRefused(CheckpointsRefused):
    """The head cannot be published: the folder is broken, or the chain no longer agrees with what it signed."""


def default_directory() -> Path:
    return config.INSTANCE / "audit-checkpoints"


@dataclass(frozen=True)
class Publication:
    """Where checkpoints go, who signs them and who is mailed a copy (none named: every active auditor)."""

    directory: Path
    signing: SigningKeys
    recipients: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], signing: SigningKeys) -> "Publication":
        named = settings.get("CHECKPOINT_PUBLISH_DIR") or ""
        emails = tuple(e.strip() for e in (settings.get("AUDIT_CHECKPOINT_RECIPIENTS") or "").split(",") if e.strip())
        return cls(Path(named) if named else default_directory(), signing, emails)


def of_app(app: Any) -> Publication:
    """The publication a Flask app's settings and signing key describe."""
    return Publication.from_config(app.config, app.extensions["signing"])


# What this process has verified of each folder it read: the pages and the publishing after each grant read
# only the files added since (auditverify.VerifiedPrefix); the daily verification reads every file.
_verified: dict[str, VerifiedPrefix] = {}
_verified_lock = threading.Lock()


def _forget_all() -> None:
    """In a forked child: its parent's locks may have been held by a thread that does not exist here."""
    global _verified_lock
    _verified.clear()
    _verified_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_all)


def verified_prefix(directory: Path) -> VerifiedPrefix:
    """What this process remembers having verified of the folder."""
    with _verified_lock:
        return _verified.setdefault(str(directory), VerifiedPrefix())


def read(publication: Publication, every_file: bool = False) -> list[SignedCheckpoint]:
    """Every published checkpoint, checked (auditverify.read_checkpoints); CheckpointsRefused says what is wrong.
    Files this process verified already and that are unchanged are not read again, unless `every_file`."""
    if not publication.directory.exists():
        return []
    return auditverify.read_checkpoints(str(publication.directory), publication.signing.trusted(),
                                        verified_prefix(publication.directory), every_file)


@dataclass(frozen=True)
class FolderState:
    """The published folder as an auditor reads it: how many checkpoints, the newest, or what is wrong."""

    directory: Path
    count: int
    latest: SignedCheckpoint | None
    problem: str | None

    @property
    def latest_taken_at(self) -> datetime | None:
        return jws.parse_rfc3339(self.latest.taken_at, "taken_at") if self.latest else None


def folder_state(publication: Publication) -> FolderState:
    """Read on every auditor page that shows the chain: the files added since this process last read the folder
    are read and their signatures checked; the others only have their status compared (read)."""
    try:
        checkpoints = read(publication)
    except (OSError, CheckpointsRefused) as error:
        return FolderState(publication.directory, 0, None, str(error))
    return FolderState(publication.directory, len(checkpoints), checkpoints[-1] if checkpoints else None, None)


def publish(session: Session, publication: Publication, seq: int, head_hash: str, taken_at: datetime,
            occasion: str) -> SignedCheckpoint | None:
    """Sign the head (seq, head_hash) and add it to the folder, then mail it to the auditors through the outbox
    (in the caller's transaction) and record the publication in the trail.

    Never extends a broken folder, nor publishes a head that disagrees with what was signed (PublishRefused).
    A head behind the newest published one adds nothing (another publisher got there first): None."""
    for _ in range(ATTEMPTS):
        try:
            existing = read(publication)
        except CheckpointsRefused as error:
            raise PublishRefused(f"the published checkpoints do not hold together: {error}") from None
        previous = existing[-1] if existing else None
        if previous is not None and seq < previous.seq:
            return None
        if previous is not None and seq == previous.seq:
            if head_hash != previous.hash:
                raise PublishRefused(f"the chain gives event {seq} another hash than {previous}: it was rewritten")
            if occasion == GRANT:
                return None  # nothing was appended since; a light checkpoint would repeat the last one
        number = previous.number + 1 if previous else 1
        stamp = jws.rfc3339(taken_at)
        payload = {"number": number, "previous": previous.digest if previous else None, "seq": seq,
                   "hash": head_hash, "taken_at": stamp, "occasion": occasion}
        token = publication.signing.sign(payload, auditverify.CHECKPOINT_TYP)
        data = (token + "\n").encode("ascii")
        name = auditverify.checkpoint_file_name(number)
        if not _create(publication.directory, name, data):
            continue  # another publisher took this number: sign again after its file
        checkpoint = SignedCheckpoint(number, name, seq, head_hash, stamp, occasion,
                                      hashlib.sha256(data).hexdigest())
        audit.record(session, "system:audit-checkpoints", "audit.checkpoint_published", "audit_checkpoint_file",
                     name, after={"number": number, "seq": seq, "hash": head_hash, "occasion": occasion})
        _mail(session, publication, checkpoint, token)
        return checkpoint
    raise PublishRefused(f"other publishers kept taking the next checkpoint's number in {publication.directory}")


def _create(directory: Path, name: str, data: bytes) -> bool:
    """Write `name` in `directory` only if no such file exists; False if one does. The bytes are written to a
    hidden file first and linked into place, so a reader never sees half a checkpoint; where links are not
    supported (some object-store mounts), the file is created exclusively instead."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    temporary = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
    _write_new(temporary, data)
    try:
        os.link(temporary, final)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        try:
            _write_new(final, data)
        except FileExistsError:
            return False
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(directory)
    return True


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every file system opens a directory; the file itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def recipients(session: Session, publication: Publication) -> list[str]:
    """The auditors' addresses: the setting's, or every active auditor account's."""
    if publication.recipients:
        return list(publication.recipients)
    return list(session.scalars(select(Account.email).join(AccountRole, AccountRole.account_id == Account.id)
                                .where(AccountRole.role == Role.AUDITOR, Account.is_active.is_(True))
                                .order_by(Account.email).distinct()))


def _mail(session: Session, publication: Publication, checkpoint: SignedCheckpoint, token: str) -> None:
    subject = f"Audit checkpoint {checkpoint.number}: the trail through event {checkpoint.seq}"
    body = (f"The back-office signed checkpoint {checkpoint.number} of the audit trail ({checkpoint.occasion}, "
            f"{checkpoint.taken_at}): the chain's head is event {checkpoint.seq} with hash {checkpoint.hash}.\n\n"
            f"Keep this copy where the back-office cannot reach it. To check an export against your copies, save "
            f"the line below as {checkpoint.file} in a folder of your own, with the earlier ones, and run\n"
            f"    python auditverify.py EXPORT.jsonl --checkpoints THAT-FOLDER --jwks jwks.json\n"
            f"(jwks.json: the key set the back-office publishes at /.well-known/jwks.json).\n\n{token}\n")
    for email in recipients(session, publication):
        outbox.enqueue(session, kind=MAIL_KIND, subject=subject, body=body, email=email)


def verify_and_publish(session: Session, run_by: audit.Actor, publication: Publication,
                       batch_size: int = 20_000) -> tuple[AuditVerification, SignedCheckpoint | None, str | None]:
    """Verify the whole chain against its own checkpoints and the published signed ones, and publish a signed
    checkpoint of the head it verified through. Returns the run, what was published and, when publishing was
    refused (the folder broke while the run read the chain), why."""
    try:
        signed = read(publication, every_file=True)  # before the chain's bounds: every one read is at or below the head read next
        folder_problem = None
    except (OSError, CheckpointsRefused) as error:
        signed, folder_problem = [], f"the published checkpoints in {publication.directory} do not hold together: {error}"
    run = audit.run_verification(session, run_by, batch_size, signed=signed, refused=folder_problem)
    if not run.ok or run.checkpoint is None:
        return run, None, None
    try:
        published = publish(session, publication, run.checkpoint.head_seq, run.checkpoint.head_hash,
                            run.checkpoint.taken_at, VERIFICATION)
    except PublishRefused as error:
        return run, None, str(error)
    return run, published, None


def publication_words(published: SignedCheckpoint | None, refused: str | None) -> str:
    """What a verification published, in words."""
    if refused is not None:
        return f"No signed checkpoint was published: {refused}."
    if published is None:
        return "No signed checkpoint was published: one of a later head was published meanwhile."
    return f"Published {published}, signed, in the checkpoint folder, and mailed it to the auditors."


def grant_spec(decision_id: int) -> work.Spec:
    """The work a granted verification asks for: one light checkpoint per decision, however often asked."""
    return work.Spec(WorkKind.CHECKPOINT, "decision", decision_id, f"checkpoint:decision:{decision_id}")


def publish_head(session: Session, publication: Publication) -> SignedCheckpoint | None:
    """The light checkpoint after a grant: the head as it is now, checked only against the newest published
    checkpoint (the event it names must still carry its hash); the daily verification checks the rest."""
    head_seq, head_hash = audit.chain_head(session)
    try:
        latest = read(publication)[-1:]
    except CheckpointsRefused as error:
        raise PublishRefused(f"the published checkpoints do not hold together: {error}") from None
    if latest:
        stored = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == latest[0].seq))
        if stored != latest[0].hash:
            raise PublishRefused(f"event {latest[0].seq} is {'gone' if stored is None else 'not as'} "
                                 f"{latest[0]} signed it: the chain was cut or rewritten")
    return publish(session, publication, head_seq, head_hash, utcnow(), GRANT)
