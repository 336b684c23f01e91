"""Ask an auth server over its Dovecot sockets, as doveadm does (blocking).

``mailwarden auth test -a SOCKET`` (client socket), ``auth lookup -a SOCKET`` and
``user-lookup -a SOCKET`` (userdb or master socket) send one request and read one
reply; the bytes are :mod:`mailwarden.protocols.dovecot_libauth`'s (lib-auth's side
of the protocol, sans I/O). The server may be mailwarden or Dovecot itself.

A blocking socket, as in :mod:`mailwarden.client`: the command line has no event
loop. Every wait is bounded by ``timeout`` (each read, and the whole exchange).
Errors, for the caller to word: :class:`OSError` (``FileNotFoundError``,
``ConnectionRefusedError``, ``PermissionError``, ``TimeoutError``) when the server
cannot be reached or is too slow, :class:`~mailwarden.errors.ProtocolError` when
what it says is not the protocol (or it closed before replying).
"""

from __future__ import annotations

import os
import socket
import time
from typing import TypeVar

from mailwarden.protocols.dovecot_libauth import AuthReply, Replies, UserReply

ReplyT = TypeVar("ReplyT", AuthReply, UserReply)

#: Bytes read at once; the reader itself limits a line (dovecot_common.LineReader).
_CHUNK = 65536


def exchange(
    path: str | os.PathLike[str], request: bytes, replies: Replies[ReplyT], *, timeout: float
) -> ReplyT:
    """Connect to UNIX socket ``path``, send ``request``, return the one reply."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(request)
        while (reply := replies.next_event()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply within {timeout:g} s")
            sock.settimeout(left)
            replies.receive_data(sock.recv(_CHUNK))
        return reply
