"""Evidence uploads: accepted by content, size-capped, hashed, stored under a generated name.

A file is written before the transaction commits (its row needs the hash and size); if the transaction
rolls back instead, the file is deleted, so the store holds no file without its row.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from backoffice import txn
from backoffice.models import READER_ROLES, Account, Document, Role, Submission
from backoffice.services import audit, listing_requests
from backoffice.services.errors import DomainError, InvalidTransition

# Magic bytes -> (content type, extension). The name and the declared type of an upload are ignored.
SIGNATURES = (
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
)
# Other spellings of a kind's extension that a download name may keep.
OTHER_EXTENSIONS = {"image/jpeg": (".jpeg",)}
SNIFF_BYTES = 16
# What looks like an extension at the end of a name: a dot and up to five letters or digits, one a letter
# (".html", ".exe", ".gz"; not ".06" in "2024.06", not ". Jones licence").
_EXTENSION = re.compile(r"\.(?=[0-9]*[A-Za-z])[A-Za-z0-9]{1,5}$")
READ_CHUNK = 64 * 1024
_QUEUE = "uploaded_files"
UPLOAD_STATES = ("draft", "needs_info")
# Staff who may read evidence: the research team and auditors, not account administrators.
EVIDENCE_READERS = READER_ROLES


log = logging.getLogger(__name__)


class UploadRefused(DomainError):
    """The file is not accepted; nothing was stored."""


class DocumentUnavailable(DomainError):
    """No such document, or not one this account may read: one answer for both, so ids cannot be probed."""


@dataclass(frozen=True)
class Download:
    """What to send for a document: the stored file, the type its bytes show, and the name to save it as."""

    path: Path
    content_type: str
    name: str


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
                if len(head) < SNIFF_BYTES:
                    head += chunk[:SNIFF_BYTES - len(head)]
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


def download_name(name: str, content_type: str) -> str:
    """The uploaded name with the extension of the type its content has: `invoice.html` holding a PNG is
    saved as `invoice.png`, `x.pdf.exe` holding a PDF as `x.pdf`, `invoice` as `invoice.png`."""
    extension = next(ext for _, kind, ext in SIGNATURES if kind == content_type)
    stem, last = name, None
    while (found := _EXTENSION.search(stem)) and found.start() > 0:
        last = last or found.group(0).lower()
        stem = stem[:found.start()]
    if last is not None and last in OTHER_EXTENSIONS.get(content_type, ()):
        extension = last
    return stem.rstrip(" .") + extension if stem.rstrip(" .") else "document" + extension


def download(session: Session, account: Account, document_id: int, folder: str) -> Download:
    """What to send for a document the account may read; DocumentUnavailable for anything else, including a
    stored file that is missing, outside the store, or no longer of a kind we accept."""
    unavailable = DocumentUnavailable("There is no such document, or it is not yours to read.")
    document = session.get(Document, document_id)
    if document is None or not may_read(session, account, document):
        raise unavailable
    try:
        path = path_of(folder, document)
        with open(path, "rb") as stored:
            kind = sniff(stored.read(SNIFF_BYTES))
    except (DomainError, OSError):
        log.warning("document %s: stored file %r cannot be read", document.id, document.storage_key)
        raise unavailable from None
    if kind is None:
        log.warning("document %s: stored file %r is no longer a PDF, PNG or JPEG", document.id, document.storage_key)
        raise unavailable
    content_type, _ = kind
    return Download(path=path, content_type=content_type, name=download_name(document.original_name, content_type))
