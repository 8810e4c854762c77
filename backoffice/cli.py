"""Flask commands: staff accounts, imports, demo data and the audit chain."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import Flask, current_app
from tqdm import tqdm

from backoffice import auditverify, demo, unit_of_work
from backoffice.checks import exclusion_lists
from backoffice.extensions import db
from backoffice.importers import hsds as hsds_importer
from backoffice.importers.locator import ImportFileError, NothingToImport, read_file
from backoffice.models import Role, WorkKind, WorkState
from backoffice.services import (
    accounts,
    audit_export,
    audit_publish,
    criteria,
    imports,
    mfa,
    screening,
    work,
)
from backoffice.services.errors import DomainError
from backoffice.signing_commands import signing_group

# The command a new user copies from the seed output, README and `make run`: it works without FLASK_APP.
DEMO_CODE_COMMAND = ".venv/bin/flask --app backoffice demo-code EMAIL"


def register(app: Flask) -> None:
    app.cli.add_command(create_staff_user)
    app.cli.add_command(import_group)
    app.cli.add_command(audit_group)
    app.cli.add_command(criteria_group)
    app.cli.add_command(seed_demo)
    app.cli.add_command(demo_code)
    app.cli.add_command(signing_group)


@click.command("create-staff-user")
@click.argument("email")
@click.option("--name", required=True, help="The person's full name.")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice([r.value for r in Role if r != Role.PROVIDER]), help="Repeat for several roles.")
@click.password_option(help="Prompted for when not given.")
def create_staff_user(email: str, name: str, roles: tuple[str, ...], password: str) -> None:
    """Create a staff account with the given roles."""
    with unit_of_work.atomic():
        try:
            account = accounts.create_account(db.session, "system:cli", email=email, name=name, password=password,
                                              roles=[Role(r) for r in roles], email_confirmed=True)
        except DomainError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Created {account.email} with roles {', '.join(sorted(roles))}.")


@click.group("import")
def import_group() -> None:
    """Import public data files."""


@import_group.command("findtreatment")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--partial", is_flag=True,
              help="Import the valid rows even when some are rejected (they are listed). Default: all or nothing.")
def import_findtreatment(path: Path, partial: bool) -> None:
    """Import a FindTreatment.gov JSON export or a SAMHSA (OEPS) facility CSV."""
    _import_facilities(path, read_file, partial)


@import_group.command("hsds")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--partial", is_flag=True,
              help="Import the valid records even when some are rejected (they are listed). Default: all or nothing.")
def import_hsds(path: Path, partial: bool) -> None:
    """Import an Open Referral HSDS 3.0 JSON dataset (a file or a folder of files); imported providers are unlisted
    until reviewed."""
    _import_facilities(path, hsds_importer.read, partial)


def _import_facilities(path: Path, reader, partial: bool) -> None:
    """Read every row, list the rejected ones, then write all or nothing (or, with --partial, the good ones)."""
    try:
        source, rows = reader(path)
        records, summary = imports.validate(tqdm(rows, desc="reading", unit=" rows", disable=not sys.stderr.isatty()), source)
    except ImportFileError as exc:
        raise click.ClickException(f"{path.name}: {exc}. Nothing was imported.") from None
    except NothingToImport as exc:
        click.echo(f"{path.name}: {exc}. Nothing was imported.")
        return
    for problem in summary.rejected:
        click.echo(f"rejected {problem}", err=True)
    for note in summary.duplicates:
        click.echo(f"duplicate {note}", err=True)
    for note in summary.unmapped_notes():
        click.echo(f"not mapped {note}", err=True)
    if summary.rejected and not records:
        click.echo(f"{path.name}: all {len(summary.rejected)} rows rejected, so nothing was imported.", err=True)
        sys.exit(1)
    if summary.rejected and not partial:
        click.echo(
            f"{path.name}: {len(summary.rejected)} rows rejected, so nothing was imported. "
            "Fix them, or run again with --partial to import the other rows.", err=True)
        sys.exit(1)
    with unit_of_work.atomic(), tqdm(total=len(records), desc="writing", unit=" rows",
                                     disable=not sys.stderr.isatty()) as bar:
        imports.apply(db.session, "system:import", records, summary, progress=bar.update)
    for note in summary.kept:
        click.echo(f"kept {note}", err=True)
    click.echo(
        f"{path.name} ({source}): {summary.created} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {len(summary.duplicates)} duplicates skipped, "
        f"{len(summary.rejected)} rejected."
    )


def _import_exclusions(path: Path, expect: set[str], file_date) -> None:
    """Read the whole file, refuse it with every problem listed, or import it and queue screening."""
    try:
        parsed = exclusion_lists.read(path, expect=expect)
    except exclusion_lists.ExclusionFileError as exc:
        raise click.ClickException(f"{path.name}: {exc}. Nothing was imported.") from None
    for note in parsed.warnings:
        click.echo(f"note {note}", err=True)
    if parsed.errors:
        for problem in parsed.errors:
            click.echo(f"rejected {problem}", err=True)
        raise click.ClickException(
            f"{path.name}: {len(parsed.errors)} rows rejected, so nothing was imported. Fix them and run again.")
    previous = screening.find_source(db.session, parsed.sha256)
    if previous is not None:
        click.echo(f"{path.name}: this file was already imported on {previous.imported_at:%Y-%m-%d} "
                   f"(as {previous.file_name}); nothing added.")
        return
    with unit_of_work.atomic():  # the screening is sent once this commits
        result = screening.import_file(db.session, "system:import", parsed, file_date.date() if file_date else None)
        screening_work = work.request(
            db.session, "system:import",
            work.Spec(WorkKind.IMPORT_SCREENING, "exclusion_source", result.source.id,
                      f"import-screening:{result.source.id}", {"window": f"import-{result.source.id}"}),
            work.Policy.from_config(current_app.config))
    queued = ("Screening of listed providers is queued." if screening_work.state != WorkState.REQUESTED else
              "Screening of listed providers is recorded, but the worker queue cannot be reached just now; it will "
              "start by itself when the queue is reachable again.")
    click.echo(f"{path.name} ({parsed.list_name}, file date {result.source.file_date}): {result.added} records added, "
               f"{result.already_known} already known, {parsed.duplicates} duplicate lines skipped. {queued}")


_FILE_DATE = click.option("--file-date", type=click.DateTime(formats=["%Y-%m-%d"]),
                          help="The list's publication date (default: the latest date in the file).")


@import_group.command("leie")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_FILE_DATE
def import_leie(path: Path, file_date) -> None:
    """Import an OIG LEIE CSV: the full file, a monthly supplement or a reinstatement file."""
    _import_exclusions(path, {"oig_leie"}, file_date)


@import_group.command("state-list")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_FILE_DATE
def import_state_list(path: Path, file_date) -> None:
    """Import a state Medicaid exclusion list (NY OMIG TSV, PA Medicheck CSV)."""
    _import_exclusions(path, {"ny_omig", "pa_medicheck"}, file_date)


@click.group("audit")
def audit_group() -> None:
    """The audit trail."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Recompute the hash chain from the first event and name the first one that does not match."""
    with unit_of_work.atomic():
        result, published, refused = audit_publish.verify_and_publish(db.session, "system:cli",
                                                                      audit_publish.of_app(current_app))
    if result.ok:
        # The head this run verified through (writers may have moved the chain's head on since).
        head = result.checkpoint
        click.echo(f"OK: {result.checked} events verified; head is event {head.head_seq} ({head.head_hash}).")
        click.echo(audit_publish.publication_words(published, refused), err=refused is not None)
        if refused is not None:
            sys.exit(1)
        return
    where = f" at event {result.broken_seq}" if result.broken_seq is not None else ""
    click.echo(f"BROKEN{where}: {result.problem}. "
               f"{result.checked} events before it verified.", err=True)
    sys.exit(1)


@audit_group.command("verify-export")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--expect-head", default=None, help="SEQ:HASH of the head as the dashboard shows it.")
@click.option("--checkpoints", "directory", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of signed checkpoints (CHECKPOINT_PUBLISH_DIR, or the auditors' mailed copies).")
@click.option("--jwks", "jwks_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The JWK set that signed them (/.well-known/jwks.json).")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes to read a large whole-chain export with, side by side (default: one per core).")
def audit_verify_export(path: str, expect_head: str | None, directory: str | None, jwks_path: str | None,
                        jobs: int | None) -> None:
    """Verify an exported trail (JSONL or CSV) without the database: the same check as backoffice/auditverify.py."""
    if (directory is None) != (jwks_path is None):
        raise click.UsageError("--checkpoints and --jwks go together: the folder and the key set that signed it")
    try:
        signed = auditverify.published_checkpoints(directory, jwks_path) if directory and jwks_path else []
    except auditverify.CheckpointsRefused as exc:
        click.echo(f"REFUSED: the signed checkpoints in {directory} do not hold together: {exc}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the checkpoints or the key set: {exc}") from None
    try:
        head = auditverify.parse_head(expect_head) if expect_head else None
        result = auditverify.verify_file(path, head, signed, jobs=jobs or auditverify.available_cores())
    except (ValueError, KeyError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    click.echo(str(result), err=not result.ok)
    if not result.ok:
        sys.exit(1)


@audit_group.command("export")
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--from-seq", type=click.IntRange(min=1), default=1)
@click.option("--to-seq", type=click.IntRange(min=1), default=None)
@click.option("--provider", "provider_id", type=int, default=None, help="Only this provider's events.")
def export_audit_trail(path: str, fmt: str, from_seq: int, to_seq: int | None, provider_id: int | None) -> None:
    """Write an export of the trail (streamed; memory stays flat however long the trail)."""
    selection = audit_export.ExportRange(from_seq=from_seq, to_seq=to_seq, provider_id=provider_id)
    with unit_of_work.atomic():
        audit_export.record_export(db.session, "system:cli", fmt, selection)
    lines = (audit_export.jsonl if fmt == "jsonl" else audit_export.csv_lines)(db.session, selection, "system:cli")
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.writelines(lines)
    click.echo(f"Wrote {path}.")


@click.group("criteria")
def criteria_group() -> None:
    """The listing-criteria catalogue."""


@criteria_group.command("publish")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def criteria_publish(path: Path) -> None:
    """Publish a new catalogue version from a JSON definition file."""
    with unit_of_work.atomic():
        try:
            catalogue = criteria.publish(db.session, "system:cli", criteria.load_definition(path))
        except DomainError as exc:
            raise click.ClickException(f"{exc}. Nothing was published.") from None
    click.echo(f"Published criteria catalogue v{catalogue.version} with {len(catalogue.criteria)} criteria.")


@click.command("seed-demo")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database already holds providers.")
def seed_demo(if_empty: bool) -> None:
    """Demo accounts, real facilities from the shipped SAMHSA files and submissions in several states."""
    if current_app.config["ENV_NAME"] == "production":
        raise click.ClickException("Demo data has published passwords; it is never seeded in production.")
    if not demo.is_empty(db.session):
        if if_empty:
            click.echo("The database already holds data; demo seeding skipped.")
            return
        raise click.ClickException("The database already holds providers; seed an empty database.")
    password = current_app.config["DEMO_PASSWORD"]
    with unit_of_work.atomic():
        counts = demo.seed(db.session, password)
    click.echo(f"Seeded {counts['providers']} providers, {counts['submissions']} submissions and these accounts "
               f"(password {password!r}):")
    for account in demo.DEMO_ACCOUNTS:
        click.echo(f"  {account.role.value:<14} {account.email}")
    click.echo(f"Staff sign in with a second factor: `{DEMO_CODE_COMMAND}` prints the current code.")


@click.command("demo-code")
@click.argument("email")
def demo_code(email: str) -> None:
    """The current second-factor code of a demo staff account (for trying the demo without a phone)."""
    if current_app.config["ENV_NAME"] == "production":
        raise click.ClickException("Second-factor codes are never printed in production.")
    if email.strip().lower() not in {a.email for a in demo.DEMO_ACCOUNTS}:
        raise click.ClickException("Only the demo accounts' codes are printed; real staff use their own app.")
    account = accounts.find_by_email(db.session, email)
    if account is None or not account.has_second_factor:
        raise click.ClickException(f"{email} has no second factor set up: sign in and the page shows how.")
    click.echo(mfa.code_at_step(account.totp_secret, mfa.current_step()))
