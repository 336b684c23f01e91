"""``import`` and ``export`` (passwd-file, LDIF): accounts in and out (migrate: migrate.py)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TextIO

import click
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailwarden.accounts import passwdfile
from mailwarden.accounts.linebook import DiskLineBook
from mailwarden.app import (
    App,
    resolve_path,
)
from mailwarden.cli.common import (
    EX_DATAERR,
    EX_TEMPFAIL,
    EX_USAGE,
    _config,
    err,
    exit_for,
    fail,
    main,
    out,
    run_with_app,
)
from mailwarden.directories.base import BulkReport
from mailwarden.directories.sqlite import export as sqlite_export
from mailwarden.directories.streams import matching_accounts
from mailwarden.errors import (
    AccountError,
    ImportError_,
    MailwardenError,
)
from mailwarden.files import replaced_atomically
from mailwarden.model import (
    Account,
)

# --------------------------------------------------------------------------- import/export


@main.group("import")
def import_group() -> None:
    """Import accounts from another system."""


@import_group.command("passwd-file")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--replace", is_flag=True, help="Overwrite accounts that exist (default: skip).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def import_passwd_file(ctx: click.Context, file: str, replace: bool, quiet: bool) -> None:
    """Import a Dovecot passwd-file (user:{SCHEME}pw:uid:gid:gecos:home:shell:extra)."""
    path = Path(file)
    total = path.stat().st_size if file != "-" else None
    errors: list[tuple[int, str]] = []
    counts = {"created": 0, "replaced": 0, "skipped": 0}

    async def go(app: App) -> None:
        stream = sys.stdin if file == "-" else path.open(encoding="utf-8", errors="surrogateescape")
        progress = _progress("importing", quiet=quiet)
        # The line of every accepted user name and address, on disk: what finds a
        # line repeating an earlier one's name, and the lines of the accounts the
        # directory refuses, in flat memory however long the file (or stdin) is.
        with stream as fh, progress, DiskLineBook() as book:
            task = progress.add_task("import", total=total)

            def lines() -> Iterator[str]:
                for line in passwdfile.bounded_lines(fh):
                    progress.advance(task, len(line))
                    yield line

            def parsed() -> Iterator[Account]:
                for lineno, item in passwdfile.read_accounts(lines(), book=book):
                    if isinstance(item, Account):
                        yield item
                    else:
                        errors.append((lineno, item.message))

            # One bulk_upsert, one transaction (SQLite): the file is read and
            # written on the directory's writer thread, a chunk at a time, and an
            # import that is killed or fails leaves nothing behind. Lines whose
            # address another account holds are left out and listed, as are
            # unreadable lines.
            report = await app.directory.bulk_upsert(parsed(), replace=replace, skip_refused=True)
            found = book.lines_of({passwdfile.uid_key(r.uid) for r in report.refused})
        counts.update(created=report.created, replaced=report.replaced, skipped=report.skipped)
        errors.extend((found.get(passwdfile.uid_key(r.uid), 0), r.message) for r in report.refused)

    try:
        run_with_app(ctx, go)
    except ImportError_ as exc:
        fail(f"nothing imported: {exc}", EX_TEMPFAIL)
    errors.sort()
    out.print(
        f"imported: {counts['created']} created, {counts['replaced']} replaced, "
        f"{counts['skipped']} existing skipped, {len(errors)} line(s) with errors"
    )
    if errors:
        table = Table("line", "error", title="lines skipped")
        for lineno, message in errors[:200]:
            table.add_row(str(lineno), message)
        err.print(table)
        if len(errors) > 200:
            err.print(f"... and {len(errors) - 200} more")
        sys.exit(EX_DATAERR)  # a partial import: scripts must notice


@main.group("export")
def export_group() -> None:
    """Export accounts for another system."""


@export_group.command("passwd-file")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes that read and format the accounts of a SQLite directory "
    "(default: one per CPU, at most 4; 1: this process alone).",
)
@click.pass_context
def export_passwd_file(ctx: click.Context, file: str, workers: int | None) -> None:
    """Write every account as a Dovecot passwd-file line (to FILE or stdout).

    Accounts are read and written a batch at a time, in uid order; FILE appears
    only once it is complete (a failed export leaves no half-written file). An
    account the format cannot carry (a value with a space, say) is left out and
    listed, and the command exits 65 after writing the others: one such account
    never stops the export of the whole directory. On SQLite, worker processes
    read and format the accounts and the output is the same, byte for byte."""
    if _config(ctx).directory.backend == "sqlite":
        count = default_workers() if workers is None else workers
        written, skipped = _export_sqlite(ctx, file, passwdfile.format_line, count)
    else:

        def writer(fh: TextIO) -> Callable[[Account], object]:
            return lambda account: fh.write(passwdfile.format_line(account))

        written, skipped = _export(ctx, file, writer)
    if file != "-":
        err.print(f"exported {written} account(s) to {file}")
    if skipped:
        err.print(f"{len(skipped)} account(s) left out: a passwd-file cannot carry them")
        _print_errors(skipped)
        sys.exit(EX_DATAERR)


def default_workers() -> int:
    """One export worker per CPU this process may run on, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _export_sqlite(
    ctx: click.Context, file: str, formatter: sqlite_export.Formatter, workers: int
) -> tuple[int, list[tuple[str, str]]]:
    """As :func:`_export`, for the SQLite directory: ``workers`` processes read and
    format its accounts (directories/sqlite/export.py), this one writes them in uid
    order. The app is opened first, and closed, so that the file is checked and
    migrated as for any command."""

    async def opened(app: App) -> None:
        return None

    run_with_app(ctx, opened)
    config = _config(ctx)
    parts = sqlite_export.formatted(
        resolve_path(config, config.directory.path),
        formatter,
        timeout=config.directory.timeout,
        workers=workers,
    )
    written = 0
    skipped: list[tuple[str, str]] = []
    try:
        with _output(file) as fh, contextlib.closing(parts):
            for part in parts:
                fh.write(part.text)
                written += part.written
                skipped.extend((r.uid, r.message) for r in part.skipped)
    except MailwardenError as exc:
        exit_for(ctx, exc)
    return written, skipped


def _export(
    ctx: click.Context, file: str, writer: Callable[[TextIO], Callable[[Account], object]]
) -> tuple[int, list[tuple[str, str]]]:
    """Every account, streamed a batch at a time, to FILE (:func:`_output`) by
    ``writer(fh)(account)``; an account it refuses (AccountError: the format cannot
    carry it) is left out and listed. Returns how many were written, and the left out."""
    skipped: list[tuple[str, str]] = []

    async def go(app: App) -> int:
        written = 0
        with _output(file) as fh:
            write = writer(fh)
            async for account in matching_accounts(app.directory):
                try:
                    write(account)
                except AccountError as exc:
                    skipped.append((account.uid, str(exc)))
                    continue
                written += 1
        return written

    return run_with_app(ctx, go), skipped


def _output(file: str) -> AbstractContextManager[TextIO]:
    """Where an export writes: stdout for ``-``, else FILE, replaced atomically when
    the block ends without an error and left as it was when it does not
    (files.replaced_atomically; mode 0600, as the file holds password hashes)."""
    if file == "-":
        return contextlib.nullcontext(sys.stdout)
    return replaced_atomically(Path(file), errors="surrogateescape")


# --------------------------------------------------------------------------- LDIF


@import_group.command("ldif")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--replace", is_flag=True, help="Overwrite accounts that exist (default: skip).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def import_ldif(ctx: click.Context, file: str, replace: bool, quiet: bool) -> None:
    """Import accounts from an LDIF file (qmail-ldap / mailwarden schema, [ldap] mapping)."""
    import ldif  # type: ignore[import-untyped]  # noqa: PLC0415 - only this command needs it

    from mailwarden.directories.ldap import LdapMapping  # noqa: PLC0415

    mapping = LdapMapping(_config(ctx).ldap)
    with click.open_file(file, "rb") as fh:
        try:
            records = ldif.LDIFRecordList(fh)
            records.parse()
        except ValueError as exc:
            fail(f"{file}: not valid LDIF: {exc}")
    found: list[Account] = []
    errors: list[tuple[str, str]] = []
    for dn, attributes in records.all_records:
        try:
            account = mapping.account_of(attributes)
        except (ValueError, AccountError) as exc:
            errors.append((dn, str(exc)))
            continue
        if account is not None:
            found.append(account)
    report = _copy_accounts(ctx, found, replace=replace, quiet=quiet, errors=errors)
    out.print(
        f"imported: {report['created']} created, {report['replaced']} replaced, "
        f"{report['skipped']} existing skipped, {len(errors)} entr(y/ies) with errors"
    )
    _print_errors(errors)


@export_group.command("ldif")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--base-dn", default=None, help="DN the entries go under (default: [ldap] base_dn).")
@click.pass_context
def export_ldif(ctx: click.Context, file: str, base_dn: str | None) -> None:
    """Write every account as an LDIF entry (for ldapadd or slapadd)."""
    import ldif  # noqa: PLC0415

    from mailwarden.directories.ldap import LdapMapping  # noqa: PLC0415

    config = _config(ctx)
    base = base_dn or config.ldap.base_dn
    if not base:
        fail("no base DN: give --base-dn or set [ldap] base_dn", EX_USAGE)
    mapping = LdapMapping(config.ldap)

    def writer(fh: TextIO) -> Callable[[Account], object]:
        out = ldif.LDIFWriter(fh)
        return lambda account: out.unparse(*mapping.entry_of(account, base))

    written, skipped = _export(ctx, file, writer)
    err.print(f"exported {written} account(s), {len(skipped)} skipped")
    _print_errors(skipped)


def _copy_accounts(
    ctx: click.Context,
    accounts: list[Account],
    *,
    replace: bool,
    quiet: bool,
    errors: list[tuple[str, str]],
) -> dict[str, int]:
    """bulk_upsert ``accounts`` into ``ctx``'s directory, with a progress bar.

    One bulk_upsert: on SQLite one transaction, so an interrupted copy leaves
    nothing behind. Accounts the directory refuses (a clash, a value it cannot
    store) are left out and reported; the rest is written.
    """

    async def go(app: App) -> BulkReport:
        progress = _progress("copying", quiet=quiet)
        with progress:
            task = progress.add_task("copy", total=len(accounts))

            def counted() -> Iterator[Account]:
                for account in accounts:
                    progress.advance(task, 1)
                    yield account

            return await app.directory.bulk_upsert(counted(), replace=replace, skip_refused=True)

    report = run_with_app(ctx, go)
    errors.extend((r.uid, r.message) for r in report.refused)
    return {"created": report.created, "replaced": report.replaced, "skipped": report.skipped}


def _progress(verb: str, *, quiet: bool) -> Progress:
    """The progress bar of a bulk write, on stderr; none when quiet or not a terminal."""
    return Progress(
        TextColumn(verb),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=quiet or not err.is_terminal,
    )


def _print_errors(errors: list[tuple[str, str]]) -> None:
    """The entries left out (to stderr); with any, exit 65 (a partial import or copy)."""
    if not errors:
        return
    table = Table("entry", "error", title="not copied")
    for name, message in errors[:200]:
        table.add_row(name, message)
    err.print(table)
    if len(errors) > 200:
        err.print(f"... and {len(errors) - 200} more")
    sys.exit(EX_DATAERR)
