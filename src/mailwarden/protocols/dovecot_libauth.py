"""The *client* side of Dovecot's two auth protocols, sans I/O: what lib-auth sends.

:mod:`~mailwarden.protocols.dovecot_client` and
:mod:`~mailwarden.protocols.dovecot_master` are the server side. This module is the
other end, as Dovecot's lib-auth speaks it (auth-client.c, auth-master.c), for
mailwarden's own blocking helpers that ask the running daemon instead of opening the
directory themselves (``mailwarden checkpassword``, and ``auth test``/``auth lookup``/
``user-lookup -a SOCKET``: cli/authsocket.py). One request per connection:
write the bytes the request functions return, feed what the server sends to a
reader, take the one reply it yields.

* **Client socket** (:func:`client_request` and :class:`ClientReplies`): the client
  sends ``VERSION\\t1\\t2`` and ``CPID`` and may pipeline its ``AUTH`` right after
  them; the server's handshake (``VERSION``, ``MECH``…, ``SPID``, ``CUID``,
  ``COOKIE``, ``DONE``) arrives meanwhile and is read before the reply. Protocol
  1.2 matters: to a 1.0/1.1 client our server signals a temporary failure by
  closing the connection (Postfix and Exim understand nothing else), to a 1.2
  client with ``FAIL … code=temp_fail``.
* **Master and userdb sockets** (:func:`user_request`, :func:`pass_request` and
  :class:`MasterReplies`): ``VERSION\\t1\\t0`` (as doveadm), then ``USER`` or ``PASS``;
  the server's ``VERSION`` and ``SPID`` come first, then ``USER`` (``PASS``),
  ``NOTFOUND`` or ``FAIL``.

Anything else from the server (a wrong major version, an unknown reply, a reply
for another id, the connection closing before the reply) is a
:class:`~mailwarden.errors.ProtocolError`: the caller treats it as a temporary
failure, never as a wrong password.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeAlias, TypeVar

from mailwarden.errors import ProtocolError
from mailwarden.protocols.dovecot_common import (
    DEFAULT_MAX_LINE_LENGTH,
    LineReader,
    Params,
    encode_line,
    escape,
    format_fields,
    split_fields,
    split_param,
)

CLIENT_VERSION = (1, 2)
"""The client protocol version we announce (Dovecot 2.3's lib-auth; see module docstring)."""

MASTER_VERSION = (1, 0)
"""The master protocol version we announce (doveadm's)."""

REQUEST_ID = 1
"""Every connection carries one request, so its id is always 1."""


# --------------------------------------------------------------------------- requests


def client_request(
    *,
    pid: int,
    mechanism: str,
    service: str,
    params: Iterable[tuple[str, str | None]] = (),
    initial_response: bytes | None = None,
) -> bytes:
    """``VERSION``, ``CPID`` and one ``AUTH`` (id 1), to be sent at once on connect.

    ``params`` come after ``service=`` (``rip``, ``lip``, ``secured``…; ``None`` is
    a bare word); ``resp=`` is always last, as the server requires.
    """
    if not service:
        raise ValueError("service is required")
    line = f"AUTH\t{REQUEST_ID}\t{escape(mechanism)}\tservice={escape(service)}"
    line += format_fields(params)
    if initial_response is not None:
        # "resp==" would be needed for an empty response; base64 of b"" is "" and a
        # 1.2 client's empty "resp=" means exactly that (reference §1.4).
        line += "\tresp=" + base64.b64encode(initial_response).decode("ascii")
    return (
        encode_line(f"VERSION\t{CLIENT_VERSION[0]}\t{CLIENT_VERSION[1]}")
        + encode_line(f"CPID\t{pid}")
        + encode_line(line)
    )


def plain_response(authcid: str, password: bytes, authzid: str = "") -> bytes:
    """The PLAIN mechanism's data: ``authzid NUL authcid NUL password`` (RFC 4616)."""
    enc = "utf-8", "surrogateescape"
    return authzid.encode(*enc) + b"\0" + authcid.encode(*enc) + b"\0" + password


def user_request(
    user: str, *, service: str, params: Iterable[tuple[str, str | None]] = ()
) -> bytes:
    """``VERSION`` and one ``USER`` lookup (id 1), for an auth-userdb or auth-master socket."""
    return _master_request("USER", user, service=service, params=params)


def pass_request(
    user: str, *, service: str, params: Iterable[tuple[str, str | None]] = ()
) -> bytes:
    """``VERSION`` and one ``PASS`` lookup (id 1, the passdb fields: ``doveadm auth lookup``)."""
    return _master_request("PASS", user, service=service, params=params)


def _master_request(
    command: str, user: str, *, service: str, params: Iterable[tuple[str, str | None]]
) -> bytes:
    if not service:
        raise ValueError("service is required")
    return encode_line(f"VERSION\t{MASTER_VERSION[0]}\t{MASTER_VERSION[1]}") + encode_line(
        f"{command}\t{REQUEST_ID}\t{escape(user)}\tservice={escape(service)}"
        + format_fields(params)
    )


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthOk:
    """``OK``: the login succeeded as ``user``; ``fields`` are the rest, in order."""

    user: str
    fields: Params = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthFail:
    """``FAIL``: ``code`` is Dovecot's (``temp_fail``, ``user_disabled``…) or ``None``."""

    user: str | None = None
    code: str | None = None
    reason: str | None = None
    fields: Params = ()

    @property
    def temporary(self) -> bool:
        """The server could not decide (``code=temp_fail``, or 2.2's bare ``temp``)."""
        return self.code == "temp_fail" or any(name == "temp" for name, _ in self.fields)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthContinue:
    """``CONT``: the server wants another round (never for PLAIN with an initial response)."""

    data: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserFound:
    """``USER``: the userdb fields of ``user`` (the canonical name), in order."""

    user: str
    fields: Params = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PassFound:
    """``PASS``: the passdb fields of ``user`` (its ``user=``), in order; never the password."""

    user: str
    fields: Params = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class UserNotFound:
    """``NOTFOUND``: no such user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupFailed:
    """``FAIL`` on a master socket: the lookup failed temporarily."""

    reason: str | None = None


AuthReply: TypeAlias = AuthOk | AuthFail | AuthContinue
UserReply: TypeAlias = UserFound | PassFound | UserNotFound | LookupFailed


ReplyT = TypeVar("ReplyT", AuthReply, UserReply)


def _params(fields: Iterable[str]) -> Params:
    return tuple(split_param(f) for f in fields if f)


class Replies(abc.ABC, Generic[ReplyT]):
    """Lines in; the server handshake checked; one reply for request 1 out."""

    _handshake_end: str

    def __init__(self, max_line_length: int) -> None:
        self._reader = LineReader(max_line_length)
        self._greeted = False
        self.handshake: list[list[str]] = []

    def receive_data(self, data: bytes) -> None:
        """Feed what the server sent; ``b""`` when it closed the connection."""
        self._reader.receive_data(data)

    @abc.abstractmethod
    def next_event(self) -> ReplyT | None:
        """The reply to our request, or ``None`` if more data is needed. ProtocolError."""

    def _next_parts(self) -> list[str] | None:
        while (line := self._reader.next_event()) is not None:
            parts = split_fields(line)
            if not self._greeted:
                self._handshake_line(parts)
                continue
            if len(parts) < 2 or parts[1] != str(REQUEST_ID):
                raise ProtocolError(f"unexpected line from the auth server: {parts[0]!r}")
            return parts
        if self._reader.eof:
            raise ProtocolError("the auth server closed the connection before replying")
        return None

    def _handshake_line(self, parts: list[str]) -> None:
        if not self.handshake and (parts[0] != "VERSION" or parts[1:2] != ["1"]):
            raise ProtocolError(f"not a Dovecot auth server of protocol 1: {parts[0]!r}")
        self.handshake.append(parts)
        if parts[0] == self._handshake_end:
            self._greeted = True


class ClientReplies(Replies[AuthReply]):
    """The client socket: the handshake up to ``DONE``, then ``OK``/``FAIL``/``CONT``."""

    _handshake_end = "DONE"

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        super().__init__(max_line_length)

    @property
    def mechanisms(self) -> frozenset[str]:
        """The mechanisms the server advertised (upper case) in its handshake so far."""
        return frozenset(p[1].upper() for p in self.handshake if p[0] == "MECH" and len(p) > 1)

    def next_event(self) -> AuthReply | None:
        """The reply to our AUTH, or ``None`` if more data is needed. ProtocolError."""
        parts = self._next_parts()
        if parts is None:
            return None
        command, rest = parts[0], parts[2:]
        if command == "OK":
            fields = _params(rest)
            users = [v for k, v in fields if k == "user"]
            if not users or users[0] is None:
                raise ProtocolError("OK without user=")
            return AuthOk(user=users[0], fields=tuple(f for f in fields if f[0] != "user"))
        if command == "FAIL":
            fields = _params(rest)
            named = dict(fields)
            return AuthFail(
                user=named.get("user"),
                code=named.get("code"),
                reason=named.get("reason"),
                fields=tuple(f for f in fields if f[0] not in ("user", "code", "reason")),
            )
        if command == "CONT":
            return AuthContinue(data=rest[0] if rest else "")
        raise ProtocolError(f"unknown reply from the auth server: {command!r}")


class MasterReplies(Replies[UserReply]):
    """A master or userdb socket: ``VERSION`` and ``SPID``, then ``USER`` (or ``PASS``),
    ``NOTFOUND`` or ``FAIL``."""

    _handshake_end = "SPID"

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        super().__init__(max_line_length)

    def next_event(self) -> UserReply | None:
        """The reply to our USER or PASS, or ``None`` if more data is needed. ProtocolError."""
        parts = self._next_parts()
        if parts is None:
            return None
        command, rest = parts[0], parts[2:]
        if command == "USER":
            if not rest or not rest[0]:
                raise ProtocolError("USER reply without a username")
            return UserFound(user=rest[0], fields=_params(rest[1:]))
        if command == "PASS":
            fields = _params(rest)
            users = [v for k, v in fields if k == "user"]
            if not users or not users[0]:
                raise ProtocolError("PASS reply without user=")
            return PassFound(user=users[0], fields=tuple(f for f in fields if f[0] != "user"))
        if command == "NOTFOUND":
            return UserNotFound()
        if command == "FAIL":
            return LookupFailed(reason=dict(_params(rest)).get("reason"))
        raise ProtocolError(f"unknown reply from the auth server: {command!r}")
