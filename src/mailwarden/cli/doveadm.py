"""doveadm's conventions for ``auth test``, ``auth lookup`` and ``user-lookup``: the
``-x key=value`` auth info, asking a socket (``-a``), and what is printed.

The ``-x`` keys are the request parameters an :class:`~mailwarden.model.AuthAttempt`
carries (doveadm's ``auth_user_info_parse``); their values are read by the converters
the Dovecot front ends apply to the same parameters on the wire
(:data:`mailwarden.protocols.dovecot_common.INFO_PARAMS`), so ``-x rip=...`` means
in-process what ``rip=`` means on the auth socket. An unknown key is a usage error
(exit 2; doveadm passes it on unread). With ``-a SOCKET`` the same keys go on the
wire as doveadm sends them.

What is printed follows doveadm-auth.c (Dovecot 2.3): ``passdb: USER auth
succeeded`` and ``extra fields:`` with ``key=value`` lines for a login; for a
lookup, ``passdb: USER`` / ``userdb: USER`` and ``  key       : value`` lines, or
with ``-f FIELD`` only that field's value.

Belongs here: those conventions, shared by the commands in cli/auth.py.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import click

from mailwarden import authclient
from mailwarden.cli.common import EX_NOUSER, EX_TEMPFAIL
from mailwarden.errors import ProtocolError
from mailwarden.model import AuthAttempt, Password
from mailwarden.protocols import dovecot_libauth as libauth
from mailwarden.protocols.dovecot_common import INFO_PARAMS

#: How long a request to a socket may take (doveadm waits for as long as it takes;
#: a command line that hangs helps nobody).
SOCKET_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthInfo:
    """The ``-x`` auth info of one request (doveadm's ``struct auth_user_info``)."""

    service: str
    rip: str | None = None
    lip: str | None = None
    rport: int | None = None
    lport: int | None = None
    real_rip: str | None = None
    session: str | None = None
    secured: bool = False
    debug: bool = False

    def params(self) -> list[tuple[str, str | None]]:
        """The request parameters after ``service=``, as doveadm writes them."""
        out: list[tuple[str, str | None]] = []
        if self.debug:
            out.append(("debug", None))
        for name in ("session", "lip", "rip", "lport", "rport", "real_rip"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, str(value)))
        if self.secured:
            out.append(("secured", None))
        return out

    def attempt(self, username: str, password: bytes, master: str | None) -> AuthAttempt:
        """The login ``auth test`` decides in-process (``master``: ``-M``)."""
        return AuthAttempt(
            username=master if master else username,
            authzid=username if master else None,
            credentials=Password(password),
            service=self.service,
            remote_ip=self.rip,
            local_ip=self.lip,
            remote_port=self.rport,
            local_port=self.lport,
            real_remote_ip=self.real_rip or self.rip,
            secured=self.secured,
            session=self.session,
            debug=self.debug,
            frontend="cli",
        )


#: The ``-x`` keys: those INFO_PARAMS reads that an AuthAttempt carries, and the flags.
X_KEYS = ("service", "rip", "lip", "rport", "lport", "real_rip", "session", "secured", "debug")
_FLAGS = ("secured", "debug")


def parse_auth_info(items: Iterable[str], base: AuthInfo) -> AuthInfo:
    """``base`` with each ``-x key=value`` (or bare ``-x secured``) applied, later
    ones winning; click.BadParameter (exit 2) for an unknown key or a bad value."""
    info = base
    for item in items:
        name, sep, text = item.partition("=")
        if name not in X_KEYS:
            close = difflib.get_close_matches(name, X_KEYS, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            raise click.BadParameter(
                f"unknown key {name!r} (known: {', '.join(X_KEYS)}){hint}", param_hint="-x"
            )
        if name in _FLAGS:  # a bare word (any value: Dovecot's login sends secured=tls)
            flags: dict[str, Any] = {name: True}
            info = replace(info, **flags)
            continue
        value = INFO_PARAMS[name](text) if sep else None
        if value is None or value == "":
            what = {"rip": "an IP address", "lip": "an IP address", "real_rip": "an IP address"}
            expected = what.get(name, "a port 1-65535" if "port" in name else "a value")
            raise click.BadParameter(f"{item!r}: expected {name}=<{expected}>", param_hint="-x")
        info = replace(info, **{name: value})
    return info


def socket_failure(path: str, exc: OSError | ProtocolError) -> NoReturn:
    """The socket could not be asked: ``Fatal:`` on stderr, exit 75 (as a temporary
    failure: the daemon is down or busy, nothing was decided)."""
    if isinstance(exc, OSError):
        detail = exc.strerror or str(exc) or type(exc).__name__
        message = f"Couldn't connect to auth socket {path}: {detail}"
    else:
        message = f"{path}: {exc}"
    click.echo(f"Fatal: {message}", err=True)
    sys.exit(EX_TEMPFAIL)


def login_via_socket(
    path: str, info: AuthInfo, username: str, password: bytes, master: str | None
) -> libauth.AuthReply:
    """One PLAIN login on an auth-client socket, as doveadm auth test sends it
    (``authzid`` is always the user; with ``-M`` the master user authenticates)."""
    request = libauth.client_request(
        pid=os.getpid(),
        mechanism="PLAIN",
        service=info.service,
        params=info.params(),
        initial_response=libauth.plain_response(master or username, password, authzid=username),
    )
    try:
        return authclient.exchange(path, request, libauth.ClientReplies(), timeout=SOCKET_TIMEOUT)
    except (OSError, ProtocolError) as exc:
        socket_failure(path, exc)


def lookup_via_socket(path: str, info: AuthInfo, user: str, *, passdb: bool) -> libauth.UserReply:
    """One ``PASS`` (``passdb``) or ``USER`` lookup on an auth-userdb or auth-master socket."""
    make = libauth.pass_request if passdb else libauth.user_request
    request = make(user, service=info.service, params=info.params())
    try:
        return authclient.exchange(path, request, libauth.MasterReplies(), timeout=SOCKET_TIMEOUT)
    except (OSError, ProtocolError) as exc:
        socket_failure(path, exc)


Fields = Sequence[tuple[str, str | None]]


def print_login(username: str, *, ok: bool, fields: Fields) -> None:
    """``passdb: USER auth succeeded|failed`` and the reply's fields (stdout, as doveadm)."""
    click.echo(f"passdb: {username} auth {'succeeded' if ok else 'failed'}")
    if fields:
        click.echo("extra fields:")
        for name, value in fields:
            click.echo(f"  {name}" if value is None else f"  {name}={value}")


def print_found(kind: str, asked: str, user: str, fields: Fields, *, field: str | None) -> None:
    """A found passdb or userdb entry (``kind``), as ``doveadm auth lookup`` / ``user -u``
    print it: the name asked, the canonical ``user`` (the passdb's ``user=``, the
    userdb reply's name) and the fields; ``field``: only that field's value (``-f``)."""
    items: list[tuple[str, str | None]] = [("user", user), *fields]
    if field is not None:
        for name, value in items:
            if name == field and value is not None:
                click.echo(value)
        return
    click.echo(f"{kind}: {asked}")
    for name, value in items:
        click.echo(f"  {name:<10}" if value is None else f"  {name:<10}: {value}")


def not_found(kind: str, user: str, *, field: str | None) -> int:
    """``KIND lookup: user USER doesn't exist`` (stdout, stderr with ``-f``); exit 67."""
    click.echo(f"{kind} lookup: user {user} doesn't exist", err=field is not None)
    return EX_NOUSER


def lookup_failed(kind: str, user: str, detail: str | None) -> int:
    """``Error: KIND lookup failed for USER[: detail]`` on stderr; exit 75."""
    suffix = f": {detail}" if detail else ""
    click.echo(f"Error: {kind} lookup failed for {user}{suffix}", err=True)
    return EX_TEMPFAIL
