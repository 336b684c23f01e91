"""Session forwarding: log in on the account's mail host and relay bytes both ways.

What belongs here: the socket work of qmail-ldap's "session forwarding" for the
checkpassword command (a process per session, so plain blocking sockets and a
selector, no event loop): connect with a timeout, run the sans-I/O login dialog
of protocols/mailproxy.py, pass the mail host's success line to the client, then
copy bytes in both directions until either side closes or the session is idle
for too long.

Exit codes follow checkpassword: 111 (temporary failure) when the mail host
cannot be reached, refuses the login or breaks the protocol before the client
saw anything; 0 once a relayed session ends, however it ends, because by then
the client has already been told it is logged in.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Literal

from mailwarden.cluster import mailproxy
from mailwarden.errors import ProtocolError, RelayError

EXIT_OK = 0
EXIT_TEMPFAIL = 111
CHUNK = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where and how to log in for one forwarded session."""

    host: str
    port: int
    protocol: Literal["pop3", "imap"]
    user: bytes
    password: bytes
    imap_method: Literal["login", "plain"] = "plain"
    client_tag: bytes = b""


def forward(
    target: Target,
    *,
    client_in: int = 0,
    client_out: int = 1,
    connect_timeout: float,
    idle_timeout: float,
) -> int:
    """Run one forwarded session; returns the process exit code (see module docstring)."""
    try:
        sock = socket.create_connection((target.host, target.port), timeout=connect_timeout)
    except OSError as exc:
        raise RelayError(f"cannot connect to {target.host}:{target.port}: {exc}") from exc
    with sock:
        leftover = _login(sock, target)
        sock.settimeout(None)
        sock.setblocking(False)
        _write_all(client_out, leftover)
        _relay(sock, client_in, client_out, idle_timeout)
    with contextlib.suppress(OSError):
        os.close(client_out)
    return EXIT_OK


def _login(sock: socket.socket, target: Target) -> bytes:
    """Run the login dialog; the client reply (and any bytes after it) to pass on."""
    dialog = mailproxy.LoginDialog(
        target.protocol, target.user, target.password, imap_method=target.imap_method
    )
    buffer = b""
    while True:
        while b"\n" not in buffer:
            if len(buffer) > mailproxy.MAX_LINE:
                raise RelayError("mail host sent an over-long line")
            try:
                data = sock.recv(CHUNK)
            except OSError as exc:
                raise RelayError(f"mail host {target.host}: {exc}") from exc
            if not data:
                raise RelayError(f"mail host {target.host} closed during login")
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        line += b"\n"
        try:
            step = dialog.receive_line(line)
        except ProtocolError as exc:
            raise RelayError(f"mail host {target.host}: {exc}") from exc
        match step:
            case mailproxy.Send():
                sock.sendall(step.data)
            case mailproxy.LoggedIn():
                reply = mailproxy.client_reply(target.protocol, step.reply, target.client_tag)
                return reply + buffer
            case mailproxy.Refused():
                raise RelayError(f"mail host {target.host} refused the login: {step.reply!r}")
            case None:
                continue


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _relay(sock: socket.socket, client_in: int, client_out: int, idle_timeout: float) -> None:
    """Copy bytes both ways until the mail host closes, or the client closes and the
    mail host finishes, or nothing moves for ``idle_timeout`` seconds."""
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "server")
    sel.register(client_in, selectors.EVENT_READ, "client")
    client_open = True
    last = time.monotonic()
    try:
        while True:
            remaining = idle_timeout - (time.monotonic() - last)
            if remaining <= 0:
                return
            events = sel.select(remaining)
            for key, _mask in events:
                last = time.monotonic()
                if key.data == "server":
                    try:
                        data = sock.recv(CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    try:
                        _write_all(client_out, data)
                    except OSError:
                        return  # the client went away mid-write
                elif client_open:
                    data = os.read(client_in, CHUNK)
                    if not data:
                        # The client closed: let the mail host finish (QUIT's reply).
                        client_open = False
                        sel.unregister(client_in)
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_WR)
                        continue
                    sock.setblocking(True)
                    try:
                        sock.sendall(data)
                    except OSError:
                        return
                    finally:
                        sock.setblocking(False)
    finally:
        sel.close()
