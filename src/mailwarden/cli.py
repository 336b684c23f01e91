"""The ``mailwarden`` command line (with app.py, the only place that wires classes).

Exit codes follow sysexits where a caller may script around them: 0 success,
1 a refused request (account exists, bad field), 2 usage (also an unknown password
scheme, in every command), 65 an import that left records out (its summary says
which), 67 no such user, 71 a listener could not be opened, 75 temporary failure
(directory down) and doveadm's fatal errors, 77 login refused (``auth test``),
78 configuration error (also: no config file and no database yet).

How results are printed (``--format``) is :mod:`mailwarden.cliout`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailwarden import __version__, cliargs, cliout, schemes
from mailwarden import config as config_mod
from mailwarden.accounts import passwdfile
from mailwarden.accounts import rules as accounts
from mailwarden.accounts.rules import account_to_json
from mailwarden.app import (
    App,
    authenticate_and_describe,
    resolve_path,
    run_loop,
    running_app,
    serve,
    setup_logging,
)
from mailwarden.config import Config
from mailwarden.directories.base import BulkReport, Directory
from mailwarden.errors import (
    AccountError,
    AccountNotFound,
    ConfigError,
    DirectoryMissing,
    SchemeError,
    TemporaryFailure,
    UnknownScheme,
)
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    Denied,
    DenyReason,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)

EX_USAGE = 2
EX_DATAERR = 65
EX_NOUSER = 67
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

T = TypeVar("T")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    sys.exit(code)


def _config(ctx: click.Context) -> Config:
    """The configuration, loaded on first use (``-c`` may follow the subcommand)."""
    obj: dict[str, Any] = ctx.obj
    if "config" not in obj:
        try:
            cfg = config_mod.load(obj[cliargs.CONFIG_PATH])
        except ConfigError as exc:
            fail(str(exc), EX_CONFIG)
        obj["config"] = cfg
        if not obj.get("serve"):
            # Commands print their own results; only warnings and errors go to the log.
            cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level="warning"))
        setup_logging(cfg)
    config: Config = obj["config"]
    return config


def _missing(ctx: click.Context, exc: DirectoryMissing) -> NoReturn:
    """No database yet: a setup problem (78), saying which config file pointed there."""
    source = _config(ctx).source
    if source.startswith("<"):
        fail(
            "no config file found (give -c FILE or set $MAILWARDEN_CONFIG; there is no "
            f"{config_mod.SYSTEM_CONFIG} and no ./{config_mod.LOCAL_CONFIG}), and with "
            f"the defaults: {exc}",
            EX_CONFIG,
        )
    fail(f"{source}: directory.path: {exc}", EX_CONFIG)


def _format(ctx: click.Context, as_json: bool = False) -> cliout.Format:
    """``--format`` (or a command's ``--json``); by default a table only on a terminal."""
    requested = "json" if as_json else ctx.obj.get(cliargs.FORMAT)
    return cliout.choose(requested, terminal=out.is_terminal)


def run_with_app(
    ctx: click.Context,
    fn: Callable[[App], Awaitable[T]],
    *,
    create: bool = False,
    guard_via_daemon: bool = False,
) -> T:
    """Open the directory and engine, run ``fn``, close everything; map errors to exits.

    ``guard_via_daemon``: commands that decide logins share the running daemon's
    brute-force state (app.open_guard)."""

    async def main() -> T:
        async with running_app(
            _config(ctx), create=create, guard_via_daemon=guard_via_daemon
        ) as app:
            return await fn(app)

    try:
        return asyncio.run(main())
    except DirectoryMissing as exc:
        _missing(ctx, exc)
    except TemporaryFailure as exc:
        fail(f"temporary failure: {exc}", EX_TEMPFAIL)
    except AccountNotFound as exc:
        fail(str(exc), EX_NOUSER)
    except AccountError as exc:
        fail(str(exc))


def read_new_password(password_stdin: bool, *, confirm: bool = True) -> bytes:
    """A new password from stdin (one line) or an interactive prompt; never from argv."""
    if password_stdin:
        line = sys.stdin.buffer.readline()
        value = line.rstrip(b"\r\n")
    else:
        value = click.prompt(
            "Enter new password", hide_input=True, confirmation_prompt=confirm
        ).encode()
    if not value:
        fail("empty password", EX_USAGE)
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $MAILWARDEN_CONFIG, /etc/mailwarden/mailwarden.toml, "
    "./mailwarden.toml).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(cliout.FORMAT_NAMES),
    default=None,
    help="Output of list and show commands (default: table on a terminal, else tsv).",
)
@click.version_option(__version__, prog_name="mailwarden")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, output_format: str | None) -> None:
    """mailwarden: authentication and accounts for a whole mail system."""
    # The config is loaded when a command first needs it (_config): -c may also
    # follow the subcommand. checkpassword reads the file itself (a bad file is a
    # temporary failure, 111, there; see mailwarden.checkpassword).
    ctx.obj = {
        cliargs.CONFIG_PATH: config_path,
        cliargs.FORMAT: output_format,
        "serve": ctx.invoked_subcommand == "serve",
    }


# --------------------------------------------------------------------------- daemon


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the configuration as 'serve' does, without starting anything: exit 78
    with the key of the first problem (a socket owner that does not exist, an
    unreadable certificate, no database yet...)."""
    from mailwarden import preflight  # noqa: PLC0415 - lean start of the other commands

    cfg = _config(ctx)
    try:
        preflight.check(cfg)
    except ConfigError as exc:
        fail(str(exc) if exc.path else f"{cfg.source}: {exc}", EX_CONFIG)
    out.print(f"{cfg.source}: OK")


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the embedded directory (safe to run again: existing data is kept)."""

    async def go(app: App) -> int:
        return await app.directory.count()

    count = run_with_app(ctx, go, create=True)
    out.print(f"directory ready ({_config(ctx).directory.backend}, {count} accounts)")


@main.command("serve")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Worker processes (overrides server.workers; 0: one per CPU core; more than one "
    'needs guard.store = "redis").',
)
@click.pass_context
def serve_cmd(ctx: click.Context, workers: int | None) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    from mailwarden import activation, preflight, prefork  # noqa: PLC0415 - lean start of the others

    cfg = _config(ctx)
    activated = activation.listen_fds()  # systemd's sockets (mailwarden.socket), if any
    try:
        preflight.check(cfg, workers=workers)
        count = prefork.effective_workers(cfg, workers)
        if count > 1:
            setup_logging(cfg, with_pid=True)
            sys.exit(prefork.supervise(cfg, count, activated))
        if activated:
            prefork.serve_activated(cfg, activated)
            return
        run_loop(serve(cfg))
    except DirectoryMissing as exc:
        _missing(ctx, exc)
    except TemporaryFailure as exc:
        fail(f"cannot start: {exc}", EX_TEMPFAIL)
    except ConfigError as exc:
        fail(f"cannot start: {exc}", EX_CONFIG)
    except OSError as exc:
        fail(f"cannot start: {exc}", EX_OSERR)


# --------------------------------------------------------------------------- users


@main.group()
def user() -> None:
    """Create, change and inspect accounts."""


def _checked_scheme(ctx: click.Context, scheme: str | None) -> str:
    name = (scheme or _config(ctx).passwords.scheme).upper()
    if name not in schemes.SCHEMES:
        fail(f"unknown scheme {name}", EX_USAGE)
    return name


def _check_free(ctx: click.Context, account: Account) -> None:
    """Exit 1 if the uid or one of the addresses is taken: asked before the password
    prompt (the directory decides again when the account is stored)."""

    async def go(app: App) -> str | None:
        if await app.directory.get(account.uid) is not None:
            return f"uid {account.uid!r} already exists"
        for login in account.logins():
            other = await app.directory.find(login)
            if other is not None:
                return f"{login!r} already belongs to {other.uid}"
        return None

    taken = run_with_app(ctx, go)
    if taken is not None:
        fail(taken)


def _check_exists(ctx: click.Context, uid: str) -> None:
    """Exit 67 if there is no account ``uid``: asked before the password prompt."""

    async def go(app: App) -> bool:
        return await app.directory.get(uid) is not None

    if not run_with_app(ctx, go):
        fail(f"no account {uid}", EX_NOUSER)


@user.command("add")
@click.argument("uid")
@click.option("--mail", help="Primary address (default: UID when it contains @).")
@click.option("--alt", "alternates", multiple=True, help="Alternate address (repeatable).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--no-password", is_flag=True, help="Create without a password (no login).")
@click.option("--scheme", default=None, help="Password scheme (default: [passwords] scheme).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Any other field, as for 'user set' (repeatable).",
)
@click.pass_context
def user_add(
    ctx: click.Context,
    uid: str,
    mail: str | None,
    alternates: tuple[str, ...],
    password_stdin: bool,
    no_password: bool,
    scheme: str | None,
    assignments: tuple[str, ...],
) -> None:
    """Create an account."""
    if mail is None and "@" in uid:
        mail = uid
    base = Account(uid=uid, mail=mail, alternate_addresses=alternates)
    try:
        planned = accounts.apply_assignments(base, assignments)
    except AccountError as exc:
        fail(str(exc))
    scheme_name = _checked_scheme(ctx, scheme)
    _check_free(ctx, planned)
    password = None if no_password else read_new_password(password_stdin)

    async def go(app: App) -> None:
        await app.admin.create(base, password=password, scheme=scheme_name, assignments=assignments)

    run_with_app(ctx, go)
    out.print(f"created {uid}")


@user.command("del")
@click.argument("uid")
@click.pass_context
def user_del(ctx: click.Context, uid: str) -> None:
    """Delete an account for good (use 'disable' to keep it)."""

    run_with_app(ctx, lambda app: app.admin.delete(uid))
    out.print(f"deleted {uid}")


@user.command("show")
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def user_show(ctx: click.Context, uid: str, as_json: bool) -> None:
    """Show one account (the password hash is never printed)."""

    account = run_with_app(ctx, lambda app: app.admin.show(uid))
    data = account_to_json(account)
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.TABLE:
        data = {k: v for k, v in data.items() if v is not False or k == "master"}
    cliout.write_record(fmt, data, stream=sys.stdout, console=out)


@user.command("list")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@click.option("--limit", default=100000, show_default=True)
@cliargs.format_option
@click.pass_context
def user_list(ctx: click.Context, pattern: str, as_json: bool, limit: int) -> None:
    """List accounts whose uid or an address matches PATTERN (* and ? wildcards).

    Columns: uid, mail, status, mail host, services switched off (comma list)."""

    found = run_with_app(ctx, lambda app: app.admin.search(pattern, limit=limit))
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        cliout.write_json_array((account_to_json(a) for a in found), stream=sys.stdout)
        return
    rows = (
        (
            a.uid,
            a.mail or "",
            a.status.value,
            a.mail_host or "",
            ",".join(sorted(k for k, v in a.services.items() if not v)),
        )
        for a in found
    )
    columns = ("uid", "mail", "status", "mail host", "services off")
    cliout.write_rows(
        fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} account(s)"
    )


@user.command("set")
@click.argument("uid")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.pass_context
def user_set(ctx: click.Context, uid: str, assignments: tuple[str, ...]) -> None:
    """Change fields: mail, home, mail_location, uid_number, gid_number, quota_bytes,
    quota_messages, mail_host, pgp_fingerprint, status, master, alternate_addresses,
    allow_nets (comma lists), service.NAME=on|off, passdb.KEY, userdb.KEY,
    profile.FIELD. An empty VALUE clears the field."""
    run_with_app(ctx, lambda app: app.admin.update(uid, assignments))
    out.print(f"updated {uid}")


def _set_status(ctx: click.Context, uid: str, status: AccountStatus) -> None:
    run_with_app(ctx, lambda app: app.admin.set_status(uid, status))
    out.print(f"{uid}: {status.value}")


@user.command("enable")
@click.argument("uid")
@click.pass_context
def user_enable(ctx: click.Context, uid: str) -> None:
    """Set the account's status to active."""
    _set_status(ctx, uid, AccountStatus.ACTIVE)


@user.command("disable")
@click.argument("uid")
@click.pass_context
def user_disable(ctx: click.Context, uid: str) -> None:
    """Set the account's status to disabled (logins refused, mail still delivered)."""
    _set_status(ctx, uid, AccountStatus.DISABLED)


@user.command("passwd")
@click.argument("uid")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--scheme", default=None, help="Password scheme (default: [passwords] scheme).")
@click.pass_context
def user_passwd(ctx: click.Context, uid: str, password_stdin: bool, scheme: str | None) -> None:
    """Set an account's password."""
    scheme_name = _checked_scheme(ctx, scheme)
    _check_exists(ctx, uid)
    password = read_new_password(password_stdin)
    run_with_app(ctx, lambda app: app.admin.set_password(uid, password, scheme=scheme_name))
    out.print(f"password of {uid} changed ({scheme_name})")


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
        progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet or not err.is_terminal,
        )
        lines_of: dict[str, int] = {}  # uid key -> the (last) line that gave it

        with stream as fh, progress:
            task = progress.add_task("import", total=total)

            def lines() -> Iterator[str]:
                for line in passwdfile.bounded_lines(fh):
                    progress.advance(task, len(line))
                    yield line

            def parsed() -> Iterator[Account]:
                for lineno, item in passwdfile.read_accounts(lines()):
                    if isinstance(item, Account):
                        lines_of[item.uid.lower()] = lineno
                        yield item
                    else:
                        errors.append((lineno, item.message))

            # One bulk_upsert, one transaction (SQLite): the file is read and
            # written on the directory's writer thread, and an import that is
            # killed or fails leaves nothing behind. Lines whose address another
            # account holds are left out and listed, as are unreadable lines.
            report = await app.directory.bulk_upsert(parsed(), replace=replace, skip_refused=True)
        counts.update(created=report.created, replaced=report.replaced, skipped=report.skipped)
        errors.extend((lines_of.get(r.uid.lower(), 0), r.message) for r in report.refused)

    run_with_app(ctx, go)
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
@click.pass_context
def export_passwd_file(ctx: click.Context, file: str) -> None:
    """Write every account as a Dovecot passwd-file line (to FILE or stdout).

    An account the format cannot carry (a value with a space, say) is left out and
    listed, and the command exits 65 after writing the others: one such account
    never stops the export of the whole directory."""
    skipped: list[tuple[str, str]] = []

    async def go(app: App) -> list[str]:
        lines = []
        async for uid in app.directory.iterate():
            account = await app.directory.get(uid)
            if account is None:
                continue
            try:
                lines.append(passwdfile.format_account(account))
            except AccountError as exc:
                skipped.append((account.uid, str(exc)))
        return lines

    lines = run_with_app(ctx, go)
    text = "".join(line + "\n" for line in lines)
    if file == "-":
        sys.stdout.write(text)
    else:
        Path(file).write_text(text, encoding="utf-8", errors="surrogateescape")
        err.print(f"exported {len(lines)} account(s) to {file}")
    if skipped:
        err.print(f"{len(skipped)} account(s) left out: a passwd-file cannot carry them")
        _print_errors(skipped)
        sys.exit(EX_DATAERR)


# --------------------------------------------------------------------------- pw


@main.command("pw")
@click.option("-s", "--scheme", default=None, help="Scheme to generate (default: config).")
@click.option("-p", "--plaintext", default=None, help="The password (else prompted).")
@click.option("-r", "--rounds", type=int, default=None, help="Rounds / cost.")
@click.option("-u", "--user", default="", help="Username (needed by DIGEST-MD5).")
@click.option("-t", "--test", "test_hash", default=None, help="Verify PLAINTEXT against HASH.")
@click.option("-l", "--list", "list_schemes", is_flag=True, help="List the schemes.")
@click.option("-V", "--reverse-verify", is_flag=True, help="Verify the new hash before printing.")
@click.pass_context
def pw(
    ctx: click.Context,
    scheme: str | None,
    plaintext: str | None,
    rounds: int | None,
    user: str,
    test_hash: str | None,
    list_schemes: bool,
    reverse_verify: bool,
) -> None:
    """Generate or verify a password hash, with doveadm pw's conventions and exit codes."""
    if list_schemes:
        click.echo(" ".join(sorted(schemes.SCHEMES)))
        return
    cfg = _config(ctx)
    # Everything that can be refused is checked before the password prompt.
    if test_hash is not None:
        try:
            stored = schemes.parse(test_hash, default_scheme=cfg.passwords.default_scheme)
        except UnknownScheme as exc:
            fail_doveadm(str(exc), EX_USAGE)
        name = stored.scheme
    else:
        name = (scheme or cfg.passwords.scheme).upper()
    _need_user(name, user)
    if plaintext is None:
        plaintext = click.prompt(
            "Enter password" if test_hash else "Enter new password",
            hide_input=True,
            confirmation_prompt=test_hash is None and "Retype new password",
        )
    password = plaintext.encode("utf-8")
    if test_hash is not None:
        try:
            ok = schemes.verify(password, stored, user=user)
        except SchemeError as exc:
            fail_doveadm(str(exc))
        if not ok:
            fail_doveadm("reverse password verification check failed: Password mismatch")
        click.echo(f"{test_hash} (verified)")
        return
    from mailwarden.auth.passwords import policy_from_config  # noqa: PLC0415 - keeps pw lean

    value = schemes.generate(
        password, name, user=user, rounds=rounds, policy=policy_from_config(cfg.passwords)
    )
    if reverse_verify and not schemes.verify(password, schemes.parse(value), user=user):
        fail_doveadm("reverse password verification check failed: Password mismatch")
    click.echo(f"{value} (verified)" if reverse_verify else value)


def fail_doveadm(message: str, code: int = EX_TEMPFAIL) -> NoReturn:
    """doveadm's i_fatal(): 'Fatal: ...' on stderr and exit 75.

    One deliberate difference: an unknown scheme is a usage error (2) here, as in
    every other command (doveadm pw exits 75 for it)."""
    click.echo(f"Fatal: {message}", err=True)
    sys.exit(code)


def _need_user(scheme: str, user: str) -> None:
    """Exit 2 for an unknown scheme; 75, as doveadm pw, when ``scheme`` is salted with
    the username (DIGEST-MD5) and no ``-u`` was given."""
    try:
        needed = schemes.needs_user(scheme)
    except UnknownScheme:
        fail_doveadm(f"Unknown scheme: {scheme}", EX_USAGE)
    if needed and not user:
        fail_doveadm(f"{scheme.partition('.')[0]}: username not given (use -u USER)")


# --------------------------------------------------------------------------- auth


@main.group()
def auth() -> None:
    """Ask the engine, in-process, what it would answer."""


@auth.command("test")
@click.argument("username")
@click.argument("password", required=False)
@click.option("--service", "-s", default="imap", show_default=True)
@click.option("--rip", default=None, help="Remote IP of the simulated client.")
@click.option("--lip", default=None, help="Local IP of the simulated server.")
@click.option("--master", "-M", default=None, help="Log in as USERNAME with this master user.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
def auth_test(
    ctx: click.Context,
    username: str,
    password: str | None,
    service: str,
    rip: str | None,
    lip: str | None,
    master: str | None,
    password_stdin: bool,
) -> None:
    """Check a login like 'doveadm auth test': exit 0 accepted, 77 refused, 75 temporary."""
    if password_stdin:
        secret = sys.stdin.buffer.readline().rstrip(b"\r\n")
    elif password is not None:
        secret = password.encode()
    else:
        secret = click.prompt("Password", hide_input=True).encode()
    attempt = AuthAttempt(
        username=master if master else username,
        authzid=username if master else None,
        credentials=Password(secret),
        service=service,
        remote_ip=rip,
        local_ip=lip,
        frontend="cli",
    )

    async def go(app: App) -> tuple[Any, Any]:
        return await authenticate_and_describe(app, attempt, service)

    outcome, record = run_with_app(ctx, go, guard_via_daemon=True)
    match outcome:
        case Accepted():
            click.echo(f"passdb: {username} auth succeeded")
            click.echo("extra fields:")
            click.echo(f"  user={outcome.user}")
            if outcome.master_user:
                click.echo(f"  master_user={outcome.master_user}")
            for key, value in outcome.passdb_fields.items():
                click.echo(f"  {key}={value}" if value else f"  {key}")
            if isinstance(record, UserRecord):
                click.echo("userdb extra fields:")
                for key, value in record.fields.items():
                    click.echo(f"  {key}={value}")
        case Denied():
            click.echo(f"passdb: {username} auth failed", err=True)
            if outcome.message:
                click.echo(f"extra fields:\n  reason={outcome.message}", err=True)
            sys.exit(EX_NOPERM)
        case Unavailable():
            click.echo(f"passdb: {username} auth temporarily failed: {outcome.detail}", err=True)
            sys.exit(EX_TEMPFAIL)


@auth.command("lookup")
@click.argument("username")
@click.option("--service", "-s", default="imap", show_default=True)
@click.pass_context
def auth_lookup(ctx: click.Context, username: str, service: str) -> None:
    """Print the userdb fields of a user: exit 0, 67 not found, 75 temporary."""

    async def go(app: App) -> Any:
        return await app.engine.lookup(username, service=service)

    result = run_with_app(ctx, go)
    match result:
        case UserRecord():
            click.echo(f"userdb: {result.user}")
            for key, value in result.fields.items():
                click.echo(f"  {key:<10}: {value}")
        case NotFound():
            click.echo(f"userdb lookup: user {username} doesn't exist", err=True)
            sys.exit(EX_NOUSER)
        case Unavailable():
            click.echo(f"userdb lookup failed: {result.detail}", err=True)
            sys.exit(EX_TEMPFAIL)


# --------------------------------------------------------------------------- LDIF and migrate


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

    async def go(app: App) -> list[Account]:
        return [a async for a in _all_accounts(app.directory)]

    accounts = run_with_app(ctx, go)
    skipped: list[tuple[str, str]] = []
    with click.open_file(file, "w", encoding="utf-8") as fh:
        writer = ldif.LDIFWriter(fh)
        for account in accounts:
            try:
                dn, entry = mapping.entry_of(account, base)
            except AccountError as exc:
                skipped.append((account.uid, str(exc)))
                continue
            writer.unparse(dn, entry)
    err.print(f"exported {len(accounts) - len(skipped)} account(s), {len(skipped)} skipped")
    _print_errors(skipped)


@main.command("migrate")
@click.option(
    "--to",
    "target_config",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Config file of the directory to copy into (e.g. one with backend = ldap).",
)
@click.option("--replace", is_flag=True, help="Overwrite accounts that exist (default: skip).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_context
def migrate(ctx: click.Context, target_config: str, replace: bool, quiet: bool) -> None:
    """Copy every account from this config's directory into another's (SQLite <-> LDAP)."""
    try:
        target = config_mod.load(target_config)
    except ConfigError as exc:
        fail(str(exc), EX_CONFIG)

    async def go(app: App) -> list[Account]:
        return [a async for a in _all_accounts(app.directory)]

    accounts = run_with_app(ctx, go)
    errors: list[tuple[str, str]] = []
    target_ctx = click.Context(migrate, obj={**ctx.obj, "config": target})
    report = _copy_accounts(target_ctx, accounts, replace=replace, quiet=quiet, errors=errors)
    out.print(
        f"migrated {len(accounts)} account(s): {report['created']} created, "
        f"{report['replaced']} replaced, {report['skipped']} existing skipped, "
        f"{len(errors)} refused"
    )
    _print_errors(errors)


async def _all_accounts(directory: Directory) -> AsyncIterator[Account]:
    async for uid in directory.iterate():
        account = await directory.get(uid)
        if account is not None:
            yield account


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
        progress = Progress(
            TextColumn("copying"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=quiet or not err.is_terminal,
        )
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


# --------------------------------------------------------------------------- checkpassword


@main.command(
    "checkpassword",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.argument("subprogram", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def checkpassword_cmd(ctx: click.Context, subprogram: tuple[str, ...]) -> None:
    """DJB checkpassword: login\\0password\\0timestamp\\0 on fd 3, then exec SUBPROGRAM.

    Exit 1 wrong login, 2 misuse, 111 temporary failure (also for a bad config
    file); with AUTHORIZED=1 (Dovecot's userdb lookup) exit 3 for an unknown user.
    Asks the running daemon over its Dovecot sockets, or decides in-process when
    it is not running ([checkpassword] via). See docs/classic-interfaces.md.
    """
    # The mailwarden command runs this from mailwarden.entry without importing this
    # module; this command is the same code, for --help and for callers of cli.main.
    from mailwarden import checkpassword  # noqa: PLC0415

    checkpassword.run(ctx.obj[cliargs.CONFIG_PATH], list(subprogram))


# --------------------------------------------------------------------------- PAM helper

# The PAM return values the helper exits with (Linux-PAM's _pam_types.h). Debian's
# pam_exec turns every non-zero exit into PAM_SYSTEM_ERR; OpenPAM's pam_exec with
# return_prog_exit_status passes them through. See docs/pam.md.
PAM_SUCCESS = 0
PAM_SERVICE_ERR = 3
PAM_AUTH_ERR = 7
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10
PAM_ACCT_EXPIRED = 13


@main.command("pam", context_settings={"ignore_unknown_options": True})
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def pam_cmd(ctx: click.Context, options: tuple[str, ...]) -> None:
    """Helper for pam_exec.so expose_authtok: OPTIONS are service=a|b, quiet, debug.

    PAM_TYPE=auth verifies the password on stdin; PAM_TYPE=account checks the
    account's status and service switches without one.
    """
    services: tuple[str, ...] = ()
    quiet = debug = False
    for option in options:
        if option.startswith("service="):
            services = tuple(s.lower() for s in option.removeprefix("service=").split("|") if s)
        elif option == "quiet":
            quiet = True
        elif option == "debug":
            debug = True
        else:
            _pam_log(f"invalid option {option!r}")
            sys.exit(PAM_SERVICE_ERR)
    user = os.environ.get("PAM_USER", "")
    pam_type = os.environ.get("PAM_TYPE", "")
    service = os.environ.get("PAM_SERVICE", "") or "pam"
    if not user or pam_type not in ("auth", "account"):
        _pam_log(f"needs PAM_USER and PAM_TYPE auth or account (got {pam_type!r})")
        sys.exit(PAM_SERVICE_ERR)
    if debug:
        _pam_log(f"{pam_type} user={user!r} service={service} switches={'|'.join(services)}")
    if pam_type == "auth":
        # pam_exec writes the token followed by a NUL; a terminal user may add a newline.
        secret = sys.stdin.buffer.read(8192).rstrip(b"\0").rstrip(b"\r\n")
        code = _pam_auth(ctx, user, secret, service, services, quiet=quiet)
    else:
        code = _pam_account(ctx, user, service, services)
    if debug:
        _pam_log(f"{pam_type} user={user!r}: exit {code}")
    sys.exit(code)


def _pam_log(message: str) -> None:
    sys.stderr.write(f"mailwarden pam: {message}\n")


def _pam_auth(
    ctx: click.Context,
    user: str,
    secret: bytes,
    service: str,
    services: tuple[str, ...],
    *,
    quiet: bool,
) -> int:
    attempt = AuthAttempt(
        username=user,
        credentials=Password(secret),
        service=service,
        remote_ip=os.environ.get("PAM_RHOST") or None,
        frontend="pam",
        switches=services,  # pam_mapi's service=a|b: the engine's access policy decides
    )

    async def go(app: App) -> Any:
        outcome = await app.engine.authenticate(attempt)
        await app.engine.drain()
        return outcome

    try:
        outcome = run_with_app(ctx, go, guard_via_daemon=True)
    except SystemExit:
        return PAM_AUTHINFO_UNAVAIL
    match outcome:
        case Accepted():
            return PAM_SUCCESS
        case Denied():
            if not quiet or outcome.message is not None:
                _pam_log(f"authentication failure for {user!r}")
            return PAM_AUTH_ERR
        case Unavailable():
            _pam_log(f"temporary failure for {user!r}: {outcome.detail}")
            return PAM_AUTHINFO_UNAVAIL
    return PAM_SERVICE_ERR


def _pam_account(ctx: click.Context, user: str, service: str, services: tuple[str, ...]) -> int:
    async def go(app: App) -> Any:
        return await app.engine.account_state(user, service, switches=services)

    try:
        record = run_with_app(ctx, go)
    except SystemExit:
        return PAM_AUTHINFO_UNAVAIL
    match record:
        case UserRecord():
            return PAM_SUCCESS
        case Denied():
            if record.reason is DenyReason.DISABLED:
                _pam_log(f"{user}: account is disabled")
            else:
                _pam_log(f"{user}: service not enabled")
            return PAM_ACCT_EXPIRED
        case NotFound():
            return PAM_USER_UNKNOWN
        case Unavailable():
            _pam_log(f"temporary failure for {user!r}: {record.detail}")
            return PAM_AUTHINFO_UNAVAIL
    return PAM_SERVICE_ERR


# --------------------------------------------------------------------------- control socket


def _control(ctx: click.Context, op: str, **args: Any) -> Any:
    """Ask the running daemon over its control socket (``server.control_socket``)."""
    import socket  # noqa: PLC0415 - only the control commands need it

    from mailwarden.errors import ProtocolError  # noqa: PLC0415
    from mailwarden.protocols import control  # noqa: PLC0415

    cfg = _config(ctx)
    if not cfg.server.control_socket:
        fail("server.control_socket is not set: the daemon has no control socket", EX_CONFIG)
    path = resolve_path(cfg, cfg.server.control_socket)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(30)
            sock.connect(str(path))
            sock.sendall(control.request(op, **args))
            reader = control.LineReader()
            while True:
                data = sock.recv(65536)
                if not data:
                    fail("the daemon closed the control connection", EX_TEMPFAIL)
                lines = reader.receive_data(data)
                if lines:
                    return control.parse_reply(lines[0])
    except (FileNotFoundError, ConnectionRefusedError):
        fail(f"the daemon is not running (no control socket at {path})", EX_TEMPFAIL)
    except PermissionError:
        fail(f"not allowed to use {path} (run as the daemon's user or root)", EX_NOPERM)
    except OSError as exc:
        fail(f"control socket {path}: {exc.strerror or exc}", EX_TEMPFAIL)
    except ProtocolError as exc:
        fail(str(exc))


@main.group("guard")
def guard_group() -> None:
    """Brute-force protection: list and lift bans (asks the running daemon)."""


@guard_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def guard_list(ctx: click.Context, as_json: bool) -> None:
    """Banned networks and protected accounts, with their rule and time left.

    Columns: target, kind, rule, seconds left."""
    bans = _control(ctx, "guard.list")
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        cliout.write_json_array(bans, stream=sys.stdout)
        return
    table = fmt is cliout.Format.TABLE
    rows = (
        (b["target"], b["kind"], b["rule"], f"{b['ttl']} s" if table else str(b["ttl"]))
        for b in bans
    )
    columns = ("target", "kind", "rule", "expires in")
    cliout.write_rows(fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} ban(s)")


@guard_group.command("unblock")
@click.argument("target", required=False)
@click.option("--all", "everything", is_flag=True, help="Lift every ban.")
@click.pass_context
def guard_unblock(ctx: click.Context, target: str | None, everything: bool) -> None:
    """Lift a ban: a network as listed, an address, or account:UID."""
    if (target is None) != everything:
        fail("give a TARGET or --all", EX_USAGE)
    result = _control(ctx, "guard.unblock", target=target)
    out.print(f"lifted {result['lifted']} ban(s)")


@main.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """What the running daemon is doing: backends, counters, guard and cache."""
    result = _control(ctx, "status")
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.TABLE:
        result = {
            key: ", ".join(f"{k}={v}" for k, v in value.items())
            if isinstance(value, dict)
            else value
            for key, value in result.items()
        }
    cliout.write_record(fmt, result, stream=sys.stdout, console=out)


@main.group("cache")
def cache_group() -> None:
    """The verified-login cache of the running daemon."""


@cache_group.command("flush")
@click.argument("users", nargs=-1)
@click.pass_context
def cache_flush(ctx: click.Context, users: tuple[str, ...]) -> None:
    """Forget cached logins of USERS (all users when none is given)."""
    result = _control(ctx, "cache.flush", users=list(users) if users else None)
    out.print(f"flushed {result['flushed']} entries")


# --------------------------------------------------------------------------- mail gateway


@main.command("mailgate")
@click.argument("function", type=click.Choice(["ping", "chpasswd", "chpass", "change"]))
@click.pass_context
def mailgate_cmd(ctx: click.Context, function: str) -> None:
    """Act on one OpenPGP-signed mail read from stdin (run by the MTA; docs/mailgate.md).

    Exit 0 when the mail was handled or refused (unsigned and unverifiable mail is
    only logged, never answered or bounced); 75 when the directory, the replay cache
    or the MTA is unavailable, so that the MTA keeps the mail and retries.
    """
    from mailwarden.mailgate import mail  # noqa: PLC0415 - python-gnupg only here
    from mailwarden.mailgate.gateway import Function, Gateway  # noqa: PLC0415
    from mailwarden.mailgate.pgp import VerificationError, Verifier  # noqa: PLC0415
    from mailwarden.mailgate.replay import ReplayCache, Window  # noqa: PLC0415

    cfg = _config(ctx)
    setup_logging(cfg)
    mg = cfg.mailgate
    raw = sys.stdin.buffer.read(mg.max_message_bytes + 1)
    if os.environ.get("SENDER") == "":
        # Postfix's local(8) and Exim's pipe transport say the envelope sender is
        # null: a bounce or an auto-reply, which is never a request. Never answer it.
        err.print("mailgate: null envelope sender (a bounce): ignored")
        return
    try:
        verifier = Verifier(str(resolve_path(cfg, mg.gnupg_home)), gpg_binary=mg.gpg_binary)
    except VerificationError as exc:
        fail(f"mailgate.gnupg_home: {exc}", EX_TEMPFAIL)
    control_socket = (
        str(resolve_path(cfg, cfg.server.control_socket)) if cfg.server.control_socket else ""
    )

    async def run(app: App) -> None:
        replay = ReplayCache(
            resolve_path(cfg, mg.state_dir) / "replay.db",
            Window(max_age=mg.max_age, max_future=mg.max_future, keep=mg.replay_keep),
            timeout=cfg.directory.timeout,
        )
        try:
            gateway = Gateway(
                config=mg,
                directory=app.directory,
                admin=app.admin,
                verifier=verifier,
                replay=replay,
                send=lambda message: mail.send(mg, message),
                control_socket=control_socket,
            )
            # "chpass" is the original gateway's name for chpasswd.
            await gateway.handle(Function("chpasswd" if function == "chpass" else function), raw)
        finally:
            replay.close()

    try:
        run_with_app(ctx, run)
    except SystemExit as exc:
        # No database yet (78) or another refusal of run_with_app: keep the mail queued
        # too, as below; the message is already on stderr.
        if exc.code not in (None, 0, EX_TEMPFAIL):
            sys.exit(EX_TEMPFAIL)
        raise
    except Exception as exc:
        # An exit status other than 0 or 75 makes the MTA bounce the mail to its
        # (unverified) sender, with our output in it: keep the mail queued instead.
        import logging  # noqa: PLC0415

        logging.getLogger("mailwarden.mailgate").exception("mailgate failed")
        fail(f"mailgate: unexpected error: {exc}", EX_TEMPFAIL)


@main.command("ssh-keys")
@click.argument("user")
@click.pass_context
def ssh_keys_cmd(ctx: click.Context, user: str) -> None:
    """Print USER's SSH keys for sshd's AuthorizedKeysCommand (nothing if none or unknown)."""
    from mailwarden.mailgate import exports  # noqa: PLC0415

    for line in run_with_app(ctx, lambda app: exports.ssh_keys(app.directory, user)):
        click.echo(line)


@main.command("dns-zone")
@click.option("--serial", "serial_only", is_flag=True, help="Print only the serial.")
@click.pass_context
def dns_zone_cmd(ctx: click.Context, serial_only: bool) -> None:
    """Print the zone fragment of the accounts' DNS entries ([mailgate] dns_zone)."""
    from mailwarden.mailgate import exports  # noqa: PLC0415

    cfg = _config(ctx)
    records = run_with_app(ctx, lambda app: exports.zone_records(app.directory))
    state = resolve_path(cfg, cfg.mailgate.state_dir) / "dns-serial"
    try:
        serial = exports.next_serial(state, "\n".join(records))
    except OSError as exc:
        fail(f"{state}: {exc.strerror or exc}", EX_TEMPFAIL)
    if serial_only:
        click.echo(str(serial))
    else:
        click.echo(exports.zone_fragment(cfg.mailgate.dns_zone, records, serial), nl=False)


# checkpassword's arguments are its subprogram's, pam's pam_exec's; entry.py reads
# checkpassword's -c before the subcommand.
cliargs.accept_config_after_subcommand(main, skip=("checkpassword", "pam"))
