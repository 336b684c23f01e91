"""The ``pam_exec`` helper's protocol, sans I/O: options, environment, token, exit codes.

What belongs here: how ``mailwarden pam`` is called by Linux-PAM's ``pam_exec.so
expose_authtok`` (docs/pam.md) and what it answers, as plain values. PAM puts the
request in the environment (``PAM_USER``, ``PAM_TYPE``, ``PAM_SERVICE``,
``PAM_RHOST``), the password on standard input followed by a NUL (``auth`` only),
and the module's arguments after the command (``service=a|b``, pam_mapi's OR-list of
service switches; ``quiet``; ``debug``). The answer is the exit status: a PAM
return value (Linux-PAM's ``_pam_types.h``). Debian's pam_exec turns every non-zero
status into PAM_SYSTEM_ERR; OpenPAM's with ``return_prog_exit_status`` passes them
through.

Deciding is the engine's (``Engine.authenticate`` for ``auth``,
``Engine.account_state`` for ``account``); frontends/pam.py asks it; cli/ only
dispatches. A malformed call is a :class:`~mailwarden.errors.ProtocolError`, which
the command answers with PAM_SERVICE_ERR.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, assert_never

from mailwarden.errors import ProtocolError
from mailwarden.model import (
    Accepted,
    AuthAttempt,
    AuthOutcome,
    Denied,
    DenyReason,
    NotFound,
    Password,
    Unavailable,
    UserRecord,
)

__all__ = ["MAX_TOKEN", "PamCode", "PamRequest", "account_answer", "auth_answer", "parse"]

#: The most of standard input read as the password (pam_exec's token and its NUL).
MAX_TOKEN = 8192


class PamCode(enum.IntEnum):
    """The PAM return values the helper exits with."""

    SUCCESS = 0
    SERVICE_ERR = 3
    AUTH_ERR = 7
    AUTHINFO_UNAVAIL = 9
    USER_UNKNOWN = 10
    ACCT_EXPIRED = 13


@dataclass(frozen=True, slots=True, kw_only=True)
class PamRequest:
    """One call of the helper, parsed."""

    user: str
    phase: Literal["auth", "account"]
    service: str
    switches: tuple[str, ...]  # pam_mapi's service=a|b (OR); empty: not asked
    remote_ip: str | None
    quiet: bool
    debug: bool

    def attempt(self, token: bytes) -> AuthAttempt:
        """The ``auth`` phase's login, from what pam_exec wrote on standard input (the
        token and a NUL; a person at a terminal may add a newline)."""
        return AuthAttempt(
            username=self.user,
            credentials=Password(token.rstrip(b"\0").rstrip(b"\r\n")),
            service=self.service,
            remote_ip=self.remote_ip,
            frontend="pam",
            switches=self.switches,
        )


def parse(options: Iterable[str], environ: Mapping[str, str]) -> PamRequest:
    """The request of a call with module arguments ``options``; ProtocolError if the
    arguments or the environment are not what pam_exec sends."""
    switches: tuple[str, ...] = ()
    quiet = debug = False
    for option in options:
        if option.startswith("service="):
            switches = tuple(s.lower() for s in option.removeprefix("service=").split("|") if s)
        elif option == "quiet":
            quiet = True
        elif option == "debug":
            debug = True
        else:
            raise ProtocolError(f"invalid option {option!r}")
    user = environ.get("PAM_USER", "")
    phase = environ.get("PAM_TYPE", "")
    if not user or phase not in ("auth", "account"):
        raise ProtocolError(f"needs PAM_USER and PAM_TYPE auth or account (got {phase!r})")
    return PamRequest(
        user=user,
        phase="auth" if phase == "auth" else "account",
        service=environ.get("PAM_SERVICE", "") or "pam",
        switches=switches,
        remote_ip=environ.get("PAM_RHOST") or None,
        quiet=quiet,
        debug=debug,
    )


def auth_answer(request: PamRequest, outcome: AuthOutcome) -> tuple[PamCode, str | None]:
    """The exit code of the ``auth`` phase, and the line to log (None: nothing)."""
    match outcome:
        case Accepted():
            return PamCode.SUCCESS, None
        case Denied():
            quiet = request.quiet and outcome.message is None
            return (
                PamCode.AUTH_ERR,
                None if quiet else f"authentication failure for {request.user!r}",
            )
        case Unavailable():
            return (
                PamCode.AUTHINFO_UNAVAIL,
                f"temporary failure for {request.user!r}: {outcome.detail}",
            )
        case _:
            assert_never(outcome)


def account_answer(
    request: PamRequest, state: UserRecord | Denied | NotFound | Unavailable
) -> tuple[PamCode, str | None]:
    """The exit code of the ``account`` phase, and the line to log (None: nothing)."""
    match state:
        case UserRecord():
            return PamCode.SUCCESS, None
        case Denied():
            why = (
                "account is disabled"
                if state.reason is DenyReason.DISABLED
                else "service not enabled"
            )
            return PamCode.ACCT_EXPIRED, f"{request.user}: {why}"
        case NotFound():
            return PamCode.USER_UNKNOWN, None
        case Unavailable():
            return (
                PamCode.AUTHINFO_UNAVAIL,
                f"temporary failure for {request.user!r}: {state.detail}",
            )
        case _:
            assert_never(state)


def _temporary(request: PamRequest, outcome: Unavailable) -> tuple[PamCode, str]:
    return PamCode.AUTHINFO_UNAVAIL, f"temporary failure for {request.user!r}: {outcome.detail}"
