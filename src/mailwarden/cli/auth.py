"""``pw`` and ``auth test``/``auth lookup``: hashes, and what the engine would answer."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from mailwarden import schemes
from mailwarden.app import (
    App,
    authenticate_and_describe,
)
from mailwarden.cli.common import (
    EX_NOPERM,
    EX_NOUSER,
    EX_TEMPFAIL,
    EX_USAGE,
    _config,
    main,
    run_with_app,
)
from mailwarden.errors import (
    SchemeError,
    UnknownScheme,
)
from mailwarden.model import (
    Accepted,
    AuthAttempt,
    Denied,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)

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
    value = schemes.generate(
        password, name, user=user, rounds=rounds, policy=cfg.passwords.hash_policy()
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
