"""Evidence uploads: accepted by content, size-capped, hashed, stored under a generated name.

A file is written before the transaction commits (its row needs the hash and size); if the transaction
rolls back instead, the file is deleted, so the store holds no file without its row.
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
import uuid
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from backoffice import txn
from backoffice.models import Account, Document, Role, Submission
from backoffice.services import audit, listing_requests
from backoffice.services.errors import DomainError, InvalidTransition

# Magic bytes -> (content type, extension). The name and the declared type of an upload are ignored.
SIGNATURES = (
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
)
READ_CHUNK = 64 * 1024
_QUEUE = "uploaded_files"
UPLOAD_STATES = ("draft", "needs_info")
# Staff who may read evidence: the research team and auditors, not account administrators.
EVIDENCE_READERS = frozenset({Role.RESEARCHER, Role.RESEARCH_LEAD, Role.AUDITOR})


class UploadRefused(DomainError):
    """The file is not accepted; nothing was stored."""


def sniff(head: bytes) -> tuple[str, str] | None:
    for magic, content_type, extension in SIGNATURES:
        if head.startswith(magic):
            return content_type, extension
    return None


def display_name(filename: str | None) -> str:
    """The uploaded name as a label only: no directories, no control characters, bounded length."""
    name = unicodedata.normalize("NFC", filename or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    return name[-200:] or "document"


def human_size(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{max(1, size // 1024)} KB"


def store(session: Session, actor: Account, submission: Submission, stream: BinaryIO, filename: str | None,
          folder: str, max_bytes: int) -> Document:
    """Store one upload as evidence for the submission; refuses a file that is too large or of another kind."""
    listing_requests.require_member(session, actor, submission.provider_id)
    if submission.state.value not in UPLOAD_STATES:
        raise InvalidTransition("Documents can be added to a draft, or with an answer to the research team's "
                                f"question; this request is {submission.state.label}.")
    name = display_name(filename)
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    key = uuid.uuid4().hex
    partial = root / f".{key}.part"
    digest, size, head = hashlib.sha256(), 0, b""
    try:
        with open(partial, "xb") as out:
            while chunk := stream.read(READ_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadRefused(f"{name} is larger than the {human_size(max_bytes)} limit. "
                                        "Scan it at a lower resolution or split it into parts.")
                if len(head) < 16:
                    head += chunk[:16 - len(head)]
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise UploadRefused(f"{name} is empty.")
        kind = sniff(head)
        if kind is None:
            raise UploadRefused(f"{name} is not a PDF, PNG or JPEG file. Save or scan it as one of those and "
                                "upload it again.")
        content_type, extension = kind
        storage_key = key + extension
        final = root / storage_key
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    txn.queue(session, _QUEUE, final)
    document = Document(provider_id=submission.provider_id, submission_id=submission.id, uploaded_by_id=actor.id,
                        original_name=name, content_type=content_type, size=size, sha256=digest.hexdigest(),
                        storage_key=storage_key)
    session.add(document)
    session.flush()
    audit.record(session, actor, "document.uploaded", "document", document.id,
                 after={"submission_id": submission.id, "original_name": name, "content_type": content_type,
                        "size": size, "sha256": document.sha256},
                 provider_id=submission.provider_id)
    return document


def _discard_uncommitted(session: Session, paths: list[Path], committed: bool) -> None:
    if not committed:
        for path in paths:
            path.unlink(missing_ok=True)


txn.on_root_end(_QUEUE, _discard_uncommitted)


def may_read(session: Session, account: Account, document: Document) -> bool:
    """The owning provider's members and the research team and auditors."""
    if account.has_role(*EVIDENCE_READERS):
        return True
    return account.has_role(Role.PROVIDER) and listing_requests.is_member(session, account, document.provider_id)


def path_of(folder: str, document: Document) -> Path:
    path = (Path(folder) / document.storage_key).resolve()
    if path.parent != Path(folder).resolve():
        raise DomainError("This document's stored name is not valid.")
    return path

