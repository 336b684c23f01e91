"""``user app-password ...``: make, list and revoke an account's app passwords, and the
switch that leaves mail services to them (docs/credentials.md, "App passwords").

Every change is one call on :class:`~mailwarden.accounts.edit.AccountAdmin`. A new
app password's value is printed once, alone on standard output (so that a script
can take it); what it is goes to standard error.
"""

from __future__ import annotations

import datetime
import sys

import click

from mailwarden import cliargs, cliout
from mailwarden.accounts.apppasswords import parse_expiry
from mailwarden.accounts.rules import app_password_to_json, parse_bool
from mailwarden.cli.common import _format, err, fail, out, run_with_app
from mailwarden.cli.users import user
from mailwarden.errors import AccountError
from mailwarden.model import AppPassword


@user.group("app-password")
def app_password() -> None:
    """App passwords: one per device or program, for mail services only."""


def _when(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@app_password.command("add")
@click.argument("uid")
@click.option("--name", required=True, help='What it is for ("phone", "laptop Thunderbird").')
@click.option(
    "--services",
    default="",
    metavar="LIST",
    help="Comma list of services it may use (imap,pop3,smtp,sieve...; default: all mail).",
)
@click.option(
    "--expires",
    default=None,
    metavar="DATE",
    help="YYYY-MM-DD (the end of that day, UTC) or an ISO 8601 time; default: never.",
)
@click.pass_context
def app_password_add(
    ctx: click.Context, uid: str, name: str, services: str, expires: str | None
) -> None:
    """Make an app password for UID and print it (once: it is stored only as a digest)."""
    try:
        expiry = parse_expiry(expires) if expires else None
    except AccountError as exc:
        fail(str(exc))
    wanted = [s for s in services.split(",") if s.strip()]
    new = run_with_app(
        ctx, lambda app: app.admin.add_app_password(uid, name=name, services=wanted, expires=expiry)
    )
    app = new.app_password
    err.print(
        f"app password {app.id} ({app.name}) of {uid}, for "
        f"{','.join(app.services) or 'every mail service'}"
        f"{', until ' + _when(app.expires) if app.expires is not None else ''}; "
        "shown only now:",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.write(new.value + "\n")
    sys.stdout.flush()


@app_password.command("list")
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (--format json).")
@cliargs.format_option
@click.pass_context
def app_password_list(ctx: click.Context, uid: str, as_json: bool) -> None:
    """List UID's app passwords (never their values). Columns: id, name, services,
    expires, created, last used, last service, last address."""
    account = run_with_app(ctx, lambda app: app.admin.show(uid))
    fmt = _format(ctx, as_json)
    if fmt is cliout.Format.JSON:
        writer = cliout.JsonArrayWriter(sys.stdout)
        for app in account.app_passwords:
            writer.add(app_password_to_json(app))
        writer.close()
        return
    columns = (
        "id",
        "name",
        "services",
        "expires",
        "created",
        "last used",
        "last service",
        "last address",
    )
    rows = cliout.RowWriter(
        fmt, columns, stream=sys.stdout, console=out, footer="{count} app password(s)"
    )
    for app in account.app_passwords:
        rows.add(_row(app))
    rows.close()


def _row(app: AppPassword) -> tuple[str, ...]:
    use = app.last_used
    return (
        app.id,
        app.name,
        ",".join(app.services) or "*",
        _when(app.expires),
        _when(app.created),
        _when(use.at) if use is not None else "",
        use.service if use is not None else "",
        (use.remote_ip or "") if use is not None else "",
    )


@app_password.command("revoke")
@click.argument("uid")
@click.argument("app_password_id", metavar="ID|NAME")
@click.pass_context
def app_password_revoke(ctx: click.Context, uid: str, app_password_id: str) -> None:
    """Revoke one of UID's app passwords, by id or name: refused from the next login
    on, on every node."""
    gone = run_with_app(ctx, lambda app: app.admin.revoke_app_password(uid, app_password_id))
    out.print(
        f"revoked app password {gone.id} ({gone.name}) of {uid}", markup=False, soft_wrap=True
    )


@app_password.command("only")
@click.argument("uid")
@click.argument("state", metavar="on|off")
@click.pass_context
def app_password_only(ctx: click.Context, uid: str, state: str) -> None:
    """on: mail services accept only UID's app passwords, and the main password opens
    the web page alone; off: the main password works everywhere again."""
    try:
        only = parse_bool(state, "state")
    except AccountError as exc:
        fail(str(exc), 2)
    run_with_app(ctx, lambda app: app.admin.set_app_passwords_only(uid, only))
    what = "app passwords only for mail" if only else "main password for mail too"
    out.print(f"{uid}: {what}", markup=False, soft_wrap=True)
