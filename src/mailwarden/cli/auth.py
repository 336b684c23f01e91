"""``pw``, ``auth test``, ``auth lookup`` and ``user-lookup``: hashes, and what a login
or a lookup gets, in-process or through a running server's socket (``-a``), with
doveadm's options, output and exit codes (the conventions: cli/doveadm.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, assert_never

import click

from mailwarden import schemes
from mailwarden.app import (
    App,
    authenticate_and_describe,
)
from mailwarden.cli import doveadm
from mailwarden.cli.common import (
    EX_NOPERM,
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
    Denied,
    LookupOutcome,
    NotFound,
    Unavailable,
    UserRecord,
)
from mailwarden.protocols import dovecot_libauth as libauth
from mailwarden.protocols.dovecot_common import stored

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

_X_HELP = "Auth info as doveadm's -x: " + ", ".join(doveadm.X_KEYS) + " (repeatable)."
_DEFAULT_SERVICE = "imap"


@main.group()
def auth() -> None:
    """Ask what a login or a lookup gets: in-process, or through the daemon's socket (-a)."""


@auth.command("test")
@click.argument("username")
@click.argument("password", required=False)
@click.option("-x", "auth_info", multiple=True, metavar="KEY=VALUE", help=_X_HELP)
@click.option(
    "-a",
    "--socket",
    "socket_path",
    default=None,
    help="Log in through this auth-client socket of a running server, as doveadm does.",
)
@click.option("--service", "-s", default=None, help="Same as -x service= (default: imap).")
@click.option("--rip", default=None, help="Same as -x rip=: the client's address.")
@click.option("--lip", default=None, help="Same as -x lip=: the server's address.")
@click.option("--master", "-M", default=None, help="Log in as USERNAME with this master user.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
def auth_test(
    ctx: click.Context,
    username: str,
    password: str | None,
    auth_info: tuple[str, ...],
    socket_path: str | None,
    service: str | None,
    rip: str | None,
    lip: str | None,
    master: str | None,
    password_stdin: bool,
) -> None:
    """Check a login like 'doveadm auth test': exit 0 accepted, 77 refused, 75 temporary."""
    aliases = [f"{k}={v}" for k, v in (("service", service), ("rip", rip), ("lip", lip)) if v]
    info = doveadm.parse_auth_info(
        [*aliases, *auth_info], doveadm.AuthInfo(service=_DEFAULT_SERVICE)
    )
    if password_stdin:
        secret = sys.stdin.buffer.readline().rstrip(b"\r\n")
    elif password is not None:
        secret = password.encode()
    else:
        secret = click.prompt("Password", hide_input=True).encode()
    if socket_path is not None:
        _test_via_socket(socket_path, info, username, secret, master)
        return
    attempt = info.attempt(username, secret, master)

    async def go(app: App) -> tuple[Any, Any]:
        return await authenticate_and_describe(app, attempt, info.service)

    outcome, record = run_with_app(ctx, go, guard_via_daemon=True)
    match outcome:
        case Accepted():
            fields: list[tuple[str, str | None]] = [("user", outcome.user)]
            if outcome.master_user:
                fields.append(("master_user", outcome.master_user))
            fields.extend((k, v or None) for k, v in outcome.passdb_fields.items())
            doveadm.print_login(username, ok=True, fields=fields)
            if isinstance(record, UserRecord):
                click.echo("userdb extra fields:")
                for key, value in record.fields.items():
                    click.echo(f"  {key}={value}")
        case Denied():
            reason = [("reason", outcome.message)] if outcome.message else []
            doveadm.print_login(username, ok=False, fields=reason)
            sys.exit(EX_NOPERM)
        case Unavailable():
            click.echo(f"passdb: {username} auth temporarily failed: {outcome.detail}", err=True)
            sys.exit(EX_TEMPFAIL)


def _test_via_socket(
    path: str, info: doveadm.AuthInfo, username: str, secret: bytes, master: str | None
) -> None:
    reply = doveadm.login_via_socket(path, info, username, secret, master)
    match reply:
        case libauth.AuthOk():
            doveadm.print_login(username, ok=True, fields=[("user", reply.user), *reply.fields])
        case libauth.AuthFail():
            named = [(k, v) for k, v in (("user", reply.user), ("code", reply.code)) if v]
            reason = [("reason", reply.reason)] if reply.reason is not None else []
            doveadm.print_login(username, ok=False, fields=[*named, *reason, *reply.fields])
            sys.exit(EX_TEMPFAIL if reply.temporary else EX_NOPERM)
        case libauth.AuthContinue():
            fail_doveadm("passdb expects SASL continuation")


def _lookup_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-x``, ``-a``, ``-f`` and ``--service`` of the two lookups."""
    for option in reversed(
        (
            click.option("-x", "auth_info", multiple=True, metavar="KEY=VALUE", help=_X_HELP),
            click.option(
                "-a",
                "--socket",
                "socket_path",
                default=None,
                help="Ask this auth-userdb (or auth-master) socket of a running server.",
            ),
            click.option("-f", "--field", default=None, help="Print only this field's value."),
            click.option(
                "--service", "-s", default=None, help="Same as -x service= (default: imap)."
            ),
        )
    ):
        fn = option(fn)
    return fn


@auth.command("lookup")
@click.argument("usernames", nargs=-1, required=True, metavar="USER...")
@_lookup_options
@click.pass_context
def auth_lookup(
    ctx: click.Context,
    usernames: tuple[str, ...],
    auth_info: tuple[str, ...],
    socket_path: str | None,
    field: str | None,
    service: str | None,
) -> None:
    """Print the passdb entry of each USER as 'doveadm auth lookup' does: user= and the
    passdb extra fields (never the password). Exit 0, 67 not found, 75 temporary."""
    info = _info(auth_info, service)
    _lookups(ctx, usernames, info, passdb=True, socket_path=socket_path, field=field)


@main.command("user-lookup")
@click.argument("usernames", nargs=-1, required=True, metavar="USER...")
@_lookup_options
@click.pass_context
def user_lookup(
    ctx: click.Context,
    usernames: tuple[str, ...],
    auth_info: tuple[str, ...],
    socket_path: str | None,
    field: str | None,
    service: str | None,
) -> None:
    """Print the userdb fields of each USER (home, mail, uid, gid, quota...) as
    'doveadm user -u' does; -f FIELD prints one value. Exit 0, 67 not found, 75 temporary."""
    info = _info(auth_info, service)
    _lookups(ctx, usernames, info, passdb=False, socket_path=socket_path, field=field)


def _info(auth_info: tuple[str, ...], service: str | None) -> doveadm.AuthInfo:
    """The ``-x`` items after the ``--service`` alias (a later one wins)."""
    aliases = [f"service={service}"] if service else []
    return doveadm.parse_auth_info(
        [*aliases, *auth_info], doveadm.AuthInfo(service=_DEFAULT_SERVICE)
    )


def _lookups(
    ctx: click.Context,
    usernames: tuple[str, ...],
    info: doveadm.AuthInfo,
    *,
    passdb: bool,
    socket_path: str | None,
    field: str | None,
) -> None:
    if socket_path is not None:
        replies = [
            doveadm.lookup_via_socket(socket_path, info, u, passdb=passdb) for u in usernames
        ]
    else:

        async def go(app: App) -> list[LookupOutcome]:
            if passdb:
                return [await app.engine.passdb_lookup(u) for u in usernames]
            return [await app.engine.lookup(u, service=info.service) for u in usernames]

        replies = [_as_reply(o) for o in run_with_app(ctx, go)]
    kind = "passdb" if passdb else "userdb"
    code = 0
    for i, (asked, reply) in enumerate(zip(usernames, replies, strict=True)):
        if i:
            click.echo()  # doveadm separates the users' answers by an empty line
        match reply:
            case libauth.UserFound() | libauth.PassFound():
                doveadm.print_found(kind, asked, reply.user, reply.fields, field=field)
            case libauth.UserNotFound():
                code = doveadm.not_found(kind, asked, field=field)
            case libauth.LookupFailed():
                code = doveadm.lookup_failed(kind, asked, reply.reason)
    if code:
        sys.exit(code)


def _as_reply(outcome: LookupOutcome) -> libauth.UserReply:
    """An in-process answer as the socket would carry it, so both print alike."""
    match outcome:
        case UserRecord():
            return libauth.UserFound(user=outcome.user, fields=tuple(stored(outcome.fields)))
        case NotFound():
            return libauth.UserNotFound()
        case Unavailable():
            return libauth.LookupFailed(reason=outcome.detail)
        case _:
            assert_never(outcome)
