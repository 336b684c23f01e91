"""The Cyrus saslauthd wire protocol, sans I/O.

What belongs here: decoding one request (four counted strings: login, password,
service, realm; each a 2-byte big-endian length and that many bytes) and encoding
the reply (one counted string, ``OK`` or ``NO <reason>``). One request per
connection; the front end in frontends/saslauthd.py does the socket work.

libsasl2 (``pwcheck_method: saslauthd``) and testsaslauthd only look at the
first two bytes of the reply: ``OK`` is success, anything else a failed
login. A connection closed without a reply is a *generic* failure for libsasl2
(SASL_FAIL, Postfix answers 454 "temporary authentication failure"), which is
how the front end reports a backend outage: never as a wrong password.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mailwarden.errors import ProtocolError
from mailwarden.model import Password

# saslauthd's own limit per string (MAX_REQ_LEN); a longer one is refused unread.
MAX_FIELD = 1024
FIELDS = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SaslauthdRequest:
    """One verification request as libsasl2 sends it."""

    login: str
    password: Password
    service: str
    realm: str


class RequestReader:
    """Feed bytes with :meth:`receive_data`; :meth:`next_event` returns the request
    once it is complete (and ``None`` before and after)."""

    def __init__(self, *, max_field: int = MAX_FIELD) -> None:
        self._buffer = bytearray()
        self._max_field = max_field
        self._done = False

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket (``b""``, the end of the stream, adds nothing)."""
        if self._done and data:
            raise ProtocolError("saslauthd request followed by extra data")
        self._buffer += data
        # Reject early: a peer announcing an oversized string is refused before it sends it.
        self._scan()

    def _scan(self) -> list[bytes] | None:
        fields: list[bytes] = []
        pos = 0
        while len(fields) < FIELDS:
            if len(self._buffer) < pos + 2:
                return None
            (size,) = struct.unpack_from(">H", self._buffer, pos)
            if size > self._max_field:
                raise ProtocolError(
                    f"saslauthd field {len(fields) + 1} longer than {self._max_field} bytes"
                )
            if len(self._buffer) < pos + 2 + size:
                return None
            fields.append(bytes(self._buffer[pos + 2 : pos + 2 + size]))
            pos += 2 + size
        if len(self._buffer) > pos:
            raise ProtocolError("saslauthd request followed by extra data")
        return fields

    def next_event(self) -> SaslauthdRequest | None:
        """The request, or None while incomplete. ProtocolError for malformed input."""
        fields = None if self._done else self._scan()
        if fields is None:
            return None
        self._done = True
        login, password, service, realm = fields
        try:
            return SaslauthdRequest(
                login=login.decode("utf-8"),
                password=Password(password),
                service=service.decode("utf-8"),
                realm=realm.decode("utf-8"),
            )
        except UnicodeDecodeError:
            raise ProtocolError("saslauthd login, service or realm is not UTF-8") from None


def encode_request(login: bytes, password: bytes, service: bytes, realm: bytes) -> bytes:
    """A request as libsasl2 writes it (used by tests and the bench)."""
    return b"".join(_counted(x) for x in (login, password, service, realm))


def reply_ok() -> bytes:
    return _counted(b"OK")


def reply_no(reason: str) -> bytes:
    return _counted(b"NO " + reason.encode("utf-8", "replace")[:1000])


def _counted(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data
