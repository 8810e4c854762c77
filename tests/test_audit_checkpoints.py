"""Signed checkpoints published outside the database: what someone who can rewrite the database cannot hide."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from backoffice import auditverify, jws
from backoffice.auditverify import compute_hash
from backoffice.models import (
    AuditEvent,
    AuditVerification,
    DecisionOutcome,
    Notification,
    Role,
    Work,
    WorkKind,
    WorkState,
)
from backoffice.services import audit, audit_publish, review
from tests.audit_helpers import append, tamper
from tests.conftest import login
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def auditor(client, make_account):
    account = make_account(Role.AUDITOR)
    login(client, account)
    return account


@pytest.fixture
def publication(app):
    return audit_publish.of_app(app)


@pytest.fixture
def jwks_file(app, tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(app.extensions["signing"].jwks()))
    return path


def export(client, **form) -> str:
    response = client.post("/admin/audit/export", data={"format": "jsonl", **form})
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def offline(tmp_path, content: str, *options: str) -> subprocess.CompletedProcess:
    """The standalone script run as a file, as an auditor runs it (jws.py found beside it)."""
    path = tmp_path / "export.jsonl"
    path.write_text(content)
    return subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(path), *options],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""})


def held(publication, jwks_file) -> tuple[str, ...]:
    return ("--checkpoints", str(publication.directory), "--jwks", str(jwks_file))


def verify_and_publish(session, publication):
    run, published, refused = audit_publish.verify_and_publish(session, "system:test", publication)
    session.commit()
    assert run.ok and refused is None and published is not None, (run.problem, refused)
    return published


def light(session, publication):
    """The light checkpoint a grant asks for: the head as it is now, signed."""
    published = audit_publish.publish_head(session, publication)
    session.commit()
    return published


def two_checkpoints(session, publication):
    """Events, a full verification (checkpoint 1, also a checkpoint row in the database), more events, and the
    light checkpoint of a grant (checkpoint 2, outside the database only)."""
    append(session, 6)
    first = verify_and_publish(session, publication)
    append(session, 5)
    second = light(session, publication)
    assert (first.number, second.number) == (1, 2) and second.seq > first.seq
    return first, second


# -- what the database's writer can do, and what catches it -------------------------------------------------


def test_cutting_the_events_after_the_last_checkpoint_and_rewinding_the_head_is_caught(
        client, session, auditor, publication, jwks_file, tmp_path):
    first, second = two_checkpoints(session, publication)
    # The events after the database's own checkpoint are cut and the head rewound to it, guards dropped.
    tamper(session, f"DELETE FROM audit_event WHERE seq > {first.seq}",
           f"UPDATE audit_chain_lock SET head_seq = {first.seq}, head_hash = '{first.hash}'")
    assert audit.verify_chain(session).ok  # the database alone cannot tell
    content = export(client)
    assert offline(tmp_path, content).returncode == 0  # nor can the export without the published checkpoints
    caught = offline(tmp_path, content, *held(publication, jwks_file))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert (f"before signed checkpoint 2 (00000002.jws, event {second.seq}) taken {second.taken_at}: events after "
            f"it were cut (the head rewound)") in caught.stdout
    # The product's own verification reads the folder too, and says so in words.
    run, published, _ = audit_publish.verify_and_publish(session, "system:test", publication)
    session.commit()
    assert not run.ok and published is None
    assert "before signed checkpoint 2 (00000002.jws" in run.problem
    page = client.get("/admin/").get_data(as_text=True)
    assert "BROKEN at event" in page and "signed checkpoint 2 (00000002.jws" in page


def test_rewriting_and_rehashing_the_whole_chain_is_caught(client, session, auditor, publication, jwks_file, tmp_path):
    first, second = two_checkpoints(session, publication)
    # Every event re-hashed from the first, one reason changed, the head and the database's checkpoints too.
    rows = session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars().all()
    statements, prev = [], auditverify.GENESIS_HASH
    for event in rows:
        fields = audit.event_fields(event)
        if event.seq == 2:
            fields["reason"] = "nothing happened"
        digest = compute_hash(prev, fields)
        reason = "'nothing happened'" if event.seq == 2 else "reason"
        statements.append(f"UPDATE audit_event SET reason = {reason}, prev_hash = '{prev}', hash = '{digest}' "
                          f"WHERE seq = {event.seq}")
        prev = digest
    session.rollback()
    head = rows[-1].seq
    tamper(session, *statements, f"UPDATE audit_chain_lock SET head_hash = '{prev}'",
           "UPDATE audit_checkpoint SET head_hash = (SELECT hash FROM audit_event WHERE seq = head_seq)")
    assert audit.verify_chain(session).ok
    content = export(client)
    assert offline(tmp_path, content).returncode == 0
    caught = offline(tmp_path, content, *held(publication, jwks_file))
    assert caught.returncode == 1
    assert (f"BROKEN at event {first.seq}: the event differs from signed checkpoint 1 (00000001.jws, event "
            f"{first.seq}): the chain was rewritten after it was signed") in caught.stdout
    assert head >= second.seq


def test_relabelling_a_full_export_as_one_providers_history_is_caught(client, session, auditor, publication,
                                                                      jwks_file, tmp_path):
    two_checkpoints(session, publication)  # every event of the helper names provider 1, the trail's own none
    content = export(client)
    lines = content.splitlines()
    header = json.loads(lines[0])
    header.update(contiguous=False, through_head=False, filters={**header["filters"], "provider_id": 1})
    relabelled = "\n".join([json.dumps(header), *lines[1:]]) + "\n"
    caught = offline(tmp_path, relabelled, *held(publication, jwks_file))
    assert caught.returncode == 1
    assert ("the event is provider None's, but the export says it is provider 1's history: it was relabelled"
            in caught.stdout or "this is one provider's history: it cannot show that no event is missing up to "
            "signed checkpoint 2 (00000002.jws" in caught.stdout), caught.stdout
    # Only provider 1's events, so each line is that provider's: the signed checkpoints still refuse it.
    own = [line for line in lines[1:] if '"record":"event"' not in line or ',"provider_id":1,' in line]
    caught = offline(tmp_path, "\n".join([json.dumps(header), *own]) + "\n", *held(publication, jwks_file))
    assert caught.returncode == 1
    assert ("this is one provider's history: it cannot show that no event is missing up to signed checkpoint 2 "
            "(00000002.jws") in caught.stdout


def test_an_honest_export_passes_with_the_checkpoints(app, client, session, auditor, publication, jwks_file,
                                                      tmp_path):
    first, second = two_checkpoints(session, publication)
    content = export(client)
    ok = offline(tmp_path, content, *held(publication, jwks_file))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ("It agrees with all 2 signed checkpoints and reaches the newest, signed checkpoint 2 (00000002.jws, "
            f"event {second.seq}).") in ok.stdout
    # The command line runs the same check.
    path = tmp_path / "export.jsonl"
    result = app.test_cli_runner().invoke(args=["audit", "verify-export", str(path), *held(publication, jwks_file)])
    assert result.exit_code == 0 and "agrees with all 2 signed checkpoints" in result.output
    # An export that stops before the newest signed checkpoint does not reach it.
    short = "\n".join(line for line in content.splitlines()
                      if '"record":"event"' not in line or json.loads(line)["seq"] <= first.seq) + "\n"
    short = short.replace('"through_head":true', '"through_head":false', 1).replace(
        '"to_seq":null', f'"to_seq":{first.seq}', 1)
    refused = offline(tmp_path, short, *held(publication, jwks_file))
    assert refused.returncode == 1 and f"the events end at event {first.seq}, before signed checkpoint 2" in refused.stdout


def test_wrong_options_are_refused_in_words(app, publication, jwks_file, tmp_path, session):
    append(session, 2)
    path = tmp_path / "export.jsonl"
    path.write_text("{}\n")
    alone = subprocess.run([sys.executable, str(ROOT / "backoffice" / "auditverify.py"), str(path), "--checkpoints",
                            str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert alone.returncode == 2 and "--checkpoints DIR and --jwks FILE go together" in alone.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = offline(tmp_path, "{}\n", "--checkpoints", str(empty), "--jwks", str(jwks_file))
    assert nothing.returncode == 1 and "holds no signed checkpoint" in nothing.stdout
    (tmp_path / "bad.json").write_text('{"keys": []}')
    bad = offline(tmp_path, "{}\n", "--checkpoints", str(empty), "--jwks", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "the key set holds no Ed25519 key" in bad.stderr
    result = app.test_cli_runner().invoke(args=["audit", "verify-export", str(path), "--checkpoints", str(empty)])
    assert result.exit_code == 2 and "--checkpoints and --jwks go together" in result.output


# -- the folder itself ------------------------------------------------------------------------------------------


def test_the_folder_is_written_append_only_and_a_rewritten_file_is_detected(client, session, auditor, publication,
                                                                            jwks_file, tmp_path):
    from tasks.sweeps import audit_verification

    first, _ = two_checkpoints(session, publication)
    folder = publication.directory
    original = (folder / first.file).read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["00000001.jws", "00000002.jws"]
    assert (folder / first.file).stat().st_mode & 0o222 == 0  # read-only once written
    # The product never writes over a published name: the writer refuses, and the bytes stay as they were.
    assert audit_publish._create(folder, first.file, b"other bytes") is False
    assert (folder / first.file).read_bytes() == original
    assert audit_verification() is True
    assert sorted(p.name for p in folder.iterdir())[-1] == "00000003.jws"
    # Someone rewrites checkpoint 1, even with a valid signature (say the key leaked): checkpoint 2 names its hash.
    payload = jws.verify_compact(original.decode(), publication.signing.trusted()).payload
    (folder / first.file).chmod(0o644)
    (folder / first.file).write_text(publication.signing.sign({**payload, "seq": 1, "hash": "a" * 64},
                                                              auditverify.CHECKPOINT_TYP) + "\n")
    why = ("checkpoint 2 (00000002.jws) names a previous checkpoint other than 00000001.jws as it is now: "
           "00000001.jws was rewritten or replaced")
    assert audit_verification() is False
    run = session.scalar(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1))
    assert why in run.problem
    page = client.get("/admin/").get_data(as_text=True)
    assert f"The signed checkpoints published in {folder} do not hold together: {why}" in page
    assert ">BROKEN</span> the published checkpoints in" in page and "at event None" not in page
    assert why in offline(tmp_path, export(client), *held(publication, jwks_file)).stdout
    # Nothing is published onto a broken folder.
    with pytest.raises(audit_publish.PublishRefused, match="rewritten or replaced"):
        audit_publish.publish_head(session, publication)
    assert len(list(folder.iterdir())) == 3


def test_a_removed_or_reordered_file_is_detected(session, publication, jwks_file):
    two_checkpoints(session, publication)
    append(session, 2)
    light(session, publication)
    folder = publication.directory
    keys = publication.signing.trusted()
    assert [c.number for c in audit_publish.read(publication)] == [1, 2, 3]
    (folder / "00000002.jws").rename(folder / "keep")
    (folder / "keep").rename(folder / ".keep")
    with pytest.raises(auditverify.CheckpointsRefused,
                       match=r"checkpoint 2 \(00000002.jws\) is missing: its file was removed or renamed"):
        auditverify.read_checkpoints(str(folder), keys)
    (folder / "00000003.jws").rename(folder / "00000002.jws")
    (folder / ".keep").rename(folder / "00000003.jws")
    with pytest.raises(auditverify.CheckpointsRefused,
                       match=r"00000002.jws holds checkpoint 3, not 2: the files were renamed or reordered"):
        auditverify.read_checkpoints(str(folder), keys)
    (folder / "00000002.jws").rename(folder / "note.txt")
    with pytest.raises(auditverify.CheckpointsRefused, match="note.txt in the checkpoint folder is not a checkpoint"):
        auditverify.read_checkpoints(str(folder), keys)


def test_a_checkpoint_signed_by_an_unknown_key_is_refused(session, publication, jwks_file, tmp_path):
    _, second = two_checkpoints(session, publication)
    stranger = Ed25519PrivateKey.generate()
    kid = jws.public_jwk(stranger.public_key())["kid"]
    payload = {"number": 3, "previous": second.digest, "seq": second.seq + 5, "hash": "b" * 64,
               "taken_at": "2026-12-02T01:00:00Z", "occasion": "verification"}
    (publication.directory / "00000003.jws").write_text(
        jws.sign_compact(stranger, kid, payload, auditverify.CHECKPOINT_TYP) + "\n")
    result = offline(tmp_path, "{}\n", *held(publication, jwks_file))
    assert result.returncode == 1
    assert (f"checkpoint 3 (00000003.jws) is refused: the token is signed by key '{kid}', which is not in the "
            f"trusted key set") in result.stdout
    # A key of the set used outside the period it signed in is refused too.
    current = publication.signing.jwks()["keys"][0]
    dated = tmp_path / "dated.json"
    dated.write_text(json.dumps({"keys": [{**current, "valid_from": "2030-01-01T00:00:00Z"}]}))
    (publication.directory / "00000003.jws").unlink()
    refused = offline(tmp_path, "{}\n", "--checkpoints", str(publication.directory), "--jwks", str(dated))
    assert refused.returncode == 1 and "which did not sign at" in refused.stdout


# -- the auditors' copies and what they read -----------------------------------------------------------------


def test_each_checkpoint_is_mailed_to_the_auditors_through_the_outbox(app, session, make_account, make_app):
    first_auditor = make_account(Role.AUDITOR, email="ada@example.org")
    make_account(Role.AUDITOR, email="grace@example.org")
    make_account(Role.RESEARCHER, email="res@example.org")
    append(session, 3)
    published = verify_and_publish(session, audit_publish.of_app(app))
    notes = session.scalars(select(Notification).where(Notification.kind == "audit_checkpoint")
                            .order_by(Notification.recipient_email)).all()
    assert [n.recipient_email for n in notes] == ["ada@example.org", "grace@example.org"]
    token = (audit_publish.of_app(app).directory / published.file).read_text().strip()
    assert notes[0].subject == f"Audit checkpoint 1: the trail through event {published.seq}"
    assert token in notes[0].body and f"save the line below as {published.file}" in notes[0].body
    assert f"the chain's head is event {published.seq} with hash {published.hash}" in notes[0].body
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "audit.checkpoint_published"))
    assert event.entity_id == "00000001.jws" and event.after["seq"] == published.seq
    # A named list replaces the auditor accounts.
    named = audit_publish.Publication.from_config({"AUDIT_CHECKPOINT_RECIPIENTS": " audit@firm.example , x@y.example"},
                                                  app.extensions["signing"])
    assert audit_publish.recipients(session, named) == ["audit@firm.example", "x@y.example"]
    first_auditor.is_active = False
    assert audit_publish.recipients(session, audit_publish.of_app(app)) == ["grace@example.org"]


def test_the_auditor_dashboard_shows_the_latest_published_checkpoint(client, session, auditor, publication):
    page = client.get("/admin/").get_data(as_text=True)
    assert "No signed checkpoint has been published yet: the next full verification publishes the first." in page
    _, second = two_checkpoints(session, publication)
    page = client.get("/admin/").get_data(as_text=True)
    assert (f"Latest published checkpoint: number 2 (00000002.jws), event {second.seq} ({second.hash[:16]}…)"
            in page)
    assert "after a provider&#39;s verification was granted; 2 signed checkpoints in" in page
    response = client.post("/admin/audit/verify", follow_redirects=True)
    text = response.get_data(as_text=True)
    assert "Published signed checkpoint 3 (00000003.jws" in text and "mailed it to the auditors" in text
    head = session.scalar(select(func.max(AuditEvent.seq)))
    assert f"event {head - 1}" in text or f"event {head}" in text


def test_a_granted_verification_asks_for_a_light_signed_checkpoint_after_it_commits(session, publication,
                                                                                     make_account, make_provider):
    from tasks.sweeps import publish_checkpoint

    publish_catalogue(session)
    provider = make_provider()
    member = provider_member(session, make_account, provider)
    researcher = make_account(Role.RESEARCHER)
    submission = in_review(session, researcher, submitted(session, member, provider))
    assess_all(session, researcher, submission)
    decision = review.decide(session, researcher, submission, DecisionOutcome.APPROVED, [], "", "all clean", POLICY,
                             None)
    assert not publication.directory.exists() or not list(publication.directory.iterdir())  # not in the request
    session.commit()
    row = session.scalar(select(Work).where(Work.kind == WorkKind.CHECKPOINT))
    assert (row.target_type, row.target_id, row.idempotency_key) == ("decision", str(decision.id),
                                                                     f"checkpoint:decision:{decision.id}")
    granted = session.scalar(select(AuditEvent.seq).where(AuditEvent.action == "verification.granted"))
    assert publish_checkpoint(row.id) is True
    assert publish_checkpoint(row.id) is False  # a second delivery finds it done
    [checkpoint] = audit_publish.read(publication)
    assert checkpoint.occasion == audit_publish.GRANT and checkpoint.seq >= granted
    session.expire_all()
    assert session.get(Work, row.id).state == WorkState.DONE
    # The light check: the event the newest checkpoint names must still carry its hash.
    tamper(session, f"UPDATE audit_event SET hash = '{'c' * 64}' WHERE seq = {checkpoint.seq}")
    with pytest.raises(audit_publish.PublishRefused,
                       match=rf"event {checkpoint.seq} is not as signed checkpoint 1 \(00000001.jws"):
        audit_publish.publish_head(session, publication)
