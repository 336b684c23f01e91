"""The Dovecot auth front end: its listeners, and :func:`start_dovecot`.

Roles and sockets (``[dovecot]`` in the configuration; an empty path turns one off):

* **client** (``client_socket``, and ``tcp_listen`` on TCP; mode ``socket_mode``):
  the client protocol for Postfix, Exim and ``doveadm auth test``.
* **login** (``login_socket``; ``socket_mode``): the client protocol for Dovecot
  login processes and ``doveadm auth login -a``; successful logins are kept for
  the master's REQUEST.
* **master** (``master_socket``; ``master_socket_mode``): the master protocol with
  every command (``doveadm auth login -m``, ``doveadm auth cache flush``).
* **userdb** (``userdb_socket``; ``socket_mode``): the master protocol without
  REQUEST and CACHE-FLUSH (``doveadm user``, ``doveadm auth lookup``, LDA, LMTP).

A UNIX socket is set up so that no peer can ever reach it with the wrong
permissions: the parent directory is created if needed; a leftover socket file
from a dead server is removed (one that still answers is left alone and is an
error, so two servers never fight over a path, and a file that is not a socket
is never deleted); the socket is bound, given its mode and owner
(``socket_user``/``socket_group``), and only then starts listening. A UNIX
socket only accepts connections from peers with write permission on it.
Problems are :class:`~mailwarden.errors.ConfigError` naming the key.

:meth:`DovecotServer.close` stops accepting, cancels every connection (and with
it every request in flight) and removes the socket files it created.
"""

from __future__ import annotations

import asyncio
import enum
import grp
import logging
import pwd
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from mailwarden.config import DovecotConfig
from mailwarden.engine import Engine
from mailwarden.errors import ConfigError
from mailwarden.frontends.connlimit import ConnectionGate
from mailwarden.frontends.dovecot_client import ClientConnection
from mailwarden.frontends.dovecot_common import Connection, DovecotState
from mailwarden.frontends.dovecot_master import MasterConnection
from mailwarden.frontends.inherited import InheritedSockets
from mailwarden.frontends.unixsock import bind_unix_socket, remove_own_socket
from mailwarden.protocols.dovecot_client import COOKIE_SIZE

__all__ = ["DovecotServer", "Listener", "Role", "start_dovecot"]

log = logging.getLogger("mailwarden.dovecot")


# How long close() lets killed connections finish before cancelling them.
_CLOSE_TIMEOUT = 5.0


class Role(enum.Enum):
    """What a listener serves (Dovecot picks it from the listener name's suffix)."""

    CLIENT = "client"
    LOGIN = "login"
    MASTER = "master"
    USERDB = "userdb"


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One listening socket: its role and address (a path, or ``host:port``)."""

    role: Role
    address: str
    path: Path | None = None
    inode: int | None = None


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class DovecotServer:
    """The running Dovecot front end (from :func:`start_dovecot`)."""

    def __init__(self, state: DovecotState) -> None:
        self.state = state
        self._listeners: list[Listener] = []
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.Task[None], Connection] = {}
        self._unix: dict[Role, tuple[asyncio.Server, Listener]] = {}
        self._closed = False
        #: One per listener: ``dovecot.max_connections`` each (frontends/connlimit.py).
        self.gates: dict[str, ConnectionGate] = {}

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(self._listeners)

    def address(self, role: Role) -> str:
        """The address of the first listener of ``role`` (KeyError if none)."""
        for listener in self._listeners:
            if listener.role is role:
                return listener.address
        raise KeyError(role.value)

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop accepting, end every connection and remove our socket files.

        With ``drain`` (SIGTERM: ``server.shutdown_timeout``), requests in flight
        get up to that many seconds to be answered first; connections with nothing
        in flight are closed after their replies are sent.
        """
        if self._closed:
            return
        self._closed = True
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while loop.time() < deadline and any(c.busy for c in self._connections.values()):
            await asyncio.sleep(0.02)
        # Connections are killed rather than their tasks cancelled: asyncio's stream
        # server (3.11) logs an error for a handler task that ends cancelled.
        for connection in self._connections.values():
            if connection.busy:
                connection.kill()
            else:
                connection.abort()  # sends what is written, then closes
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=_CLOSE_TIMEOUT)
        stuck = list(self._connections)
        for task in stuck:
            task.cancel()  # still running past the timeout; handle() ends it quietly
        if stuck:
            await asyncio.gather(*stuck, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        for listener in self._listeners:
            # No inode: an inherited socket, whose file the supervisor removes.
            if listener.path is not None and listener.inode is not None:
                remove_own_socket(listener.path, listener.inode)
        log.info("dovecot front end stopped")

    # ------------------------------------------------------------------ setup

    def _handler(self, role: Role, address: str) -> Handler:
        gate = ConnectionGate(
            f"dovecot {role.value} {address}", lambda: self.state.config.max_connections
        )
        self.gates[f"dovecot {role.value} {address}"] = gate

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not gate.admit():
                writer.transport.abort()
                return
            task = asyncio.current_task()
            assert task is not None
            connection = self._connection(role, address, reader, writer)
            self._connections[task] = connection
            try:
                await connection.run()
            except asyncio.CancelledError:
                # Only close() cancels a connection, and only one that did not end
                # when killed; the task must not end cancelled (see close()).
                return
            finally:
                del self._connections[task]
                gate.release()

        return handle

    def _connection(
        self,
        role: Role,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> Connection:
        label = f"{role.value}:{address}"
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            label += f" from {peer[0]}:{peer[1]}"
        match role:
            case Role.CLIENT | Role.LOGIN:
                connection = ClientConnection(
                    self.state,
                    reader,
                    writer,
                    login=role is Role.LOGIN,
                    label=label,
                    cookie=secrets.token_bytes(COOKIE_SIZE),
                )
                connection.label += f" #{connection.cuid}"
                return connection
            case Role.MASTER | Role.USERDB:
                return MasterConnection(
                    self.state, reader, writer, userdb_only=role is Role.USERDB, label=label
                )
            case _:
                assert_never(role)

    async def listen_unix(
        self,
        role: Role,
        path: Path,
        *,
        mode: int,
        owner: tuple[int, int],
        key: str,
        inherited: socket.socket | None = None,
    ) -> None:
        """Serve ``role`` on the UNIX socket ``path`` (see the module docstring), or on
        ``inherited``, bound there by the supervisor (whose file close() leaves alone)."""
        inode: int | None = None
        if inherited is None:
            sock, inode = bind_unix_socket(path, mode=mode, owner=owner, key=key)
        else:
            sock = inherited
        server = await asyncio.start_unix_server(self._handler(role, str(path)), sock=sock)
        listener = Listener(role=role, address=str(path), path=path, inode=inode)
        self._servers.append(server)
        self._listeners.append(listener)
        self._unix[role] = (server, listener)
        log.info("dovecot %s socket listening on %s (mode %04o)", role.value, path, mode)

    async def stop_listening(self, role: Role) -> None:
        """Close the UNIX listener of ``role`` (SIGHUP moved it); its connections stay."""
        found = self._unix.pop(role, None)
        if found is None:
            return
        server, listener = found
        self._servers.remove(server)
        self._listeners.remove(listener)
        server.close()
        if listener.path is not None and listener.inode is not None:
            remove_own_socket(listener.path, listener.inode)
        log.info("dovecot %s socket %s closed", role.value, listener.path)

    async def listen_tcp(
        self, address: str, *, inherited: list[socket.socket] | None = None
    ) -> None:
        """Serve the client protocol on ``host:port`` (port 0: any free port), or on
        the ``inherited`` sockets the supervisor bound for it."""
        host, _, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        handler = self._handler(Role.CLIENT, address)
        servers: list[asyncio.Server] = []
        try:
            if inherited is None:
                servers.append(await asyncio.start_server(handler, host, int(port)))
            else:
                for sock in inherited:
                    servers.append(await asyncio.start_server(handler, sock=sock))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {address}: {exc.strerror}", key="dovecot.tcp_listen"
            ) from exc
        finally:
            self._servers.extend(servers)
        for sock in (s for server in servers for s in server.sockets):
            bound = sock.getsockname()
            actual = (
                f"{bound[0]}:{bound[1]}"
                if sock.family == socket.AF_INET
                else f"[{bound[0]}]:{bound[1]}"
            )
            self._listeners.append(Listener(role=Role.CLIENT, address=actual))
            log.info("dovecot client listening on tcp %s", actual)


async def start_dovecot(
    engine: Engine,
    config: DovecotConfig,
    *,
    resolve: Callable[[str], Path],
    inherited: InheritedSockets | None = None,
) -> DovecotServer:
    """Start every configured Dovecot listener; ``resolve`` turns config paths into paths.

    With ``inherited`` (a worker of ``serve --workers``), listen on the sockets the
    supervisor bound instead of binding. Raises ConfigError when a socket cannot be
    set up; listeners already started are closed again.
    """
    server = DovecotServer(DovecotState(engine, config))
    owner = socket_owner(config)
    unix = (
        (Role.CLIENT, config.client_socket, config.socket_mode, "client_socket"),
        (Role.LOGIN, config.login_socket, config.socket_mode, "login_socket"),
        (Role.MASTER, config.master_socket, config.master_socket_mode, "master_socket"),
        (Role.USERDB, config.userdb_socket, config.socket_mode, "userdb_socket"),
    )
    try:
        for role, path, mode, key in unix:
            if path:
                await server.listen_unix(
                    role,
                    resolve(path),
                    mode=mode,
                    owner=owner,
                    key=f"dovecot.{key}",
                    inherited=(inherited.get(f"dovecot.{key}", path)[0] if inherited else None),
                )
        for address in config.tcp_listen:
            await server.listen_tcp(
                address,
                inherited=inherited.get("dovecot.tcp_listen", address) if inherited else None,
            )
    except BaseException:
        await server.close()
        raise
    if not server.listeners:
        log.warning("dovecot front end enabled but no socket is configured")
    return server


# --------------------------------------------------------------------------- helpers


def socket_owner(config: DovecotConfig) -> tuple[int, int]:
    """The (uid, gid) the sockets are given (-1: leave as is)."""
    return (_user_id(config.socket_user), _group_id(config.socket_group))


def _user_id(name: str) -> int:
    if not name:
        return -1
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError(f"no such user: {name!r}", key="dovecot.socket_user") from None


def _group_id(name: str) -> int:
    if not name:
        return -1
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"no such group: {name!r}", key="dovecot.socket_group") from None
