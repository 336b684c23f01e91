"""Dovecot's auth *client* protocol, server side: what Postfix, Exim, doveadm speak to us.

Sans-I/O, in h11's manner: feed bytes to :meth:`AuthClientConnection.receive_data`,
take events from :meth:`~AuthClientConnection.next_event`, write the bytes the reply
methods return. The server's handshake is :func:`handshake`; send it on accept,
*before* reading anything (Exim ≤4.98 waits for it before sending its VERSION).

Rules, from Dovecot 2.3.19.1 (auth-client-connection.c, auth-request-handler.c;
reference §1, §0.4):

* The client's first line is ``VERSION\\t1\\t<minor>`` and its second ``CPID\\t<pid>``;
  anything else during the handshake is a :class:`~mailwarden.errors.ProtocolError`.
  The minor version is remembered: it decides what an empty ``resp=`` means.
* Then ``AUTH``, ``CONT`` and ``CANCEL``. Dovecot drops the whole connection (all
  its requests) for: an unknown command, a malformed id, a zero or duplicate AUTH
  id, an unknown mechanism, a missing ``service=``, parameters after ``resp=``, a
  CONT without data, a malformed CANCEL id. Those raise ProtocolError here; the
  front end closes the connection.
* Other misuse fails only the request, at once and without the failure delay; the
  connection reports it as :class:`RequestRejected` carrying the exact reply: bad
  base64 (``FAIL\\t<id>\\tcode=invalid_base64\\treason=…``), a CONT for an unknown id
  (``reason=Authentication request timed out``), a CONT nobody asked for
  (``reason=Unexpected continuation``).
* At most ``max_pending`` requests may be in flight. Dovecot has no such count (it
  stops reading while 50 KB of replies are unsent); a codec cannot see the socket,
  so it caps requests instead and refuses the excess one with
  ``FAIL\\t<id>\\tcode=temp_fail\\treason=Too many pending authentication requests``,
  keeping the connection: the client retries, the other requests go on.

A request is *pending* from its ``AUTH`` until :meth:`~AuthClientConnection.ok` or
:meth:`~AuthClientConnection.fail` answers it, the client cancels it, it is rejected,
or the server drops it with :meth:`~AuthClientConnection.forget` (timeout). Reply methods
check that: answering a request that is not pending is a bug in the caller and
raises :class:`ValueError`. A CONT is accepted only after the server sent one
(:meth:`~AuthClientConnection.cont`), which also covers the extra round for SASL
success data when the client did not send ``final-resp-ok`` (reference §1.5).
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import field
from typing import Any, TypeAlias, assert_never

from mailwarden.errors import ProtocolError
from mailwarden.model import DenyReason
from mailwarden.protocols.dovecot_common import (
    DEFAULT_MAX_LINE_LENGTH,
    INFO_PARAMS,
    ConnectionClosed,
    Fields,
    LineReader,
    RequestInfo,
    as_items,
    decode_base64,
    encode_line,
    escape,
    format_fields,
    parse_uint,
    split_fields,
)
from mailwarden.records import record

__all__ = [
    "DEFAULT_MAX_PENDING",
    "PROTOCOL_VERSION",
    "AuthClientConnection",
    "AuthRequest",
    "CancelRequest",
    "ClientCpid",
    "ClientEvent",
    "ClientVersion",
    "ConnectionClosed",
    "ContinueRequest",
    "RequestInfo",
    "RequestRejected",
    "handshake",
]

PROTOCOL_VERSION = (1, 2)
"""What Dovecot 2.3 announces (``AUTH_CLIENT_PROTOCOL_{MAJOR,MINOR}_VERSION``)."""

DEFAULT_MAX_PENDING = 256

COOKIE_SIZE = 16
"""Bytes of the connection cookie (``MASTER_AUTH_COOKIE_SIZE``), sent as 32 hex digits."""

# The minor version from which an empty ``resp=`` is an empty initial response
# rather than none at all (auth-request-handler.c:644-680).
_EMPTY_RESP_MINOR = 2

REASON_TIMED_OUT = "Authentication request timed out"
REASON_UNEXPECTED_CONT = "Unexpected continuation"
REASON_BAD_BASE64_INITIAL = "Invalid base64 data in initial response"
REASON_BAD_BASE64_CONT = "Invalid base64 data in continued response"
REASON_TOO_MANY = "Too many pending authentication requests"


# --------------------------------------------------------------------------- events


@record
class ClientVersion:
    """The client's ``VERSION`` line (the major version is always 1)."""

    major: int
    minor: int


@record
class ClientCpid:
    """The client's ``CPID`` line: its process id; the handshake is complete."""

    pid: int


@record
class AuthRequest(RequestInfo):
    """An ``AUTH`` command: start request ``id`` with ``mechanism``.

    ``mechanism`` is upper-cased. ``initial_response`` is ``None`` when the client
    sent none (no ``resp``, or an empty ``resp=`` from a client older than protocol
    1.2, as Postfix and Exim are) and ``b""`` for an empty one (``resp==``, or empty
    ``resp=`` from 1.2 clients such as doveadm). ``secured`` is ``None`` when absent,
    else its value (``""`` for the bare word, ``"tls"`` from Dovecot's login
    processes). ``cert_username`` is ``None`` when absent or empty.
    """

    id: int
    mechanism: str
    # Often a password (PLAIN): kept out of reprs, and so out of logs and tracebacks.
    initial_response: bytes | None = field(default=None, repr=False)
    secured: str | None = None
    valid_client_cert: bool = False
    cert_username: str | None = None
    nologin: bool = False
    no_penalty: bool = False
    final_resp_ok: bool = False

    @property
    def is_secured(self) -> bool:
        """Whether the client said the transport is secure (TLS, or local)."""
        return self.secured is not None


@record
class ContinueRequest:
    """A ``CONT`` command: the client's response (base64-decoded) for request ``id``."""

    id: int
    data: bytes = field(repr=False)  # may be a password (LOGIN)


@record
class CancelRequest:
    """A ``CANCEL`` of a pending request; drop its work and send nothing."""

    id: int


@record
class RequestRejected:
    """The connection itself failed request ``id``: write ``reply`` now (no delay).

    If work was running for ``id`` (an unexpected CONT, bad base64 in a CONT), drop
    it: the id is no longer pending and may be reused by the client. ``reason`` is
    for the log.
    """

    id: int
    reason: str
    reply: bytes


ClientEvent: TypeAlias = (
    ClientVersion
    | ClientCpid
    | AuthRequest
    | ContinueRequest
    | CancelRequest
    | RequestRejected
    | ConnectionClosed
)


# --------------------------------------------------------------------------- handshake


def handshake(
    mechanisms: Iterable[tuple[str, Iterable[str]]], *, spid: int, cuid: int, cookie: bytes
) -> bytes:
    """The server handshake in Dovecot 2.3's order: VERSION, MECH…, SPID, CUID, COOKIE, DONE.

    ``mechanisms`` are ``(name, flag words)`` pairs in the order to advertise them
    (e.g. ``(name, cls.flag_words())`` from :data:`mailwarden.sasl.MECHANISMS`).
    ``SPID`` after ``MECH`` matters: Postfix and Exim take an early SPID for a
    master socket and give up (reference §0.1). ``cookie`` is the connection's
    16 random bytes; the master's ``REQUEST`` must quote it.
    """
    if len(cookie) != COOKIE_SIZE:
        raise ValueError(f"the cookie is {COOKIE_SIZE} bytes, not {len(cookie)}")
    lines = [f"VERSION\t{PROTOCOL_VERSION[0]}\t{PROTOCOL_VERSION[1]}"]
    for name, words in mechanisms:
        lines.append("\t".join(("MECH", name, *words)))
    if len(lines) == 1:
        # doveadm (lib-auth) refuses a handshake without any MECH line.
        raise ValueError("at least one mechanism must be advertised")
    lines += [f"SPID\t{spid}", f"CUID\t{cuid}", f"COOKIE\t{cookie.hex()}", "DONE"]
    return "".join(line + "\n" for line in lines).encode("ascii")


# --------------------------------------------------------------------------- connection


class _Phase(enum.Enum):
    VERSION = "expecting VERSION"
    CPID = "expecting CPID"
    READY = "ready"
    CLOSED = "closed"


class _Request(enum.Enum):
    WORKING = "the server owes the next message"
    AWAITING_CONT = "waiting for the client's CONT"


_AUTH_FLAGS = {
    "valid-client-cert": "valid_client_cert",
    "nologin": "nologin",
    "no-penalty": "no_penalty",
    "final-resp-ok": "final_resp_ok",
}


_NODELAY = (("nodelay", None),)
_ALWAYS_BARE = frozenset({"nologin", "proxy"})


def _fail_line(
    request_id: int,
    *,
    user: str | None = None,
    code: str | None = None,
    reason: str | None = None,
    fields: Fields = (),
) -> bytes:
    line = f"FAIL\t{request_id}"
    if user is not None:
        line += f"\tuser={escape(user)}"
    if code is not None:
        line += f"\tcode={escape(code)}"
    if reason is not None:
        line += f"\treason={escape(reason)}"
    return encode_line(line + format_fields(fields))


class AuthClientConnection:
    """One client connection's protocol state (auth-client, auth-login sockets).

    ``mechanisms`` are the names advertised in the handshake; an AUTH for any
    other is a protocol error. ``max_line_length`` counts the LF (Dovecot: 16384);
    ``max_pending`` caps requests in flight (see the module docstring).
    """

    def __init__(
        self,
        *,
        mechanisms: Collection[str],
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.mechanisms = frozenset(name.upper() for name in mechanisms)
        self.max_pending = max_pending
        self._reader = LineReader(max_line_length)
        self._phase = _Phase.VERSION
        self._requests: dict[int, _Request] = {}
        self._error: ProtocolError | None = None
        self.version: ClientVersion | None = None
        self.client_pid: int | None = None

    # ------------------------------------------------------------------ input

    @property
    def pending(self) -> tuple[int, ...]:
        """Ids of the requests in flight, in the order they arrived."""
        return tuple(self._requests)

    @property
    def closed(self) -> bool:
        """True once :class:`ConnectionClosed` was returned."""
        return self._phase is _Phase.CLOSED

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the client closed its side."""
        self._reader.receive_data(data)

    def next_event(self) -> ClientEvent | None:
        """The next event, or ``None`` when more data is needed.

        Raises ProtocolError when the client broke the protocol; the connection is
        then unusable and every later call raises the same error.
        """
        if self._error is not None:
            raise self._error
        try:
            while self._phase is not _Phase.CLOSED:
                line = self._reader.next_event()
                if line is None:
                    if not self._reader.eof:
                        return None
                    self._phase = _Phase.CLOSED
                    return ConnectionClosed(pending=self.pending)
                event = self._handle(line)
                if event is not None:
                    return event
            return None
        except ProtocolError as exc:
            self._error = exc
            raise

    def _handle(self, line: str) -> ClientEvent | None:
        if self._phase is _Phase.VERSION:
            return self._version(line)
        if self._phase is _Phase.CPID:
            return self._cpid(line)
        command, sep, args = line.partition("\t")
        if sep:
            if command == "AUTH":
                return self._auth(args)
            if command == "CONT":
                return self._cont(args)
            if command == "CANCEL":
                return self._cancel(args)
        raise ProtocolError(f"unknown command: {line[:80]!r}")

    def _version(self, line: str) -> ClientVersion:
        parts = line.split("\t")
        major = parse_uint(parts[1]) if len(parts) == 3 and parts[0] == "VERSION" else None
        minor = parse_uint(parts[2]) if major is not None else None
        if major is None or minor is None:
            raise ProtocolError(f"invalid VERSION line: {line[:80]!r}")
        if major != PROTOCOL_VERSION[0]:
            raise ProtocolError(f"unsupported protocol major version {major}")
        self._phase = _Phase.CPID
        self.version = ClientVersion(major=major, minor=minor)
        return self.version

    def _cpid(self, line: str) -> ClientCpid:
        command, sep, args = line.partition("\t")
        if command != "CPID" or not sep:
            raise ProtocolError(f"expected CPID in the handshake, got {line[:80]!r}")
        pid = parse_uint(args)
        if not pid:
            raise ProtocolError(f"invalid CPID: {args[:80]!r}")
        self._phase = _Phase.READY
        self.client_pid = pid
        return ClientCpid(pid=pid)

    def _auth(self, args: str) -> AuthRequest | RequestRejected:
        fields = split_fields(args)
        request_id = parse_uint(fields[0])
        if len(fields) < 2 or not request_id:
            raise ProtocolError("broken AUTH request: bad id or no mechanism")
        mechanism = fields[1].upper()
        if mechanism not in self.mechanisms:
            raise ProtocolError(f"unsupported mechanism {fields[1][:40]!r}")
        values: dict[str, Any] = {}
        extra: list[tuple[str, str | None]] = []
        resp: str | None = None
        params = fields[2:]
        for index, param in enumerate(params):
            name, sep, text = param.partition("=")
            convert = INFO_PARAMS.get(name)
            if convert is not None:
                values[name] = convert(text)
                continue
            value = text if sep else None
            if name == "secured":
                values["secured"] = value if value is not None else ""
            elif name in _AUTH_FLAGS:
                values[_AUTH_FLAGS[name]] = True
            elif name == "cert_username":
                values["cert_username"] = value or None
            elif name == "resp":
                if index != len(params) - 1:
                    raise ProtocolError(f"AUTH {request_id}: parameters after resp")
                resp = value if value is not None else ""
            elif name:
                extra.append((name, value))
        if "service" not in values:
            raise ProtocolError(f"AUTH {request_id}: no service")
        if request_id in self._requests:
            raise ProtocolError(f"AUTH {request_id}: duplicate id")
        if len(self._requests) >= self.max_pending:
            return RequestRejected(
                id=request_id,
                reason=REASON_TOO_MANY,
                reply=_fail_line(request_id, code="temp_fail", reason=REASON_TOO_MANY),
            )
        initial: bytes | None
        assert self.version is not None
        if resp is None or (resp == "" and self.version.minor < _EMPTY_RESP_MINOR):
            initial = None
        elif resp in ("", "="):
            initial = b""
        else:
            initial = decode_base64(resp)
            if initial is None:
                return RequestRejected(
                    id=request_id,
                    reason=REASON_BAD_BASE64_INITIAL,
                    reply=_fail_line(
                        request_id, code="invalid_base64", reason=REASON_BAD_BASE64_INITIAL
                    ),
                )
        self._requests[request_id] = _Request.WORKING
        return AuthRequest(
            id=request_id,
            mechanism=mechanism,
            initial_response=initial,
            extra_params=tuple(extra),
            **values,
        )

    def _cont(self, args: str) -> ContinueRequest | RequestRejected:
        id_text, sep, data = args.partition("\t")
        request_id = parse_uint(id_text)
        if not sep or request_id is None:
            raise ProtocolError("broken CONT request")
        state = self._requests.get(request_id)
        if state is None:
            return RequestRejected(
                id=request_id,
                reason=REASON_TIMED_OUT,
                reply=_fail_line(request_id, reason=REASON_TIMED_OUT),
            )
        if state is not _Request.AWAITING_CONT:
            del self._requests[request_id]
            return RequestRejected(
                id=request_id,
                reason=REASON_UNEXPECTED_CONT,
                reply=_fail_line(request_id, reason=REASON_UNEXPECTED_CONT),
            )
        decoded = decode_base64(data)
        if decoded is None:
            del self._requests[request_id]
            return RequestRejected(
                id=request_id,
                reason=REASON_BAD_BASE64_CONT,
                reply=_fail_line(request_id, code="invalid_base64", reason=REASON_BAD_BASE64_CONT),
            )
        self._requests[request_id] = _Request.WORKING
        return ContinueRequest(id=request_id, data=decoded)

    def _cancel(self, args: str) -> CancelRequest | None:
        request_id = parse_uint(args)
        if request_id is None:
            raise ProtocolError("broken CANCEL request")
        if self._requests.pop(request_id, None) is None:
            return None  # unknown or finished: Dovecot ignores it silently
        return CancelRequest(id=request_id)

    # ------------------------------------------------------------------ replies

    def _take(self, request_id: int, *, finish: bool) -> _Request:
        state = self._requests.get(request_id)
        if state is None:
            raise ValueError(f"request {request_id} is not pending")
        if finish:
            del self._requests[request_id]
        return state

    def ok(
        self,
        request_id: int,
        user: str,
        fields: Fields = (),
        *,
        resp: bytes | None = None,
    ) -> bytes:
        """``OK``: request ``request_id`` succeeded as ``user`` (always the first field).

        ``fields`` follow (passdb extra fields, ``original_user``, ``auth_user``…); a
        ``None`` value is a bare word, and ``nologin``/``proxy`` are always sent bare,
        as Dovecot does. ``resp`` is SASL success data for a ``final-resp-ok`` client.
        """
        self._take(request_id, finish=True)
        cleaned = [(k, None if k in _ALWAYS_BARE else v) for k, v in as_items(fields)]
        line = f"OK\t{request_id}\tuser={escape(user)}{format_fields(cleaned)}"
        if resp:
            line += "\tresp=" + base64.b64encode(resp).decode("ascii")
        return encode_line(line)

    def accepted(
        self,
        request_id: int,
        *,
        user: str,
        passdb_fields: Mapping[str, str],
        original_user: str | None = None,
        master_user: str | None = None,
        anonymous: bool = False,
        resp: bytes | None = None,
    ) -> bytes:
        """``OK`` for a login the engine accepted as ``user``, fields in Dovecot's order:
        the passdb fields (an empty value is a bare word), ``original_user`` when the
        name as typed differs, ``auth_user`` for a master login, ``anonymous``. (The
        hot path of every login: one string, no intermediate field list.)"""
        self._take(request_id, finish=True)
        parts = [f"OK\t{request_id}\tuser={escape(user)}"]
        for name, value in passdb_fields.items():
            if not value or name in _ALWAYS_BARE:
                parts.append(escape(name))
            else:
                parts.append(f"{escape(name)}={escape(value)}")
        if original_user is not None and original_user != user:
            parts.append(f"original_user={escape(original_user)}")
        if master_user is not None:
            parts.append(f"auth_user={escape(master_user)}")
        if anonymous:
            parts.append("anonymous")
        if resp:
            parts.append("resp=" + base64.b64encode(resp).decode("ascii"))
        return encode_line("\t".join(parts))

    def denied(
        self,
        request_id: int,
        *,
        user: str | None,
        reason: DenyReason,
        message: str | None = None,
        nodelay: bool = False,
    ) -> bytes:
        """``FAIL`` for a login the engine denied; ``user`` is the name as typed.

        Only a disabled account (``code=user_disabled``, with ``message`` as the
        reason the user sees) and a refused authorization (``code=authz_fail``) say
        why; every other reason is a bare FAIL, so that unknown user and wrong
        password look the same. ``nodelay`` adds the bare field of that name.
        """
        code: str | None = None
        text: str | None = None
        match reason:
            case DenyReason.DISABLED | DenyReason.SERVICE_DISABLED:
                code, text = "user_disabled", message
            case DenyReason.AUTHZ:
                code = "authz_fail"
            case (
                DenyReason.CREDENTIALS | DenyReason.NETWORK | DenyReason.SCHEME | DenyReason.BLOCKED
            ):
                pass
            case _:
                assert_never(reason)
        fields = _NODELAY if nodelay else ()
        return self.fail(request_id, user=user, code=code, reason=text, fields=fields)

    def temp_failed(self, request_id: int, *, user: str | None) -> bytes:
        """``FAIL … code=temp_fail``: the server could not decide; the client may retry."""
        return self.fail(request_id, user=user, code="temp_fail")

    def fail(
        self,
        request_id: int,
        *,
        user: str | None = None,
        code: str | None = None,
        reason: str | None = None,
        fields: Fields = (),
    ) -> bytes:
        """``FAIL``: request ``request_id`` failed.

        ``code`` is one of Dovecot 2.3's: ``temp_fail``, ``authz_fail``,
        ``user_disabled``, ``pass_expired``, ``invalid_base64``. ``reason`` is text
        the user may see; never say whether the user exists.
        """
        self._take(request_id, finish=True)
        return _fail_line(request_id, user=user, code=code, reason=reason, fields=fields)

    def forget(self, request_id: int) -> None:
        """Drop a pending request without a reply.

        What Dovecot does to a request that waited 150 s for the client's CONT
        (``MASTER_AUTH_SERVER_TIMEOUT_SECS``): Postfix never sends CANCEL, so
        abandoned requests would otherwise stay pending forever. A later CONT for
        the id gets ``reason=Authentication request timed out``.
        """
        self._take(request_id, finish=True)

    def cont(self, request_id: int, data: bytes) -> bytes:
        """``CONT``: send a challenge (base64, possibly empty) and await the client's CONT."""
        if self._take(request_id, finish=False) is _Request.AWAITING_CONT:
            raise ValueError(f"request {request_id} is already waiting for the client")
        self._requests[request_id] = _Request.AWAITING_CONT
        return encode_line(f"CONT\t{request_id}\t" + base64.b64encode(data).decode("ascii"))
