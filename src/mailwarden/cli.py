"""The ``mailwarden`` command line (with app.py, the only place that wires classes).

Exit codes follow sysexits where a caller may script around them: 0 success,
1 a refused request (account exists, bad field), 2 usage, 67 no such user,
71 a listener could not be opened, 75 temporary failure (directory down) and
doveadm's fatal errors, 77 login refused (``auth test``), 78 configuration error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailwarden import __version__, accounts, passwdfile, schemes
from mailwarden import config as config_mod
from mailwarden.app import App, running_app, serve, setup_logging
from mailwarden.config import Config
from mailwarden.directories.base import Directory
from mailwarden.errors import (
    AccountError,
    AccountExists,
    AccountNotFound,
    ConfigError,
    SchemeError,
    TemporaryFailure,
)
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    Denied,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)

EX_USAGE = 2
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
    cfg: Config = ctx.obj["config"]
    return cfg


def run_with_app(
    ctx: click.Context, fn: Callable[[App], Awaitable[T]], *, create: bool = False
) -> T:
    """Open the directory and engine, run ``fn``, close everything; map errors to exits."""

    async def main() -> T:
        async with running_app(_config(ctx), create=create) as app:
            return await fn(app)

    try:
        return asyncio.run(main())
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
@click.version_option(__version__, prog_name="mailwarden")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """mailwarden: authentication and accounts for a whole mail system."""
    try:
        cfg = config_mod.load(config_path)
    except ConfigError as exc:
        fail(str(exc), EX_CONFIG)
    ctx.obj = {"config": cfg}
    if ctx.invoked_subcommand != "serve":
        # Commands print their own results; only warnings and errors go to the log.
        cfg_for_log = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, level="warning"))
    else:
        cfg_for_log = cfg
    setup_logging(cfg_for_log)


# --------------------------------------------------------------------------- daemon


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Validate the configuration file without starting anything."""
    cfg = _config(ctx)
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
@click.pass_context
def serve_cmd(ctx: click.Context) -> None:
    """Run the daemon until SIGTERM/SIGINT."""
    try:
        asyncio.run(serve(_config(ctx)))
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


def _account_dict(account: Account) -> dict[str, Any]:
    """The account as plain JSON-able values; the password hash is never included."""
    d: dict[str, Any] = {}
    for f in dataclasses.fields(account):
        value = getattr(account, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        d[f.name] = value
    d["status"] = account.status.value
    d["password"] = "<set>" if account.password else ""
    d["profile"] = account.profile.as_dict()
    return d


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
    cfg = _config(ctx)
    if mail is None and "@" in uid:
        mail = uid
    base = Account(uid=uid, mail=mail, alternate_addresses=alternates)
    try:
        account = accounts.apply_assignments(base, assignments)
    except AccountError as exc:
        fail(str(exc))
    password = None if no_password else read_new_password(password_stdin)
    scheme_name = (scheme or cfg.passwords.scheme).upper()
    if scheme_name not in schemes.SCHEMES:
        fail(f"unknown scheme {scheme_name}", EX_USAGE)

    async def go(app: App) -> None:
        stored = ""
        if password is not None:
            stored = await app.hasher.generate(
                password, scheme_name, user=uid, policy=app.engine.policy
            )
        await app.directory.create(dataclasses.replace(account, password=stored))

    run_with_app(ctx, go)
    out.print(f"created {uid}")


@user.command("del")
@click.argument("uid")
@click.pass_context
def user_del(ctx: click.Context, uid: str) -> None:
    """Delete an account for good (use 'disable' to keep it)."""

    async def go(app: App) -> bool:
        return await app.directory.delete(uid)

    if not run_with_app(ctx, go):
        fail(f"no account {uid}", EX_NOUSER)
    out.print(f"deleted {uid}")


@user.command("show")
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def user_show(ctx: click.Context, uid: str, as_json: bool) -> None:
    """Show one account (the password hash is never printed)."""

    async def go(app: App) -> Account | None:
        return await app.directory.get(uid) or await app.directory.find(uid)

    account = run_with_app(ctx, go)
    if account is None:
        fail(f"no account {uid}", EX_NOUSER)
    data = _account_dict(account)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        if value in (None, "", [], {}) or (value is False and key != "master"):
            continue
        table.add_row(
            f"[bold]{key}[/bold]",
            json.dumps(value) if isinstance(value, dict | list) else str(value),
        )
    out.print(table)


@user.command("list")
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=100000, show_default=True)
@click.pass_context
def user_list(ctx: click.Context, pattern: str, as_json: bool, limit: int) -> None:
    """List accounts whose uid or an address matches PATTERN (* and ? wildcards)."""

    async def go(app: App) -> list[Account]:
        return await app.directory.search(pattern, limit=limit)

    found = run_with_app(ctx, go)
    if as_json:
        click.echo(json.dumps([_account_dict(a) for a in found], indent=2, sort_keys=True))
        return
    table = Table("uid", "mail", "status", "mail host", "services off")
    for a in found:
        off = ",".join(sorted(k for k, v in a.services.items() if not v))
        table.add_row(a.uid, a.mail or "", a.status.value, a.mail_host or "", off)
    out.print(table)
    out.print(f"{len(found)} account(s)")


async def _update(app: App, uid: str, change: Callable[[Account], Account]) -> Account:
    account = await app.directory.get(uid)
    if account is None:
        raise AccountNotFound(f"no account {uid}")
    new = change(account)
    await app.directory.replace(new)
    return new


@user.command("set")
@click.argument("uid")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.pass_context
def user_set(ctx: click.Context, uid: str, assignments: tuple[str, ...]) -> None:
    """Change fields: mail, home, mail_location, uid_number, gid_number, quota_bytes,
    quota_messages, mail_host, pgp_fingerprint, status, master, alternate_addresses,
    allow_nets (comma lists), service.NAME=on|off, passdb.KEY, userdb.KEY,
    profile.FIELD. An empty VALUE clears the field."""
    run_with_app(
        ctx, lambda app: _update(app, uid, lambda a: accounts.apply_assignments(a, assignments))
    )
    out.print(f"updated {uid}")


def _set_status(ctx: click.Context, uid: str, status: AccountStatus) -> None:
    run_with_app(
        ctx, lambda app: _update(app, uid, lambda a: dataclasses.replace(a, status=status))
    )
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
    scheme_name = (scheme or _config(ctx).passwords.scheme).upper()
    if scheme_name not in schemes.SCHEMES:
        fail(f"unknown scheme {scheme_name}", EX_USAGE)
    password = read_new_password(password_stdin)

    async def go(app: App) -> None:
        if await app.directory.get(uid) is None:
            raise AccountNotFound(f"no account {uid}")
        stored = await app.hasher.generate(
            password, scheme_name, user=uid, policy=app.engine.policy
        )
        if not await app.directory.set_password(uid, stored):
            raise AccountNotFound(f"no account {uid}")
        await app.engine.flush_cache([uid])

    run_with_app(ctx, go)
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

    async def write(directory: Directory, batch: list[tuple[int, Account]]) -> None:
        try:
            reports = [await directory.bulk_upsert([a for _, a in batch], replace=replace)]
        except AccountExists:
            # An address in this batch clashes with a stored account: write the batch
            # one by one so only the clashing lines are skipped, with their numbers.
            reports = []
            for lineno, account in batch:
                try:
                    reports.append(await directory.bulk_upsert([account], replace=replace))
                except AccountExists as exc:
                    errors.append((lineno, str(exc)))
        for report in reports:
            counts["created"] += report.created
            counts["replaced"] += report.replaced
            counts["skipped"] += report.skipped

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
        with stream as fh, progress:
            task = progress.add_task("import", total=total)

            def lines() -> Iterator[str]:
                for line in passwdfile.bounded_lines(fh):
                    progress.advance(task, len(line))
                    yield line

            batch: list[tuple[int, Account]] = []
            for lineno, item in passwdfile.read_accounts(lines()):
                if isinstance(item, Account):
                    batch.append((lineno, item))
                else:
                    errors.append((lineno, item.message))
                if len(batch) >= 5000:
                    await write(app.directory, batch)
                    batch = []
            if batch:
                await write(app.directory, batch)

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


@main.group("export")
def export_group() -> None:
    """Export accounts for another system."""


@export_group.command("passwd-file")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.pass_context
def export_passwd_file(ctx: click.Context, file: str) -> None:
    """Write every account as a Dovecot passwd-file line (to FILE or stdout)."""

    async def go(app: App) -> list[str]:
        lines = []
        async for uid in app.directory.iterate():
            account = await app.directory.get(uid)
            if account is not None:
                lines.append(passwdfile.format_account(account))
        return lines

    lines = run_with_app(ctx, go)
    text = "".join(line + "\n" for line in lines)
    if file == "-":
        sys.stdout.write(text)
    else:
        Path(file).write_text(text, encoding="utf-8", errors="surrogateescape")
        err.print(f"exported {len(lines)} account(s) to {file}")


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
    if plaintext is None:
        plaintext = click.prompt(
            "Enter password" if test_hash else "Enter new password",
            hide_input=True,
            confirmation_prompt=test_hash is None and "Retype new password",
        )
    password = plaintext.encode("utf-8")
    cfg = _config(ctx)
    if test_hash is not None:
        try:
            stored = schemes.parse(test_hash, default_scheme=cfg.passwords.default_scheme)
            ok = schemes.verify(password, stored, user=user)
        except SchemeError as exc:
            fail_doveadm(str(exc))
        if not ok:
            fail_doveadm("reverse password verification check failed: Password mismatch")
        click.echo(f"{test_hash} (verified)")
        return
    name = (scheme or cfg.passwords.scheme).upper()
    if name not in schemes.SCHEMES:
        fail_doveadm(f"Unknown scheme: {name}")
    from mailwarden.engine import policy_from_config  # noqa: PLC0415 - cheap, keeps pw lean

    value = schemes.generate(
        password, name, user=user, rounds=rounds, policy=policy_from_config(cfg)
    )
    if reverse_verify and not schemes.verify(password, schemes.parse(value), user=user):
        fail_doveadm("reverse password verification check failed: Password mismatch")
    click.echo(f"{value} (verified)" if reverse_verify else value)


def fail_doveadm(message: str) -> NoReturn:
    """doveadm's i_fatal(): 'Fatal: ...' on stderr and exit 75."""
    click.echo(f"Fatal: {message}", err=True)
    sys.exit(EX_TEMPFAIL)


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
        outcome = await app.engine.authenticate(attempt)
        record = (
            await app.engine.lookup(outcome.user, service=service)
            if isinstance(outcome, Accepted)
            else None
        )
        await app.engine.drain()
        return outcome, record

    outcome, record = run_with_app(ctx, go)
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
