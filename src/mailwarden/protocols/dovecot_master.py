"""Dovecot's auth *master* protocol, server side (auth-master and auth-userdb sockets).

The peers are trusted processes: doveadm (``user``, ``auth lookup``, ``auth cache
flush``, ``auth login``), LDA/LMTP userdb lookups and the login master's
``REQUEST``. Sans-I/O like :mod:`~mailwarden.protocols.dovecot_client`: send
:func:`handshake` on accept, feed bytes, take events, write the reply bytes.

Rules, from Dovecot 2.3.19.1 (auth-master-connection.c; reference §2):

* The server sends ``VERSION\\t1\\t1`` and ``SPID`` at once; doveadm considers the
  handshake done only when SPID arrives, and the login master needs SPID to be the
  very next line.
* The client's first line must start ``VERSION\\t1`` (the minor is not checked).
* Commands: ``USER``, ``PASS``, ``LIST`` on both socket types; ``REQUEST`` and
  ``CACHE-FLUSH`` only on master sockets (``userdb_only=False``). ``USER`` and
  ``PASS`` need ``service=``. Anything else (including a client-protocol ``CPID``:
  a client connected to the wrong socket) is a
  :class:`~mailwarden.errors.ProtocolError` and Dovecot disconnects.
* Dovecot reads only 1024-byte lines here; we accept the client socket's 16384.
  doveadm reads replies of under 8192 bytes (``MAX_INBUF_SIZE``), so a USER reply
  with huge fields would fail there, not here.
* Replies carry the request id; doveadm checks it against the id it sent last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from mailwarden.errors import ProtocolError
from mailwarden.protocols.dovecot_common import (
    DEFAULT_MAX_LINE_LENGTH,
    ConnectionClosed,
    Fields,
    LineReader,
    Params,
    RequestInfo,
    encode_line,
    escape,
    format_fields,
    import_info,
    parse_uint,
    split_fields,
    split_param,
    stored,
)
from mailwarden.records import record

__all__ = [
    "PROTOCOL_VERSION",
    "AuthMasterConnection",
    "CacheFlush",
    "ConnectionClosed",
    "FinishedLogin",
    "ListUsers",
    "MasterEvent",
    "MasterRequest",
    "MasterVersion",
    "PassLookup",
    "RequestInfo",
    "UserLookup",
    "handshake",
]

PROTOCOL_VERSION = (1, 1)
"""What Dovecot 2.3 announces on master sockets (``AUTH_MASTER_PROTOCOL_*_VERSION``)."""

_COOKIE_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){0,16}")


def handshake(*, spid: int) -> bytes:
    """The master handshake: ``VERSION\\t1\\t1`` then ``SPID\\t<spid>``."""
    return f"VERSION\t{PROTOCOL_VERSION[0]}\t{PROTOCOL_VERSION[1]}\nSPID\t{spid}\n".encode("ascii")


# --------------------------------------------------------------------------- events


@record
class MasterVersion:
    """The client's ``VERSION`` line. doveadm sends 1.0, the login master 1.1."""

    major: int
    minor: int | None


@record
class UserLookup(RequestInfo):
    """``USER``: userdb fields of ``user`` (answer ``user_found``, ``not_found`` or ``fail``)."""

    id: int
    user: str


@record
class PassLookup(RequestInfo):
    """``PASS``: passdb fields of ``user`` without the password (``pass_found``…)."""

    id: int
    user: str


@record
class ListUsers(RequestInfo):
    """``LIST``: every user (``list_user`` each, then ``list_done``).

    ``user_mask`` is the ``user=`` wildcard doveadm sends; doveadm filters itself,
    so the server may ignore it. ``service`` defaults to ``""`` as in Dovecot.
    """

    id: int
    user_mask: str | None = None


@record
class MasterRequest:
    """``REQUEST``: the userdb reply for a finished login on an auth-login socket.

    ``client_pid`` and ``auth_id`` name the request (the CPID of that client
    connection and its AUTH id); ``cookie`` must equal the one that connection's
    handshake sent, compared in constant time. Answer ``user_found`` or ``fail``.
    """

    id: int
    client_pid: int
    auth_id: int
    cookie: bytes
    session_pid: int | None = None
    request_auth_token: bool = False
    extra_params: Params = ()


@record
class FinishedLogin:
    """A successful AUTH on an auth-login socket, waiting for the master's REQUEST.

    What the userdb reply needs: who logged in (``user``), how (``mechanism``), for
    which ``service``, the master user of a master login, the name as typed
    (``original_user``) and the TLS SNI name (``local_name``).
    """

    user: str
    mechanism: str
    service: str
    master_user: str | None = None
    original_user: str | None = None
    local_name: str | None = None
    anonymous: bool = False


@record
class CacheFlush:
    """``CACHE-FLUSH``: forget cached entries of ``users`` (all when empty).

    Answer ``cache_flushed`` with the number of entries removed.
    """

    id: int
    users: tuple[str, ...] = ()


MasterEvent: TypeAlias = (
    MasterVersion
    | UserLookup
    | PassLookup
    | ListUsers
    | MasterRequest
    | CacheFlush
    | ConnectionClosed
)


# --------------------------------------------------------------------------- connection


def _info_params(
    fields: Iterable[str], values: dict[str, Any], *, extra_name: str | None = None
) -> None:
    extra: list[tuple[str, str | None]] = []
    for param in fields:
        name, value = split_param(param)
        if import_info(values, name, value):
            continue
        if name == extra_name:
            values[name] = value if value is not None else ""
        elif name:
            extra.append((name, value))
    values["extra_params"] = tuple(extra)


class AuthMasterConnection:
    """One master or userdb connection's protocol state.

    ``userdb_only`` makes it an auth-userdb socket (USER, PASS, LIST only).
    """

    def __init__(
        self, *, userdb_only: bool = False, max_line_length: int = DEFAULT_MAX_LINE_LENGTH
    ) -> None:
        self.userdb_only = userdb_only
        self._reader = LineReader(max_line_length)
        self.version: MasterVersion | None = None
        self._closed = False
        self._error: ProtocolError | None = None

    @property
    def closed(self) -> bool:
        """True once :class:`ConnectionClosed` was returned."""
        return self._closed

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the client closed its side."""
        self._reader.receive_data(data)

    def next_event(self) -> MasterEvent | None:
        """The next event, or ``None`` when more data is needed (ProtocolError: see module)."""
        if self._error is not None:
            raise self._error
        if self._closed:
            return None
        try:
            line = self._reader.next_event()
            if line is None:
                if self._reader.eof:
                    self._closed = True
                    return ConnectionClosed()
                return None
            return self._handle(line)
        except ProtocolError as exc:
            self._error = exc
            raise

    def _handle(self, line: str) -> MasterEvent:
        if self.version is None:
            return self._version(line)
        command, sep, args = line.partition("\t")
        if sep:
            if command in ("USER", "PASS"):
                return self._lookup(command, args)
            if command == "LIST":
                return self._list(args)
            if not self.userdb_only:
                if command == "REQUEST":
                    return self._request(args)
                if command == "CACHE-FLUSH":
                    return self._cache_flush(args)
        if command == "CPID":
            raise ProtocolError("an authentication client connected to the master socket")
        kind = "userdb" if self.userdb_only else "master"
        raise ProtocolError(f"unknown command on a {kind} socket: {line[:80]!r}")

    def _version(self, line: str) -> MasterVersion:
        parts = line.split("\t")
        major = parse_uint(parts[1]) if len(parts) >= 2 and parts[0] == "VERSION" else None
        if major != PROTOCOL_VERSION[0]:
            raise ProtocolError(f"master not compatible with this server: {line[:80]!r}")
        assert major is not None
        minor = parse_uint(parts[2]) if len(parts) >= 3 else None
        self.version = MasterVersion(major=major, minor=minor)
        return self.version

    def _lookup(self, command: str, args: str) -> UserLookup | PassLookup:
        fields = split_fields(args)
        request_id = parse_uint(fields[0])
        if len(fields) < 2 or request_id is None:
            raise ProtocolError(f"broken {command} request")
        values: dict[str, Any] = {}
        _info_params(fields[2:], values)
        if "service" not in values:
            raise ProtocolError(f"{command} request without service")
        kind = UserLookup if command == "USER" else PassLookup
        return kind(id=request_id, user=fields[1], **values)

    def _list(self, args: str) -> ListUsers:
        fields = split_fields(args)
        request_id = parse_uint(fields[0])
        if request_id is None:
            raise ProtocolError("broken LIST request")
        values: dict[str, Any] = {}
        _info_params(fields[1:], values, extra_name="user")
        mask = values.pop("user", None)
        return ListUsers(id=request_id, user_mask=mask, **values)

    def _request(self, args: str) -> MasterRequest:
        fields = split_fields(args)
        if len(fields) < 4:
            raise ProtocolError("broken REQUEST")
        request_id, client_pid, auth_id = (parse_uint(f) for f in fields[:3])
        if request_id is None or client_pid is None or auth_id is None:
            raise ProtocolError("broken REQUEST")
        # Dovecot decodes the cookie into a 16-byte buffer: longer is an error, and a
        # shorter one simply never matches.
        if not _COOKIE_HEX.fullmatch(fields[3]):
            raise ProtocolError("broken REQUEST cookie")
        session_pid: int | None = None
        token = False
        extra: list[tuple[str, str | None]] = []
        for param in fields[4:]:
            name, value = split_param(param)
            if name == "session_pid":
                session_pid = parse_uint(value or "")
            elif name == "request_auth_token":
                token = True
            elif name:
                extra.append((name, value))
        return MasterRequest(
            id=request_id,
            client_pid=client_pid,
            auth_id=auth_id,
            cookie=bytes.fromhex(fields[3]),
            session_pid=session_pid,
            request_auth_token=token,
            extra_params=tuple(extra),
        )

    def _cache_flush(self, args: str) -> CacheFlush:
        fields = split_fields(args)
        request_id = parse_uint(fields[0])
        if request_id is None:
            raise ProtocolError("broken CACHE-FLUSH")
        return CacheFlush(id=request_id, users=tuple(fields[1:]))

    # ------------------------------------------------------------------ replies

    def user_found(self, request_id: int, user: str, fields: Fields = ()) -> bytes:
        """``USER\\t<id>\\t<user>\\t<fields>``: the reply to USER and to REQUEST.

        The username is mandatory (doveadm: "Lookup didn't return username"). Like
        Dovecot, a TAB always follows it, even with no fields.
        """
        return encode_line(f"USER\t{request_id}\t{escape(user)}\t{format_fields(fields)[1:]}")

    def request_found(
        self, request_id: int, user: str, userdb_fields: Mapping[str, str], login: FinishedLogin
    ) -> bytes:
        """The ``USER`` reply to a ``REQUEST`` for ``login``: the account's userdb fields
        (an empty value is a bare word), then what the login adds, in the order Dovecot
        appends them (``auth_str_append_userdb_extra_fields``): ``master_user`` (unless
        the userdb set it), ``auth_mech``, ``anonymous``, ``auth_user`` (the master
        user, or the name as typed when it differs) and ``local_name``.
        """
        fields = stored(userdb_fields)
        if login.master_user is not None and "master_user" not in userdb_fields:
            fields.append(("master_user", login.master_user))
        fields.append(("auth_mech", login.mechanism))
        if login.anonymous:
            fields.append(("anonymous", None))
        if login.master_user is not None:
            fields.append(("auth_user", login.master_user))
        elif login.original_user is not None and login.original_user != user:
            fields.append(("auth_user", login.original_user))
        if login.local_name is not None:
            fields.append(("local_name", login.local_name))
        return self.user_found(request_id, user, fields)

    def pass_found(self, request_id: int, user: str, fields: Fields = ()) -> bytes:
        """``PASS\\t<id>\\tuser=<user>[\\t<fields>]``: passdb fields, never the password."""
        return encode_line(f"PASS\t{request_id}\tuser={escape(user)}{format_fields(fields)}")

    def not_found(self, request_id: int) -> bytes:
        """``NOTFOUND\\t<id>``: no such user (doveadm exits 67)."""
        return encode_line(f"NOTFOUND\t{request_id}")

    def fail(self, request_id: int, reason: str | None = None) -> bytes:
        """``FAIL\\t<id>[\\treason=…]``: a temporary failure (doveadm exits 75)."""
        suffix = f"\treason={escape(reason)}" if reason is not None else ""
        return encode_line(f"FAIL\t{request_id}{suffix}")

    def list_user(self, request_id: int, user: str) -> bytes:
        """``LIST\\t<id>\\t<user>``: one user of a LIST."""
        return encode_line(f"LIST\t{request_id}\t{escape(user)}")

    def list_done(self, request_id: int, *, failed: bool = False) -> bytes:
        """``DONE\\t<id>\\t`` ends a LIST; ``DONE\\t<id>\\tfail`` when iteration failed."""
        return encode_line(f"DONE\t{request_id}\t{'fail' if failed else ''}")

    def cache_flushed(self, request_id: int, count: int) -> bytes:
        """``OK\\t<id>\\t<count>``: the answer to CACHE-FLUSH."""
        return encode_line(f"OK\t{request_id}\t{count}")
