"""``checkpassword`` and ``pam``: the one-shot classic interfaces (docs/classic-interfaces.md)."""

from __future__ import annotations

import os
import sys

import click

from mailwarden import cliargs
from mailwarden.cli.common import (
    main,
    run_with_app,
)
from mailwarden.errors import ProtocolError
from mailwarden.protocols import pam as pam_proto
from mailwarden.protocols.pam import PamCode

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

# The exit codes, for callers that compare with them (protocols/pam.py has the rest).
PAM_SUCCESS = PamCode.SUCCESS
PAM_SERVICE_ERR = PamCode.SERVICE_ERR
PAM_AUTH_ERR = PamCode.AUTH_ERR
PAM_AUTHINFO_UNAVAIL = PamCode.AUTHINFO_UNAVAIL
PAM_USER_UNKNOWN = PamCode.USER_UNKNOWN
PAM_ACCT_EXPIRED = PamCode.ACCT_EXPIRED


@main.command("pam", context_settings={"ignore_unknown_options": True})
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def pam_cmd(ctx: click.Context, options: tuple[str, ...]) -> None:
    """Helper for pam_exec.so expose_authtok: OPTIONS are service=a|b, quiet, debug.

    PAM_TYPE=auth verifies the password on stdin; PAM_TYPE=account checks the
    account's status and service switches without one (docs/pam.md).
    """
    from mailwarden.frontends import pam  # noqa: PLC0415 - the engine only for this command

    try:
        request = pam_proto.parse(options, os.environ)
    except ProtocolError as exc:
        _pam_log(str(exc))
        sys.exit(PamCode.SERVICE_ERR)
    if request.debug:
        _pam_log(
            f"{request.phase} user={request.user!r} service={request.service} "
            f"switches={'|'.join(request.switches)}"
        )
    token = sys.stdin.buffer.read(pam_proto.MAX_TOKEN) if request.phase == "auth" else b""
    try:
        code, line = run_with_app(
            ctx,
            lambda app: pam.answer(app.engine, request, token),
            guard_via_daemon=request.phase == "auth",
        )
    except SystemExit:
        code, line = PamCode.AUTHINFO_UNAVAIL, None
    if line is not None:
        _pam_log(line)
    if request.debug:
        _pam_log(f"{request.phase} user={request.user!r}: exit {int(code)}")
    sys.exit(int(code))


def _pam_log(message: str) -> None:
    sys.stderr.write(f"mailwarden pam: {message}\n")
