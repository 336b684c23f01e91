"""Ask the running daemon: the one client of its control socket (blocking).

``mailwarden guard|status|cache ...`` (cli/control.py), the mail gateway's cache flush
after a password change (mailgate/gateway.py) and the guard store of one-shot
commands (guard/stores/control.py) all talk to ``server.control_socket`` through
:class:`DaemonClient`; the wire format is :mod:`mailwarden.protocols.control`.

A blocking socket, not asyncio: the command line and the gateway have no event
loop, and a one-shot command's guard store runs it in a thread. Every wait is
bounded by ``timeout``. Errors, for the caller to word:

* :class:`OSError`: the daemon cannot be reached or stopped talking -
  ``FileNotFoundError`` / ``ConnectionRefusedError`` (not running),
  ``PermissionError`` (not the socket's owner), ``TimeoutError``, and
  :class:`~mailwarden.errors.DaemonClosed` (it closed the connection before replying);
* :class:`~mailwarden.errors.ProtocolError`: the daemon refused the request (its
  message) or its reply is not the protocol.
"""

from __future__ import annotations

import os
import socket
from types import TracebackType
from typing import Any

from mailwarden.errors import DaemonClosed
from mailwarden.protocols import control


class DaemonClient:
    """One connection to the daemon's control socket, opened on the first request and
    kept for the next ones (``with DaemonClient(...) as client``, or :meth:`close`)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lines = control.LineReader()

    def ask(self, op: str, **args: Any) -> Any:
        """Send one request and return its result (errors: see the module docstring).
        After an OSError the connection is closed; the next request opens a new one."""
        try:
            return self._exchange(control.request(op, **args))
        except OSError:
            self.close()
            raise

    def _exchange(self, request: bytes) -> Any:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._lines = control.LineReader()
        self._sock.sendall(request)
        while (line := self._lines.next_event()) is None:
            data = self._sock.recv(65536)
            if not data:
                raise DaemonClosed
            self._lines.receive_data(data)
        return control.parse_reply(line)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def ask_daemon(path: str | os.PathLike[str], op: str, *, timeout: float, **args: Any) -> Any:
    """One request on a connection of its own (see :class:`DaemonClient`)."""
    with DaemonClient(path, timeout=timeout) as client:
        return client.ask(op, **args)
