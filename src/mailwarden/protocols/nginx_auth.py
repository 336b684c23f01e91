"""nginx mail ``auth_http``: request headers in, reply headers out, no server.

What belongs here: reading nginx's request headers (``Auth-Method``, ``Auth-User``,
``Auth-Pass``, ``Auth-Protocol``, ``Auth-Login-Attempt``, ``Client-IP``) into an
:class:`NginxRequest`, and turning an engine outcome into the reply headers nginx
reads. nginx always gets HTTP 200; the outcome is in ``Auth-Status``. On success
``Auth-Server``/``Auth-Port`` name the backend of the account's mail host for that
protocol (nginx needs an IP address there) and ``Auth-User`` the canonical login.
Failures carry ``Auth-Wait``, growing with the attempt number so a password
guesser slows down; temporary failures add ``Auth-Error-Code: 451 4.3.0`` for SMTP.
No asyncio, no sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import assert_never
from urllib.parse import unquote

from mailwarden.errors import ProtocolError
from mailwarden.model import Accepted, AuthOutcome, Denied, DenyReason, Password, Unavailable

PROTOCOLS = ("imap", "pop3", "smtp")
INVALID = "Invalid login or password"
TEMPFAIL = "Temporary server problem, try again later"
#: Seconds nginx waits before the next try: ``attempt * WAIT_STEP``, at most MAX_WAIT.
WAIT_STEP = 1
MAX_WAIT = 10
MAX_FIELD_LENGTH = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class NginxRequest:
    """One ``auth_http`` request as nginx sent it."""

    method: str
    user: str
    password: Password
    protocol: str
    attempt: int
    client_ip: str | None


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name.lower())
    if value is not None and len(value) > MAX_FIELD_LENGTH:
        raise ProtocolError(f"header {name} is longer than {MAX_FIELD_LENGTH} characters")
    return value


def parse_headers(headers: Mapping[str, str]) -> NginxRequest:
    """An :class:`NginxRequest` from lower-cased header names, or ProtocolError.

    nginx URL-escapes ``Auth-User`` and ``Auth-Pass`` (so a ``%`` or space in a
    password survives the header), hence ``unquote``.
    """
    user = _get(headers, "Auth-User")
    password = _get(headers, "Auth-Pass")
    protocol = (_get(headers, "Auth-Protocol") or "").lower()
    if not user:
        raise ProtocolError("header Auth-User is required")
    if password is None:
        raise ProtocolError("header Auth-Pass is required")
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"header Auth-Protocol must be one of {', '.join(PROTOCOLS)}")
    attempt_text = _get(headers, "Auth-Login-Attempt") or "1"
    # ASCII digits only: str.isdigit() also takes "²" or "٣", which int() refuses.
    if not (attempt_text.isascii() and attempt_text.isdigit()):
        raise ProtocolError("header Auth-Login-Attempt must be a number")
    return NginxRequest(
        method=(_get(headers, "Auth-Method") or "plain").lower(),
        user=unquote(user, errors="replace"),
        password=Password(
            unquote(password, errors="surrogateescape").encode("utf-8", "surrogateescape")
        ),
        protocol=protocol,
        attempt=min(int(attempt_text[:6]), 1000),
        client_ip=_get(headers, "Client-IP"),
    )


def wait_seconds(attempt: int) -> int:
    """``Auth-Wait`` for a failure on this attempt: grows with each try, capped."""
    return min(max(attempt, 1) * WAIT_STEP, MAX_WAIT)


def backend(
    mail_host: str | None, protocol: str, backends: Mapping[str, Mapping[str, str]], default: str
) -> tuple[str, int] | None:
    """``(ip, port)`` of the mail host's backend for ``protocol``, or None if unmapped."""
    table = backends.get(mail_host or default) or backends.get(default)
    if table is None:
        return None
    address = table.get(protocol)
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def reply(
    outcome: AuthOutcome,
    request: NginxRequest,
    *,
    backends: Mapping[str, Mapping[str, str]],
    default_host: str,
    disabled_text: str,
) -> tuple[tuple[str, str], ...]:
    """The headers of nginx's reply (its status is always 200)."""
    match outcome:
        case Accepted():
            target = backend(outcome.account.mail_host, request.protocol, backends, default_host)
            if target is None:
                # A mail host with no backend is the administrator's error: tell
                # nginx to retry later rather than call the password wrong.
                return _tempfail(request)
            return (
                ("Auth-Status", "OK"),
                ("Auth-Server", target[0]),
                ("Auth-Port", str(target[1])),
                ("Auth-User", outcome.user),
            )
        case Denied():
            text = INVALID
            disabled = outcome.reason in (DenyReason.DISABLED, DenyReason.SERVICE_DISABLED)
            # A message is set only once the password was proven: no account oracle.
            if disabled and outcome.message is not None:
                text = disabled_text
            return (("Auth-Status", text), ("Auth-Wait", str(wait_seconds(request.attempt))))
        case Unavailable():
            return _tempfail(request)
        case _:
            assert_never(outcome)


def _tempfail(request: NginxRequest) -> tuple[tuple[str, str], ...]:
    headers: tuple[tuple[str, str], ...] = (
        ("Auth-Status", TEMPFAIL),
        ("Auth-Wait", str(wait_seconds(request.attempt))),
    )
    if request.protocol == "smtp":
        headers += (("Auth-Error-Code", "451 4.3.0"),)
    return headers
