"""``admin ...``, ``token ...``, ``audit`` and ``user reset-totp``: administrators, API
tokens, second factors and the audit log, in the state store (accounts/staff.py).

The command line is trusted as the ``admin`` role: whoever can read the config and
write the state file is root for mailwarden anyway. Every change is recorded in
the audit log as ``cli:<unix user>``.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from mailwarden import cliargs, cliout
from mailwarden.accounts.audit import acting, cli_actor
from mailwarden.accounts.staff import ADMIN_OWNER, USER_OWNER, Staff, cli_principal
from mailwarden.cli.common import (
    EX_NOUSER,
    EX_TEMPFAIL,
    EX_USAGE,
    _config,
    _format,
    fail,
    main,
    out,
    read_new_password,
)
from mailwarden.cli.users import user
from mailwarden.errors import (
    AccountError,
    AccountNotFound,
    NotPermitted,
    ProtocolError,
    TemporaryFailure,
)
from mailwarden.hashing.pool import Hasher
from mailwarden.protocols.staff_api import entry_json, parse_expiry, parse_since
from mailwarden.state.base import AuditQuery
from mailwarden.state.opening import open_state

T = TypeVar("T")


def run_with_staff(ctx: click.Context, fn: Callable[[Staff], Awaitable[T]]) -> T:
    """Open the state store, run ``fn`` as ``cli:<unix user>``, close; errors to exits."""
    config = _config(ctx)

    async def go() -> T:
        hasher = Hasher(workers=1)
        staff = Staff.for_site(open_state(config), hasher, config.http)
        try:
            with acting(cli_actor()):
                return await fn(staff)
        finally:
            await staff.store.close()
            hasher.close()
            await hasher.wait_closed()

    try:
        return asyncio.run(go())
    except TemporaryFailure as exc:
        fail(f"temporary failure: {exc}", EX_TEMPFAIL)
    except AccountNotFound as exc:
        fail(str(exc), EX_NOUSER)
    except (AccountError, NotPermitted) as exc:
        fail(str(exc))


def record_cli_change(
    ctx: click.Context, action: str, target: str, fields: tuple[str, ...]
) -> None:
    """Write a change another path made (the daemon, over the control socket) to the
    audit log as this command's."""

    async def go(staff: Staff) -> None:
        await staff.audit.record(action, target, fields)

    run_with_staff(ctx, go)


def _when(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- administrators


@main.group("admin")
def admin_group() -> None:
    """Administrators of the web page and the admin API (name, password, TOTP, role)."""


@admin_group.command("add")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["admin", "helpdesk"]), default="admin", show_default=True
)
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
def admin_add(ctx: click.Context, name: str, role: str, password_stdin: bool) -> None:
    """Create an administrator; their first web sign-in sets up two-factor sign-in."""
    password = read_new_password(password_stdin)
    actor = cli_actor()
    run_with_staff(ctx, lambda s: s.add_admin(cli_principal(actor), name, password, role))
    out.print(f"created administrator {name} ({role})")


@admin_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def admin_list(ctx: click.Context, as_json: bool) -> None:
    """Administrators. Columns: name, role, two-factor (on/off), created."""

    async def go(staff: Staff) -> list[dict[str, object]]:
        return [
            {
                "name": a.name,
                "role": a.role,
                "totp": await staff.factor_confirmed(ADMIN_OWNER + a.name),
                "created": _when(a.created),
            }
            for a in await staff.admins()
        ]

    found = run_with_staff(ctx, go)
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        cliout.write_json_array(found, stream=sys.stdout)
        return
    rows = (
        (str(a["name"]), str(a["role"]), "on" if a["totp"] else "off", str(a["created"]))
        for a in found
    )
    columns = ("name", "role", "two-factor", "created")
    cliout.write_rows(
        fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} administrator(s)"
    )


@admin_group.command("remove")
@click.argument("name")
@click.pass_context
def admin_remove(ctx: click.Context, name: str) -> None:
    """Remove an administrator (never the last one with the admin role)."""
    actor = cli_actor()
    run_with_staff(ctx, lambda s: s.remove_admin(cli_principal(actor), name))
    out.print(f"removed administrator {name}")


@admin_group.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "helpdesk"]))
@click.pass_context
def admin_set_role(ctx: click.Context, name: str, role: str) -> None:
    """Give an administrator the admin or the helpdesk role."""
    actor = cli_actor()
    run_with_staff(ctx, lambda s: s.set_role(cli_principal(actor), name, role))
    out.print(f"{name}: {role}")


@admin_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
def admin_passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set an administrator's password."""
    password = read_new_password(password_stdin)
    actor = cli_actor()
    run_with_staff(ctx, lambda s: s.set_admin_password(cli_principal(actor), name, password))
    out.print(f"password of administrator {name} changed")


@admin_group.command("reset-totp")
@click.argument("name")
@click.pass_context
def admin_reset_totp(ctx: click.Context, name: str) -> None:
    """Remove an administrator's second factor: their next sign-in enrols a new one."""
    actor = cli_actor()

    async def go(staff: Staff) -> bool:
        if await staff.store.admin(name) is None:
            raise AccountNotFound(f"no administrator {name}")
        return await staff.reset_factor(cli_principal(actor), ADMIN_OWNER + name)

    done = run_with_staff(ctx, go)
    out.print(f"two-factor sign-in of {name} reset" if done else f"{name} had no second factor")


@user.command("reset-totp")
@click.argument("uid")
@click.pass_context
def user_reset_totp(ctx: click.Context, uid: str) -> None:
    """Remove an account holder's second factor for the web page."""
    actor = cli_actor()
    done = run_with_staff(ctx, lambda s: s.reset_factor(cli_principal(actor), USER_OWNER + uid))
    out.print(f"two-factor sign-in of {uid} reset" if done else f"{uid} had no second factor")


# --------------------------------------------------------------------------- API tokens


@main.group("token")
def token_group() -> None:
    """Named API tokens for the admin API (``Authorization: Bearer mwt_...``)."""


@token_group.command("add")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice(["read", "helpdesk", "admin"]),
    required=True,
    help="What it may do.",
)
@click.option(
    "--expires", default=None, help="When it stops working: 30d, 12h, or an ISO 8601 time."
)
@click.pass_context
def token_add(ctx: click.Context, name: str, scope: str, expires: str | None) -> None:
    """Create a token and print it once (only its digest is kept)."""
    expiry: float | None = None
    if expires is not None:
        try:
            expiry = parse_expiry(expires, time.time())
        except ProtocolError as exc:
            fail(str(exc).replace("since:", "--expires:"), EX_USAGE)
    actor = cli_actor()
    issued = run_with_staff(
        ctx, lambda s: s.create_token(cli_principal(actor), name, scope, expires=expiry)
    )
    out.print(issued.value, markup=False, highlight=False, soft_wrap=True)


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    """API tokens (never their values). Columns: name, scope, created by, created, expires."""
    found = run_with_staff(ctx, lambda s: s.tokens())
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        items = [
            {
                "name": t.name,
                "scope": t.scope,
                "created_by": t.created_by,
                "created": t.created,
                "expires": t.expires,
            }
            for t in found
        ]
        cliout.write_json_array(items, stream=sys.stdout)
        return
    rows = ((t.name, t.scope, t.created_by, _when(t.created), _when(t.expires)) for t in found)
    columns = ("name", "scope", "created by", "created", "expires")
    cliout.write_rows(fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} token(s)")


@token_group.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token: it stops working at once, on every node."""
    actor = cli_actor()
    run_with_staff(ctx, lambda s: s.revoke_token(cli_principal(actor), name))
    out.print(f"revoked token {name}")


# --------------------------------------------------------------------------- audit log


@main.command("audit")
@click.option("--user", "target", default=None, help="Only changes to this account (or target).")
@click.option(
    "--actor", default=None, help="Only changes by this actor (admin:NAME, cli:root ...)."
)
@click.option("--since", default=None, help="Only since: 7d, 12h, 30m, an ISO 8601 time.")
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def audit_cmd(
    ctx: click.Context,
    target: str | None,
    actor: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Who changed what, when and from where (field names only, never values).

    Columns: time, actor, action, target, fields, source."""
    if not 1 <= limit <= 10_000:
        fail("--limit: between 1 and 10000", EX_USAGE)
    try:
        start = None if since is None else parse_since(since, time.time())
    except ProtocolError as exc:
        fail(str(exc), EX_USAGE)
    query = AuditQuery(target=target, actor=actor, since=start, limit=limit)
    entries = run_with_staff(ctx, lambda s: s.audit.entries(query))
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        cliout.write_json_array((entry_json(e) for e in entries), stream=sys.stdout)
        return
    rows = (
        (_when(e.time), e.actor, e.action, e.target, ",".join(e.fields), e.source) for e in entries
    )
    columns = ("time", "actor", "action", "target", "fields", "source")
    cliout.write_rows(fmt, columns, rows, stream=sys.stdout, console=out, footer="{count} entries")
