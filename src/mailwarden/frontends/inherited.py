"""Listening sockets a worker inherits from the supervisor that bound them (``serve --workers``).

With several workers (mailwarden/prefork.py) the supervisor binds every listener
once, before it forks, and each worker accepts on the same sockets; the kernel
hands each new connection to one of them. A front end given an
:class:`InheritedSockets` takes its socket from there instead of binding, and
never removes a UNIX socket file when it stops: the file belongs to the
supervisor, and the other workers still accept on it.

Sockets are found by the config key that names them and the address as written
in the configuration (a path before it is resolved, or ``host:port``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from mailwarden.errors import ConfigError

__all__ = ["InheritedSockets", "bind_tcp"]


class InheritedSockets:
    """The supervisor's listening sockets, by (config key, configured address)."""

    def __init__(self) -> None:
        self._sockets: dict[tuple[str, str], list[socket.socket]] = {}

    def add(self, key: str, address: str, sockets: Iterable[socket.socket]) -> None:
        self._sockets.setdefault((key, address), []).extend(sockets)

    def get(self, key: str, address: str) -> list[socket.socket]:
        """The sockets bound for ``address`` under ``key``; ConfigError if there are none
        (the worker's config differs from the one its supervisor bound)."""
        found = self._sockets.get((key, address))
        if not found:
            raise ConfigError(f"no inherited listener for {address}", key=key)
        return found

    def all(self) -> list[socket.socket]:
        return [sock for socks in self._sockets.values() for sock in socks]

    def close(self) -> None:
        for sock in self.all():
            sock.close()
        self._sockets.clear()


def listen_addresses(
    address: str, *, key: str
) -> list[tuple[socket.AddressFamily, int, tuple[object, ...]]]:
    """``(family, proto, sockaddr)`` of each address a listener on ``host:port``
    binds, as ``asyncio.start_server`` would (an empty host: every address); a host
    that does not resolve is a ConfigError naming ``key``."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    try:
        infos = socket.getaddrinfo(
            host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}", key=key) from exc
    return [(family, proto, tuple(sockaddr)) for family, _type, proto, _name, sockaddr in infos]


def bind_tcp(address: str, *, key: str, backlog: int = 100) -> list[socket.socket]:
    """Listening sockets for ``host:port``: one per address the host name resolves to,
    as ``asyncio.start_server`` would bind them (port 0: any free port)."""
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, proto, sockaddr in listen_addresses(address, key=key):
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, socket.SOCK_STREAM, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"cannot listen on {address}: {exc.strerror}", key=key) from exc
    return sockets
