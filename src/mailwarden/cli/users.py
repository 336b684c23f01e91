"""``user ...``: create, change and inspect accounts."""

from __future__ import annotations

import sys

import click

from mailwarden import cliargs, cliout, schemes
from mailwarden.accounts import rules as accounts
from mailwarden.accounts.rules import account_to_json
from mailwarden.app import (
    App,
)
from mailwarden.cli.common import (
    EX_NOUSER,
    EX_USAGE,
    _config,
    _format,
    fail,
    main,
    out,
    read_new_password,
    run_with_app,
)
from mailwarden.errors import (
    AccountError,
)
from mailwarden.history.base import MAX_ROWS, LoginEvent, event_to_json, when
from mailwarden.model import (
    Account,
    AccountStatus,
)

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
@click.option(
    "--limit", default=0, show_default=True, help="Stop after this many accounts (0: all)."
)
@cliargs.format_option
@click.pass_context
def user_list(ctx: click.Context, pattern: str, as_json: bool, limit: int) -> None:
    """List accounts whose uid or an address matches PATTERN (* and ? wildcards).

    Columns: uid, mail, status, mail host, services switched off (comma list).
    Accounts are listed in uid order as the directory reads them, a page at a
    time: into a pipe, a million accounts stream in flat memory."""
    fmt = _format(ctx, as_json)

    async def write_json(app: App) -> None:
        writer = cliout.JsonArrayWriter(sys.stdout)
        async for account in app.admin.accounts(pattern):
            writer.add(account_to_json(account))
            if limit and writer.count >= limit:
                break
        writer.close()

    async def write_rows(app: App) -> None:
        columns = ("uid", "mail", "status", "mail host", "services off")
        writer = cliout.RowWriter(
            fmt, columns, stream=sys.stdout, console=out, footer="{count} account(s)"
        )
        async for item in app.admin.listing(pattern):
            writer.add(
                (
                    item.uid,
                    item.mail or "",
                    item.status.value,
                    item.mail_host or "",
                    ",".join(item.services_off),
                )
            )
            if limit and writer.count >= limit:
                break
        writer.close()

    run_with_app(ctx, write_json if fmt is cliout.Format.JSON else write_rows)


@user.command("set")
@click.argument("uid")
@click.argument("assignments", nargs=-1, required=True, metavar="FIELD=VALUE...")
@click.pass_context
def user_set(ctx: click.Context, uid: str, assignments: tuple[str, ...]) -> None:
    """Change fields: mail, home, mail_location, uid_number, gid_number, quota_bytes,
    quota_messages, mail_host, pgp_fingerprint, status, master, alternate_addresses,
    allow_nets (comma lists), service.NAME=on|off, passdb.KEY, userdb.KEY,
    profile.FIELD, app_passwords_only. An empty VALUE clears the field."""
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


@user.command("history")
@click.argument("uid")
@click.option("--limit", default=50, show_default=True, help="Show at most this many logins.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def user_history(ctx: click.Context, uid: str, limit: int, as_json: bool) -> None:
    """UID's recent logins, newest first (docs/history.md). Columns: time (UTC),
    front end, service, address, result, credential (an app password by name)."""
    if not 1 <= limit <= MAX_ROWS:
        fail(f"--limit: from 1 to {MAX_ROWS}", EX_USAGE)

    async def go(app: App) -> list[LoginEvent] | None:
        account = await app.admin.show(uid)
        recorder = app.engine.history
        if recorder is None:
            return None
        return await recorder.recent(account.uid, limit=limit)

    found = run_with_app(ctx, go)
    if found is None:
        fail("no login history is kept (history.enabled is false)")
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        cliout.write_json_array((event_to_json(e) for e in found), stream=sys.stdout)
        return
    columns = ("time", "frontend", "service", "address", "result", "credential")
    rows = (
        (
            when(e.at),
            e.frontend,
            e.service,
            e.remote_ip or "",
            e.result.value,
            e.credential.value + (f" {e.app_password}" if e.app_password else ""),
        )
        for e in found
    )
    cliout.write_rows(fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} login(s)")
