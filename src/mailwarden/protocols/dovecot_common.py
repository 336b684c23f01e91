"""What Dovecot's auth protocols share: lines, TAB fields, ``\\001`` escaping, base64.

Both sockets (client: :mod:`~mailwarden.protocols.dovecot_client`; master and userdb:
:mod:`~mailwarden.protocols.dovecot_master`) speak LF-terminated lines of
TAB-separated fields. Everything here is pure and follows Dovecot 2.3's own code
(reference §1.1), because the peers are Dovecot's library, Postfix and Exim:

* **Framing.** A trailing CR is dropped (Dovecot's ``i_stream_next_line``). A line
  may be at most ``max_line_length`` bytes *including* its LF: that is the size of
  Dovecot's input buffer (16384 on client sockets), so the same lines are accepted.
  A longer line is a :class:`~mailwarden.errors.ProtocolError` as soon as the limit
  is passed, without waiting for its end. A NUL byte is a ProtocolError too: Dovecot
  reads lines as C strings, so no legitimate peer sends one.
* **Escaping** (``str_append_tabescaped``/``str_tabunescape``, lib/strescape.c):
  ``\\001`` becomes the two bytes ``\\001 1`` (0x01 0x31), TAB ``\\001 t``, CR
  ``\\001 r``, LF ``\\001 n`` and NUL ``\\001 0``. Unescaping maps ``\\001`` plus any
  other character to that character and drops a trailing lone ``\\001``.
* **Text.** Lines are decoded as UTF-8 with ``surrogateescape``: no byte sequence
  fails to decode, and replies encode the same way, so a name echoes back exactly.
* **Base64** is decoded like Dovecot's ``base64_decode`` with no flags: spaces,
  TABs, CRs and LFs anywhere are ignored and ``=`` padding is required.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from mailwarden.errors import LocalProtocolError, ProtocolError
from mailwarden.model import parse_ip as parse_ip_address
from mailwarden.records import record

DEFAULT_MAX_LINE_LENGTH = 16384
"""Dovecot's ``AUTH_CLIENT_MAX_LINE_LENGTH`` (lib-auth/auth-client-interface.h)."""

UINT_MAX = 2**32 - 1

Fields: TypeAlias = Mapping[str, str | None] | Iterable[tuple[str, str | None]]
"""Reply fields: ``name -> value``; a ``None`` value is sent as a bare word (``nologin``)."""

Params: TypeAlias = tuple[tuple[str, str | None], ...]
"""Parameters kept as received: ``(name, value)``, ``None`` for a bare word."""

# --------------------------------------------------------------------------- escaping

_ESCAPES = {"\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n", "\0": "\x010"}
_ESCAPE_RE = re.compile("[\x01\t\r\n\0]")
_UNESCAPES = {"0": "\0", "1": "\x01", "t": "\t", "r": "\r", "n": "\n"}
_UNESCAPE_RE = re.compile("\x01(.?)", re.DOTALL)


def escape(value: str) -> str:
    """Tab-escape ``value`` so it can be one field of a line."""
    if _ESCAPE_RE.search(value) is None:  # nearly always: no regex substitution
        return value
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group()], value)


def unescape(value: str) -> str:
    """Undo :func:`escape` the way Dovecot does (unknown escapes give the character)."""
    if "\x01" not in value:
        return value
    return _UNESCAPE_RE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), value)


def split_fields(text: str) -> list[str]:
    """TAB-split and unescape each field (Dovecot's ``t_strsplit_tabescaped``)."""
    if "\x01" not in text:
        return text.split("\t")
    return [unescape(part) for part in text.split("\t")]


def split_param(field: str) -> tuple[str, str | None]:
    """``name=value`` split at the first ``=``; a bare word has value ``None``."""
    name, sep, value = field.partition("=")
    return (name, value) if sep else (name, None)


def as_items(fields: Fields) -> Iterable[tuple[str, str | None]]:
    """``fields`` as ``(name, value)`` pairs (lists and tuples are checked first:
    that is what the front ends pass, and an ABC check costs a microsecond)."""
    if isinstance(fields, (list, tuple)) or not isinstance(fields, Mapping):
        return fields
    return fields.items()


def format_fields(fields: Fields) -> str:
    """Reply fields as ``\\tname=value`` / ``\\tname`` with escaped names and values."""
    items = as_items(fields)
    out = []
    for name, value in items:
        out.append("\t" + escape(name) if value is None else f"\t{escape(name)}={escape(value)}")
    return "".join(out)


def stored(fields: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Directory fields as reply fields: a field stored with an empty value is a bare
    word on the wire (``nologin``, ``proxy``), as Dovecot sends it."""
    return [(name, value or None) for name, value in fields.items()]


def encode_line(line: str) -> bytes:
    """A reply line as bytes, LF-terminated."""
    return (line + "\n").encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- values


def parse_uint(text: str) -> int | None:
    """Dovecot's ``str_to_uint``: decimal digits only, at most 2**32-1; else ``None``."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= UINT_MAX else None


def parse_ip(text: str) -> str | None:
    """The address if ``text`` is an IPv4/IPv6 address (``[v6]`` too), else ``None``.

    Dovecot silently ignores a bad ``lip``/``rip`` (``net_addr2ip`` fails), and so
    do we: the value is kept as sent when it parses, dropped when it does not.
    """
    try:
        return _ADDRESSES[text]
    except KeyError:
        pass
    # Remembered: the same client addresses come back on every request, and
    # even the fast parse costs a few microseconds.
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    found: str | None = candidate
    try:
        parse_ip_address(candidate)
    except ValueError:
        found = None
    if len(_ADDRESSES) >= _ADDRESSES_KEPT:
        _ADDRESSES.clear()
    _ADDRESSES[text] = found
    return found


_ADDRESSES: dict[str, str | None] = {}
_ADDRESSES_KEPT = 16384


def parse_port(text: str) -> int | None:
    """Dovecot's ``net_str2port``: 1-65535, else ``None`` (and the parameter is ignored)."""
    value = parse_uint(text)
    return value if value is not None and 0 < value <= 65535 else None


_B64_WHITESPACE = str.maketrans("", "", " \t\r\n")
_B64_SHAPE = re.compile(r"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def decode_base64(text: str) -> bytes | None:
    """Base64 as Dovecot 2.3 decodes it (whitespace ignored, padding required), or ``None``."""
    try:
        # What clients send: canonical base64, which strict mode takes in one C call.
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    compact = text.translate(_B64_WHITESPACE)
    if len(compact) % 4 or not _B64_SHAPE.fullmatch(compact):
        return None
    try:
        return binascii.a2b_base64(compact)
    except (binascii.Error, ValueError):
        return None


# --------------------------------------------------------------------------- request info


@record
class RequestInfo:
    """The connection details a client or master attaches to a request.

    These are the parameters Dovecot's ``auth_request_import_info`` knows, kept as
    sent: ``lip``/``rip`` and the ports only when valid, and ``real_*`` only when the
    client sent them (Dovecot defaults them to the plain values; do that when
    building an attempt). ``forward_fields`` is the decoded ``forward_fields=`` list
    (names without their ``forward_`` prefix). ``extra_params`` keeps every
    parameter this codec does not know, in order.
    """

    service: str = ""
    lip: str | None = None
    rip: str | None = None
    lport: int | None = None
    rport: int | None = None
    real_lip: str | None = None
    real_rip: str | None = None
    real_lport: int | None = None
    real_rport: int | None = None
    local_name: str | None = None
    session: str | None = None
    client_id: str | None = None
    forward_fields: Params = ()
    debug: bool = False
    extra_params: Params = ()


def decode_forward_fields(value: str) -> Params:
    """``forward_fields=``: a tab-escaped list of ``name=value`` items, itself escaped once more."""
    if not value:
        return ()
    return tuple(split_param(item) for item in split_fields(value))


def _flag(_text: str) -> bool:
    return True


INFO_PARAMS: dict[str, Callable[[str], Any]] = {
    "service": str,
    "local_name": str,
    "session": str,
    "client_id": str,
    "lip": parse_ip,
    "rip": parse_ip,
    "real_lip": parse_ip,
    "real_rip": parse_ip,
    "lport": parse_port,
    "rport": parse_port,
    "real_lport": parse_port,
    "real_rport": parse_port,
    "forward_fields": decode_forward_fields,
    "debug": _flag,
}
"""The RequestInfo parameters: name -> the value to keep, from the text after ``=``
(``""`` for a bare word). An invalid address or port gives ``None``: the parameter
is handled and dropped, as in Dovecot."""


def import_info(values: dict[str, Any], name: str, value: str | None) -> bool:
    """Store ``name``/``value`` into ``values`` if it is a RequestInfo parameter.

    Returns whether the name was one of them (see :data:`INFO_PARAMS`).
    """
    convert = INFO_PARAMS.get(name)
    if convert is None:
        return False
    values[name] = convert(value if value is not None else "")
    return True


@record
class ConnectionClosed:
    """The peer closed its side. ``pending`` lists the requests left unanswered."""

    pending: tuple[int, ...] = ()


# --------------------------------------------------------------------------- framing


class LineReader:
    """Splits a byte stream into lines, enforcing the line-length limit.

    ``receive_data(b"")`` marks the end of the stream; a partial last line is then dropped,
    as Dovecot drops it. A pipelining peer sends hundreds of lines in one read:
    they are split off the buffer at once, and each is checked (length, NUL) and
    decoded when it is asked for, so a bad line is an error at its turn, after
    the lines before it.
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        if max_line_length < 2:
            raise ValueError("max_line_length must allow at least one byte and the LF")
        self.max_line_length = max_line_length
        self._buffer = bytearray()
        self._ready: list[bytes] = []  # complete lines split off, without their LF
        self._next = 0  # index of the next line in _ready
        self._eof = False

    @property
    def eof(self) -> bool:
        """The stream has ended (no more data will be fed)."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as lines."""
        waiting = self._ready[self._next :]
        return len(self._buffer) + sum(len(line) + 1 for line in waiting)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the peer closed its side."""
        if self._eof:
            if data:
                raise LocalProtocolError("data received after the end of the stream")
            return
        if not data:
            self._eof = True
            return
        self._buffer += data

    def next_event(self) -> str | None:
        """The next complete line without its (CR)LF, or ``None`` if there is none yet."""
        if self._next >= len(self._ready) and not self._split():
            return None
        raw = self._ready[self._next]
        self._next += 1
        if len(raw) >= self.max_line_length:
            raise ProtocolError(
                f"line of {len(raw)} bytes is over the limit of {self.max_line_length - 1}"
            )
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\0" in raw:
            raise ProtocolError("NUL byte in a protocol line")
        return raw.decode("utf-8", "surrogateescape")

    def _split(self) -> bool:
        """Move every complete line of the buffer to ``_ready``; False if there is none."""
        buffer = self._buffer
        last = buffer.rfind(b"\n")
        if last < 0:
            if len(buffer) >= self.max_line_length:
                raise ProtocolError(
                    f"line longer than {self.max_line_length - 1} bytes (limit "
                    f"{self.max_line_length} including the LF)"
                )
            return False
        self._ready = bytes(buffer[:last]).split(b"\n")
        self._next = 0
        del buffer[: last + 1]
        return True
