"""Reading the published checkpoints from what was verified already: only new files are read, and any change to
a file read before, a removed file or a gap is judged by reading the whole folder again, exactly as without it."""
from __future__ import annotations

import hashlib
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backoffice import auditverify, jws
from backoffice.auditverify import CheckpointsRefused, VerifiedPrefix
from backoffice.services import audit_publish


class Signer:
    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        self.jwk = jws.public_jwk(self.private.public_key())
        self.keys = jws.read_jwks({"keys": [self.jwk]})

    def token(self, number, previous, seq, digest="a" * 64):
        payload = {"number": number, "previous": previous, "seq": seq, "hash": digest,
                   "taken_at": "2026-12-01T00:00:00Z", "occasion": "verification"}
        return (jws.sign_compact(self.private, self.jwk["kid"], payload, auditverify.CHECKPOINT_TYP)
                + "\n").encode("ascii")


def append(folder, signer, count=1):
    """Add `count` valid checkpoints after the folder's last one."""
    for _ in range(count):
        names = sorted(folder.iterdir())
        previous = hashlib.sha256(names[-1].read_bytes()).hexdigest() if names else None
        number = len(names) + 1
        (folder / auditverify.checkpoint_file_name(number)).write_bytes(signer.token(number, previous, number * 10))


def settled():
    """A prefix whose clock is far ahead, so that every file is old enough to be trusted by its status."""
    return VerifiedPrefix(clock=lambda: time.time_ns() + 3600 * 10**9)


def judged(folder, keys, known):
    """What a reading with `known` says, and what a reading of every file says: they must be the same."""
    def outcome(prefix):
        try:
            return [c.number for c in auditverify.read_checkpoints(str(folder), keys, prefix)]
        except CheckpointsRefused as error:
            return str(error)
    return outcome(known), outcome(None)


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "checkpoints"
    path.mkdir()
    return path


def test_only_files_added_since_are_read_and_verified(folder):
    signer, known = Signer(), settled()
    append(folder, signer, 3)
    first = auditverify.read_checkpoints(str(folder), signer.keys, known)
    assert ([c.number for c in first], known.last_read) == ([1, 2, 3], 3)
    assert auditverify.read_checkpoints(str(folder), signer.keys, known) == first
    assert known.last_read == 0
    append(folder, signer)
    assert [c.number for c in auditverify.read_checkpoints(str(folder), signer.keys, known)] == [1, 2, 3, 4]
    assert known.last_read == 1
    # The new file is checked against the remembered one before it, as a full reading would.
    (folder / "00000005.jws").write_bytes(signer.token(5, "b" * 64, 50))
    assert judged(folder, signer.keys, known) == (
        "checkpoint 5 (00000005.jws) names a previous checkpoint other than 00000004.jws as it is now: "
        "00000004.jws was rewritten or replaced",) * 2


def test_a_file_written_moments_before_it_was_read_is_read_again(folder):
    """Its times are kept at the file system's coarse clock: a rewrite in the same tick would not show."""
    signer, known = Signer(), VerifiedPrefix()
    append(folder, signer, 2)
    auditverify.read_checkpoints(str(folder), signer.keys, known)
    auditverify.read_checkpoints(str(folder), signer.keys, known)
    assert known.last_read == 2


@pytest.mark.parametrize("change, said", [
    ("rewritten", "checkpoint 3 (00000003.jws) names a previous checkpoint other than 00000002.jws as it is now: "
                  "00000002.jws was rewritten or replaced"),
    ("replaced", "checkpoint 2 (00000002.jws) is refused: the token is signed by key"),
    ("removed", "checkpoint 2 (00000002.jws) is missing: its file was removed or renamed"),
    ("reordered", "00000002.jws holds checkpoint 3, not 2: the files were renamed or reordered"),
    ("foreign", "notes.txt in the checkpoint folder is not a checkpoint"),
])
def test_a_change_to_a_file_verified_before_is_reported_as_a_full_reading_reports_it(folder, change, said):
    signer, known = Signer(), settled()
    append(folder, signer, 4)
    auditverify.read_checkpoints(str(folder), signer.keys, known)
    second, third = folder / "00000002.jws", folder / "00000003.jws"
    if change == "rewritten":  # in place, same signer, another head: one byte longer
        os.chmod(second, 0o644)
        second.write_bytes(signer.token(2, hashlib.sha256((folder / "00000001.jws").read_bytes()).hexdigest(), 200))
    elif change == "replaced":  # a new file put in its place, signed by someone else
        fake = folder / ".fake"
        fake.write_bytes(Signer().token(2, None, 20))
        os.replace(fake, second)
    elif change == "removed":
        second.unlink()
    elif change == "reordered":
        second.rename(folder / ".keep")
        third.rename(second)
        (folder / ".keep").rename(third)
    else:
        (folder / "notes.txt").write_text("hello")
    with_prefix, every_file = judged(folder, signer.keys, known)
    assert with_prefix == every_file and said in with_prefix
    # A refusal forgets what was verified: the next reading reads the folder whole again.
    assert known.remembered == 0


def test_the_newest_file_removed_or_another_key_set_reads_every_file_again(folder):
    signer, known = Signer(), settled()
    append(folder, signer, 3)
    auditverify.read_checkpoints(str(folder), signer.keys, known)
    (folder / "00000003.jws").unlink()
    assert judged(folder, signer.keys, known) == ([1, 2], [1, 2])
    assert known.last_read == 2
    # What one key set verified says nothing under another: the files are checked again and refused.
    stranger = Signer()
    with_prefix, every_file = judged(folder, stranger.keys, known)
    assert with_prefix == every_file and "which is not in the trusted key set" in with_prefix


def test_the_pages_remember_and_the_daily_verification_reads_every_file(app, folder):
    publication = audit_publish.Publication(folder, app.extensions["signing"])
    signer_keys = publication.signing
    previous = None
    for number in (1, 2, 3):
        data = (signer_keys.sign({"number": number, "previous": previous, "seq": number, "hash": "c" * 64,
                                  "taken_at": "2026-12-01T00:00:00Z", "occasion": "verification"},
                                 auditverify.CHECKPOINT_TYP) + "\n").encode("ascii")
        (folder / auditverify.checkpoint_file_name(number)).write_bytes(data)
        previous = hashlib.sha256(data).hexdigest()
    known = audit_publish.verified_prefix(folder)
    known._clock = lambda: time.time_ns() + 3600 * 10**9
    assert audit_publish.folder_state(publication).count == 3 and known.last_read == 3
    assert audit_publish.folder_state(publication).count == 3 and known.last_read == 0
    assert len(audit_publish.read(publication, every_file=True)) == 3 and known.last_read == 3
