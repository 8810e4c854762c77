"""`flask signing …`: make a key, print the published key set, rotate the key.

The group is also registered as a Flask plugin command (pyproject.toml), so `flask signing new-key` runs
without loading the app: production refuses to start without a key, and this is how the first one is made.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

import config
from backoffice import jws, signing
from backoffice.models import utcnow


@click.group("signing")
def signing_group() -> None:
    """The Ed25519 key that signs receipts and checkpoints."""


@signing_group.command("new-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def new_key(path: Path) -> None:
    """Write a new private key to PATH (PEM, readable by its owner only); an existing file is left alone."""
    try:
        kid = signing.new_key_file(path)
    except (config.SettingsError, OSError) as error:
        click.echo(f"Refused: {error}", err=True)
        sys.exit(1)
    click.echo(f"Wrote a new Ed25519 signing key to {path} (mode 0600); its key id is {kid}.")
    click.echo(f"Next: set SIGNING_KEY_FILE={path} for every web process and worker, keep the file out of "
               "backups of the database, and start the app.")


@signing_group.command("jwks")
@with_appcontext
def print_jwks() -> None:
    """Print the published JWK set: the current key first, then the retired ones with their periods."""
    click.echo(json.dumps(current_app.extensions["signing"].jwks(), indent=2))


@signing_group.command("rotate")
@with_appcontext
def rotate() -> None:
    """Retire the key in SIGNING_KEY_FILE as of now and write a new one in its place."""
    now = utcnow()
    try:
        old, new = signing.rotate(current_app.config, now)
    except config.SettingsError as error:
        click.echo(f"Refused: {error}", err=True)
        sys.exit(1)
    retired = signing.retired_file(current_app.config)
    click.echo(f"Retired key {old} as of {jws.rfc3339(now)} (kept, public only, in {retired}); "
               f"key {new} now in {signing.key_file(current_app.config)}.")
    click.echo("Next: restart every web process and worker now (until then they still sign with the retired "
               "key, and what they sign after its valid_until is refused); copy both files to every host that "
               "runs the app; leave SIGNING_KEY_VALID_FROM unset (the new key signs from the retired one's "
               "valid_until). Receipts signed before stay valid: the retired key is still published at "
               "/.well-known/jwks.json. Tell directories that pinned the old key the new key id.")
