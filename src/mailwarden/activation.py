"""Socket activation: listening sockets that systemd bound for us (sd_listen_fds(3)).

With a ``.socket`` unit (etc/systemd/mailwarden.socket), systemd binds the socket
files and ports itself, before the daemon runs, with the owner and mode the unit
gives, and passes them on start: ``$LISTEN_PID`` is our pid, ``$LISTEN_FDS`` says
how many descriptors, from 3 on. Peers can connect as soon as systemd listens;
their connections wait in the backlog until the daemon accepts.

Each passed socket is matched to a configured listener by its address (a UNIX
path, or host and port), so the ``.socket`` unit needs no names; listeners the
unit does not pass are bound by the daemon as usual (prefork.bind_all). A passed
socket that no listener uses is a configuration error. Socket files systemd made
are systemd's: the daemon never removes them.
"""

from __future__ import annotations

import os
import socket

from mailwarden.errors import ConfigError
from mailwarden.frontends.inherited import listen_addresses

__all__ = ["Activated", "listen_fds"]

SD_LISTEN_FDS_START = 3


def listen_fds() -> list[socket.socket]:
    """The sockets systemd passed to this process (none if it passed none), once: the
    variables are removed so that child processes do not take them for theirs."""
    pid = os.environ.pop("LISTEN_PID", "")
    count = os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid != str(os.getpid()) or not count.isdigit():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


class Activated:
    """The passed sockets, taken one by one by the listeners they belong to."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self._left = list(sockets)

    def __bool__(self) -> bool:
        return bool(self._left)

    def take_unix(self, path: str) -> socket.socket | None:
        """The passed UNIX socket bound at ``path`` (resolved), if there is one."""
        for sock in self._left:
            if sock.family == socket.AF_UNIX and sock.getsockname() == path:
                self._left.remove(sock)
                return sock
        return None

    def take_tcp(self, address: str, *, key: str) -> list[socket.socket]:
        """The passed TCP sockets of ``host:port`` (one per address the host resolves to)."""
        wanted = {(family, addr[:2]) for family, _, addr in listen_addresses(address, key=key)}
        found = [
            sock
            for sock in self._left
            if sock.family in (socket.AF_INET, socket.AF_INET6)
            and (sock.family, sock.getsockname()[:2]) in wanted
        ]
        for sock in found:
            self._left.remove(sock)
        return found

    def check_all_taken(self) -> None:
        """ConfigError naming the passed sockets no listener took (they are closed)."""
        if not self._left:
            return
        names = ", ".join(str(sock.getsockname()) for sock in self._left)
        for sock in self._left:
            sock.close()
        self._left.clear()
        raise ConfigError(
            f"socket activation: systemd passed sockets that no listener of the "
            f"configuration uses: {names}"
        )
