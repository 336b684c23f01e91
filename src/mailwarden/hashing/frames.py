"""Frames between the daemon and its hashing worker processes (sans-I/O).

Each frame is a 4-byte big-endian length and then that many bytes of a ``marshal``
tuple (both ends are this program, run from the same installation, so marshal's
lack of a stable format across Python versions does not matter, and it is the
fastest encoder of small tuples the standard library has):

* request, daemon to worker: ``(id, password, scheme, encoding, data, user)``,
  the parts of a :class:`~mailwarden.schemes.base.StoredHash` (``encoding`` ``""``
  for none);
* answer, worker to daemon: ``(id, verdict, error, message)``, ``verdict`` a bool,
  or ``None`` with the name of the error class and its message.

A frame that does not decode to that shape, or is longer than :data:`MAX_FRAME`,
is a :class:`~mailwarden.errors.ProtocolError`: the peer is broken, and the
daemon replaces a broken worker.
"""

from __future__ import annotations

import marshal
from typing import TypeAlias

from mailwarden.errors import ProtocolError

Request: TypeAlias = tuple[int, bytes, str, str, str, str]
Answer: TypeAlias = tuple[int, "bool | None", str, str]

MAX_FRAME = 1 << 20
"""No request or answer comes near this (passwords and stored values are short)."""

_HEADER = 4


def encode_frame(message: Request | Answer) -> bytes:
    """One frame holding ``message``."""
    body = marshal.dumps(message)
    return len(body).to_bytes(_HEADER, "big") + body


class FrameReader:
    """Splits a byte stream into decoded frames (the base of the two readers below)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the pipe."""
        self._buffer += data

    def _next(self) -> object | None:
        buffer = self._buffer
        if len(buffer) < _HEADER:
            return None
        size = int.from_bytes(buffer[:_HEADER], "big")
        if size > MAX_FRAME:
            raise ProtocolError(f"hashing frame of {size} bytes is over the limit")
        end = _HEADER + size
        if len(buffer) < end:
            return None
        body = bytes(buffer[_HEADER:end])
        del buffer[:end]
        try:
            # Both ends are this program (module docstring): not untrusted input.
            message: object = marshal.loads(body)  # noqa: S302
        except (EOFError, ValueError, TypeError) as exc:
            raise ProtocolError(f"undecodable hashing frame: {exc}") from exc
        return message


class RequestReader(FrameReader):
    """The worker's side: requests from the daemon."""

    def next_event(self) -> Request | None:
        """The next complete request, or None."""
        message = self._next()
        if message is None:
            return None
        if not (
            isinstance(message, tuple)
            and len(message) == 6
            and isinstance(message[0], int)
            and isinstance(message[1], bytes)
            and all(isinstance(part, str) for part in message[2:])
        ):
            raise ProtocolError("malformed hashing request")
        return message


class AnswerReader(FrameReader):
    """The daemon's side: answers from a worker."""

    def next_event(self) -> Answer | None:
        """The next complete answer, or None."""
        message = self._next()
        if message is None:
            return None
        if not (
            isinstance(message, tuple)
            and len(message) == 4
            and isinstance(message[0], int)
            and (message[1] is None or isinstance(message[1], bool))
            and isinstance(message[2], str)
            and isinstance(message[3], str)
        ):
            raise ProtocolError("malformed hashing answer")
        return message
