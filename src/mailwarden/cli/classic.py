"""``checkpassword`` and ``pam``: the one-shot classic interfaces (docs/classic-interfaces.md)."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from mailwarden import cliargs
from mailwarden.app import (
    App,
)
from mailwarden.cli.common import (
    main,
    run_with_app,
)
from mailwarden.model import (
    Accepted,
    AuthAttempt,
    Denied,
    DenyReason,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)

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
