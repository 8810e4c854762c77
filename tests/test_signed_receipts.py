"""Signed receipts: a directory checks them with our published keys alone, through backoffice/receiptverify.py."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

import config
from backoffice import create_app, jws, receiptverify, signing
from backoffice.extensions import db
from backoffice.models import AuditEvent, CriteriaCatalogue, DecisionOutcome, Provider, Role, utcnow
from backoffice.services import receipts, review
from tests.conftest import app_overrides
from tests.review_helpers import POLICY, assess_all, in_review, provider_member, publish_catalogue, submitted
from tests.test_startup import BIN, ROOT

BACKOFFICE = ROOT / "backoffice"
JOSE = "application/jose"


def verified(session, make_account, make_provider) -> tuple[Provider, object]:
    """A provider whose listing request a researcher approved: in the directory on that decision."""
    if session.scalar(select(func.count(CriteriaCatalogue.id))) == 0:
        publish_catalogue(session)
    provider = make_provider()
    researcher = make_account(Role.RESEARCHER)
    request = in_review(session, researcher, submitted(session, provider_member(session, make_account, provider),
                                                       provider))
    assess_all(session, researcher, request)
    review.decide(session, researcher, request, DecisionOutcome.APPROVED, [], "", "", POLICY, None)
    session.commit()
    return provider, researcher


def signed_receipt(client, provider: Provider) -> str:
    response = client.get(f"/api/v1/listings/{provider.id}/verification", headers={"Accept": JOSE})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == JOSE
    return response.get_data(as_text=True)


def published(client) -> dict:
    return client.get("/.well-known/jwks.json").get_json()


def status_list(client) -> str:
    response = client.get("/api/v1/receipts/status")
    assert response.status_code == 200 and response.mimetype == JOSE
    return response.get_data(as_text=True)


def revoke(session, make_account, researcher, provider: Provider) -> None:
    """A researcher asks, a research lead signs off: the provider's verification is revoked."""
    action = review.request_revocation(session, researcher, provider, "licence surrendered to the state")
    session.commit()
    review.sign_off_revocation(session, make_account(Role.RESEARCH_LEAD), action)
    session.commit()


def revoked_at(session, provider: Provider) -> str:
    """When the audit trail says the provider's verification was revoked."""
    return jws.rfc3339(session.scalar(select(AuditEvent.occurred_at).where(
        AuditEvent.provider_id == provider.id, AuditEvent.action == "verification.revoked")))


def check(client, token: str, now: datetime | None = None, status: bool = True) -> receiptverify.Result:
    return receiptverify.verify(token, published(client), status_list(client) if status else None, now)


def test_a_receipt_verifies_with_the_published_key_and_carries_the_json_answer(
        app, client, session, make_account, make_provider):
    provider, _ = verified(session, make_account, make_provider)
    token = signed_receipt(client, provider)
    result = check(client, token)
    assert result.holds, result.message
    decision = provider.verified_decision_id
    assert result.message.startswith(f"HOLDS: receipt decision-{decision} for http://localhost/api/v1/listings/"
                                     f"{provider.id}/verification, signed by key {app.extensions['signing'].kid} at ")
    assert result.message.endswith(f", valid until {jws.rfc3339(provider.verified_until)}, not in the status list")
    claims = result.claims
    assert claims["iss"] == "http://localhost" and claims["jti"] == f"decision-{decision}"
    assert claims["exp"] == int(provider.verified_until.timestamp())
    assert claims["status"] == {"type": "RevokedReceiptList", "list": "http://localhost/api/v1/receipts/status",
                                "id": f"decision-{decision}"}
    plain = client.get(f"/api/v1/listings/{provider.id}/verification")
    assert plain.mimetype == "application/json" and "Accept" in plain.headers["Vary"]
    assert claims["receipt"] == plain.get_json()  # the JSON answer, as it was, signed
    by_query = client.get(f"/api/v1/listings/{provider.id}/verification?format=jws")
    assert by_query.mimetype == JOSE and receiptverify.verify(by_query.get_data(as_text=True), published(client)).holds
    # The signed bytes are canonical JSON: any JOSE library checks them as they are.
    payload = jws.b64url_decode(token.split(".")[1], "payload")
    assert payload == jws.canonical_json(json.loads(payload))


def test_every_byte_flip_an_unknown_key_and_an_expired_receipt_are_refused_saying_why(
        app, client, session, make_account, make_provider):
    provider, _ = verified(session, make_account, make_provider)
    token = signed_receipt(client, provider)
    keys, status = published(client), status_list(client)
    for position in range(len(token)):
        flipped = token[:position] + chr(ord(token[position]) ^ 1) + token[position + 1:]
        result = receiptverify.verify(flipped, keys, status)
        assert result.code == receiptverify.REFUSED, (position, result.message)
        assert result.message.startswith(("REFUSED: the receipt was altered", "REFUSED: unknown key")), result.message

    stranger = jws.Ed25519PrivateKey.generate()
    forged = jws.sign_compact(stranger, jws.public_jwk(stranger.public_key())["kid"],
                              json.loads(jws.b64url_decode(token.split(".")[1], "payload")), receipts.RECEIPT_TYPE)
    refused = receiptverify.verify(forged, keys, status)
    assert refused.code == receiptverify.REFUSED
    assert refused.message.startswith("REFUSED: unknown key: the token is signed by key ")

    later = provider.verified_until + timedelta(seconds=1)
    expired = receiptverify.verify(token, keys, None, later)
    assert expired.code == receiptverify.REFUSED
    assert expired.message.startswith(f"REFUSED: the receipt expired at {jws.rfc3339(provider.verified_until)}")


def test_a_revoked_or_suspended_receipt_is_refused_through_the_signed_status_list(
        app, client, session, make_account, make_provider):
    provider, researcher = verified(session, make_account, make_provider)
    other, _ = verified(session, make_account, make_provider)
    token, other_token = signed_receipt(client, provider), signed_receipt(client, other)
    assert check(client, token).holds

    revoke(session, make_account, researcher, provider)
    review.suspend_listing(session, researcher, other, "a critical finding awaits review")
    session.commit()

    revoked = check(client, token)
    assert revoked.code == receiptverify.REFUSED
    since = revoked_at(session, provider)
    assert revoked.message == (f"REFUSED: receipt decision-{provider.verified_decision_id} for http://localhost/api/"
                               f"v1/listings/{provider.id}/verification no longer holds: revoked since {since}")
    suspended = check(client, other_token)
    assert suspended.code == receiptverify.REFUSED
    assert "no longer holds: suspended since " in suspended.message
    # Without the status list the receipt alone still checks, and says it was not asked about its status.
    assert check(client, token, status=False).message.startswith("HOLDS (status not checked: pass --status)")
    # Both formats now answer the clear 404.
    for headers in ({}, {"Accept": JOSE}):
        gone = client.get(f"/api/v1/listings/{provider.id}/verification", headers=headers)
        assert gone.status_code == 404
        assert gone.get_json()["error"]["message"] == f"No listed, currently verified provider has id {provider.id}."


def test_a_status_list_that_is_stale_forged_or_from_another_issuer_is_not_trusted(
        app, client, session, make_account, make_provider):
    provider, _ = verified(session, make_account, make_provider)
    token, keys, status = signed_receipt(client, provider), published(client), status_list(client)
    stale = receiptverify.verify(token, keys, status, utcnow() + timedelta(hours=1, seconds=1))
    assert stale.code == receiptverify.UNREADABLE and "the status list expired at" in stale.message
    altered = status[:-3] + ("A" if status[-3] != "A" else "B") + status[-2:]
    forged = receiptverify.verify(token, keys, altered)
    assert forged.code == receiptverify.UNREADABLE
    assert forged.message.startswith("UNREADABLE: the status list cannot be trusted: the signature does not verify")
    elsewhere = app.extensions["signing"].sign({**json.loads(jws.b64url_decode(status.split(".")[1], "p")),
                                                "iss": "https://other.example.org"}, receipts.STATUS_LIST_TYPE)
    other = receiptverify.verify(token, keys, elsewhere)
    assert other.code == receiptverify.UNREADABLE and "not by the receipt's issuer 'http://localhost'" in other.message


def test_a_receipt_signed_outside_its_keys_period_is_refused(app, client, session, make_account, make_provider):
    provider, _ = verified(session, make_account, make_provider)
    token = signed_receipt(client, provider)
    keys = published(client)
    keys["keys"][0]["valid_until"] = "2026-01-01T00:00:00Z"
    result = receiptverify.verify(token, keys)
    assert result.code == receiptverify.REFUSED
    assert result.message.startswith(f"REFUSED: key {keys['keys'][0]['kid']} was not valid when the receipt says it "
                                     "was signed (")
    assert result.message.endswith("it signed from the beginning until 2026-01-01T00:00:00Z")


def test_after_a_rotation_old_receipts_still_verify_and_new_ones_use_the_new_key(
        make_app, database_url, tmp_path, make_account, make_provider):
    key_file, retired = tmp_path / "keys" / "ed25519.pem", tmp_path / "keys" / "retired.json"
    assert signing.new_key_file(key_file)
    settings = {"SIGNING_KEY_FILE": str(key_file), "SIGNING_RETIRED_KEYS_FILE": str(retired)}
    before = make_app(**settings)
    with before.app_context():
        provider, _ = verified(db.session, make_account, make_provider)
        old_token = signed_receipt(before.test_client(), provider)
        old_kid = before.extensions["signing"].kid
        rotated = before.test_cli_runner().invoke(args=["signing", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert rotated.output.startswith(f"Retired key {old_kid} as of ")
    assert "Next: restart every web process and worker now" in rotated.output

    after = make_app(**settings)
    new_kid = after.extensions["signing"].kid
    assert new_kid != old_kid and f"key {new_kid} now in {key_file}" in rotated.output
    with after.app_context():
        client = after.test_client()
        keys = published(client)
        assert [k["kid"] for k in keys["keys"]] == [new_kid, old_kid]
        assert keys["keys"][0]["valid_from"] == keys["keys"][1]["valid_until"]
        assert "valid_until" not in keys["keys"][0]
        assert check(client, old_token).holds  # signed before the rotation, by the retired key
        new_token = signed_receipt(client, provider)
        assert json.loads(jws.b64url_decode(new_token.split(".")[0], "header"))["kid"] == new_kid
        assert check(client, new_token).holds


def test_the_published_keys_read_as_a_jwk_set_and_the_command_prints_the_same(app, client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    keys = app.extensions["signing"]
    x = jws.b64url(jws.raw_public_key(keys.private_key.public_key()))
    assert response.get_json() == {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": jws.thumbprint(x),
                                             "alg": "EdDSA", "use": "sig"}]}
    printed = app.test_cli_runner().invoke(args=["signing", "jwks"])
    assert printed.exit_code == 0 and json.loads(printed.output) == response.get_json()


def test_an_unknown_format_and_a_provider_not_verified_are_refused_clearly(client, make_provider):
    provider = make_provider()
    for query, headers in (("", {}), ("?format=jws", {}), ("", {"Accept": JOSE})):
        response = client.get(f"/api/v1/listings/{provider.id}/verification{query}", headers=headers)
        assert response.status_code == 404 and response.mimetype == "application/json"
        assert response.get_json()["error"]["message"] == f"No listed, currently verified provider has id {provider.id}."
    wrong = client.get(f"/api/v1/listings/{provider.id}/verification?format=xml")
    assert wrong.status_code == 400
    assert wrong.get_json()["error"]["message"] == "format 'xml' is not one of json, jws"


def run_verifier(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "receiptverify.py", *args], cwd=folder, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"]})


def test_the_verifier_runs_from_a_copy_of_its_two_files_in_an_empty_folder(
        app, client, session, make_account, make_provider, tmp_path):
    folder = tmp_path / "directory"
    folder.mkdir()
    for name in ("receiptverify.py", "jws.py"):
        shutil.copy(BACKOFFICE / name, folder / name)
    provider, researcher = verified(session, make_account, make_provider)
    (folder / "receipt.jws").write_text(signed_receipt(client, provider))
    (folder / "jwks.json").write_text(json.dumps(published(client)))
    (folder / "status.jws").write_text(status_list(client))

    holds = run_verifier(folder, "receipt.jws", "--jwks", "jwks.json", "--status", "status.jws")
    assert holds.returncode == 0, holds.stderr
    assert holds.stdout.startswith(f"HOLDS: receipt decision-{provider.verified_decision_id} for ")

    token = (folder / "receipt.jws").read_bytes()
    (folder / "altered.jws").write_bytes(token[:40] + bytes([token[40] ^ 0x80]) + token[41:])
    altered = run_verifier(folder, "altered.jws", "--jwks", "jwks.json")
    assert altered.returncode == 1
    assert altered.stderr.startswith("REFUSED: the receipt was altered or is not a receipt: ")

    missing = run_verifier(folder, "nothing.jws", "--jwks", "jwks.json")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "UNREADABLE: cannot read the receipt nothing.jws: No such file or directory"
    bad_now = run_verifier(folder, "receipt.jws", "--jwks", "jwks.json", "--now", "yesterday")
    assert bad_now.returncode == 2 and "--now is not an RFC 3339 date-time: 'yesterday'" in bad_now.stderr

    revoke(session, make_account, researcher, provider)
    (folder / "status.jws").write_text(status_list(client))
    revoked = run_verifier(folder, "receipt.jws", "--jwks", "jwks.json", "--status", "status.jws")
    assert revoked.returncode == 1
    assert revoked.stderr.strip().endswith(f"no longer holds: revoked since {revoked_at(session, provider)}")
    expired = run_verifier(folder, "receipt.jws", "--jwks", "jwks.json", "--now",
                           jws.rfc3339(provider.verified_until + timedelta(days=1)))
    assert expired.returncode == 1 and "REFUSED: the receipt expired at" in expired.stderr


def test_new_key_writes_an_owner_only_file_without_a_key_configured_and_never_overwrites(tmp_path):
    path = tmp_path / "signing-key.pem"
    env = {key: value for key, value in os.environ.items()
           if key not in ("SIGNING_KEY_FILE", "SIGNING_RETIRED_KEYS_FILE", "FLASK_APP")}
    env["BACKOFFICE_ENV"] = "production"  # where the app itself refuses to start without a key
    command = [str(BIN / "flask"), "--app", "backoffice", "signing", "new-key", str(path)]
    made = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    kid = jws.public_jwk(signing.load({"SIGNING_KEY_FILE": str(path),
                                       "SIGNING_RETIRED_KEYS_FILE": str(tmp_path / "none.json")})
                         .private_key.public_key())["kid"]
    assert made.stdout.startswith(f"Wrote a new Ed25519 signing key to {path} (mode 0600); its key id is {kid}.")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and path.read_bytes() == first
    assert again.stderr.strip() == (f"Refused: {path} already exists: a key file is never overwritten (rotate "
                                    "with `flask signing rotate`, or name another file)")


def _kid_after_loading(path: str, start) -> str:
    start.wait()  # every process asks for the missing key at the same moment
    keys = signing.load({"SIGNING_KEY_FILE": path, "SIGNING_RETIRED_KEYS_FILE": path + ".retired.json"})
    return keys.kid


def test_processes_starting_at_once_on_a_fresh_instance_all_sign_with_the_one_key_its_file_holds(tmp_path):
    """A fresh instance's web, worker and beat processes start together, and each generates the key file
    it finds missing: one of them makes it, and every one signs with the key the file holds."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    path = str(tmp_path / "signing" / "ed25519.pem")
    for _ in range(5):  # the moment of the race differs from try to try
        Path(path).unlink(missing_ok=True)
        start = context.Manager().Barrier(8)
        with context.Pool(8) as pool:
            kids = pool.starmap(_kid_after_loading, [(path, start)] * 8)
        on_file = jws.public_jwk(signing._read_private_key(Path(path).read_bytes(), path).public_key())["kid"]
        assert set(kids) == {on_file}
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
        assert sorted(p.name for p in Path(path).parent.iterdir()) == ["ed25519.pem"]  # no file left half-made


def test_production_without_a_key_is_refused_in_one_line(monkeypatch):
    for name in ("SIGNING_KEY_FILE", "SIGNING_KEY", "BACKOFFICE_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRET_KEY", "p" * 48)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://backoffice.example.org/")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/6")
    monkeypatch.setenv("MAIL_URL", "smtps://backoffice:secret@smtp.example.org")
    monkeypatch.setenv("MAIL_FROM", "no-reply@example.org")
    with pytest.raises(config.SettingsError) as refused:
        config.load("production")
    assert "\n" not in str(refused.value)
    assert str(refused.value) == ("SIGNING_KEY or SIGNING_KEY_FILE must be set in production (an Ed25519 private "
                                  "key in PEM, kept outside the database: `flask signing new-key` writes one)")


@pytest.mark.parametrize("case", ["key file", "retired file", "retired undated"])
def test_a_malformed_key_file_or_retired_file_is_refused_at_start_in_one_line(case, database_url, tmp_path):
    key_file, retired = tmp_path / "key.pem", tmp_path / "retired.json"
    signing.new_key_file(key_file)
    if case == "key file":
        key_file.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        expected = f"SIGNING_KEY_FILE {key_file} is not an unencrypted PEM private key"
    elif case == "retired file":
        retired.write_text('{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "bad="}]}')
        expected = (f"SIGNING_RETIRED_KEYS_FILE {retired} cannot be read: the x of key k1 is not unpadded "
                    "base64url")
    else:
        stranger = jws.Ed25519PrivateKey.generate()
        retired.write_text(json.dumps({"keys": [jws.public_jwk(stranger.public_key())]}))
        expected = f"retired signing key {jws.public_jwk(stranger.public_key())['kid']} in {retired} has no valid_until"
    with pytest.raises(config.SettingsError) as refused:
        create_app("testing", {**app_overrides(database_url, tmp_path), "SIGNING_KEY_FILE": str(key_file),
                               "SIGNING_RETIRED_KEYS_FILE": str(retired)})
    assert str(refused.value) == expected

    env = {**os.environ, "SIGNING_KEY_FILE": str(key_file), "SIGNING_RETIRED_KEYS_FILE": str(retired),
           "DATABASE_URL": f"sqlite:///{tmp_path}/backoffice.db", "BACKOFFICE_INSTANCE_PATH": str(tmp_path / "i")}
    env.pop("FLASK_APP", None)
    started = subprocess.run([str(BIN / "flask"), "--app", "backoffice", "routes"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode != 0 and "Traceback" not in started.stderr
    assert started.stderr.strip().splitlines() == [expected]


def test_the_status_list_names_only_receipts_that_may_still_be_unexpired(
        app, client, session, make_account, make_provider):
    provider, researcher = verified(session, make_account, make_provider)
    revoke(session, make_account, researcher, provider)
    jti = f"decision-{provider.verified_decision_id}"
    assert [e.jti for e in receipts.no_longer_holding(session, utcnow())] == [jti]
    after_validity = provider.verified_until + timedelta(seconds=1)
    assert receipts.no_longer_holding(session, after_validity) == []  # its receipts have all expired by then
    assert datetime.now(timezone.utc) < provider.verified_until


def test_the_status_list_is_made_again_as_soon_as_anything_is_audited(
        app, client, session, make_account, make_provider):
    provider, researcher = verified(session, make_account, make_provider)
    first = status_list(client)
    assert status_list(client) == first  # nothing changed: the list made a moment ago is served again
    review.suspend_listing(session, researcher, provider, "a critical finding awaits review")
    session.commit()
    after = status_list(client)
    assert after != first
    entries = json.loads(jws.b64url_decode(after.split(".")[1], "payload"))["revoked"]
    assert [(e["id"], e["reason"]) for e in entries] == [(f"decision-{provider.verified_decision_id}", "suspended")]


def test_the_claims_name_the_public_address_and_not_the_requests_host(make_app, make_account, make_provider):
    public = make_app(PUBLIC_BASE_URL="https://backoffice.example.org/")
    with public.app_context():
        provider, _ = verified(db.session, make_account, make_provider)
        client = public.test_client()
        response = client.get(f"/api/v1/listings/{provider.id}/verification?format=jws",
                              base_url="http://attacker.example")
        result = receiptverify.verify(response.get_data(as_text=True), published(client), status_list(client))
    assert result.holds, result.message
    assert result.claims["iss"] == "https://backoffice.example.org"
    assert result.claims["sub"] == f"https://backoffice.example.org/api/v1/listings/{provider.id}/verification"
    assert result.claims["status"]["list"] == "https://backoffice.example.org/api/v1/receipts/status"
