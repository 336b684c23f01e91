"""The Dovecot auth front end: its listeners, and :func:`start_dovecot`.

Roles and sockets (``[dovecot]`` in the configuration; an empty path turns one off;
each has its own ``<role>_socket_mode``, ``_user`` and ``_group``, see
:mod:`~mailwarden.frontends.dovecot_sockets` for the defaults and the trust rules):

* **client** (``client_socket``, and ``tcp_listen`` on TCP; 0666): the client
  protocol for Postfix, Exim and ``doveadm auth test``.
* **login** (``login_socket``; 0600, trusted for client certificates): the client
  protocol for Dovecot login processes and ``doveadm auth login -a``; successful
  logins are kept for the master's REQUEST.
* **master** (``master_socket``; 0600): the master protocol with every command
  (``doveadm auth login -m``, ``doveadm auth cache flush``, the mail processes'
  REQUEST).
* **userdb** (``userdb_socket``; 0600): the master protocol without REQUEST and
  CACHE-FLUSH (``doveadm user``, ``doveadm auth lookup``, LDA, LMTP); peers that
  are not trusted may only look up their own account.

A UNIX socket is set up so that no peer can ever reach it with the wrong
permissions: the parent directory is created if needed; a leftover socket file
from a dead server is removed (one that still answers is left alone and is an
error, so two servers never fight over a path, and a file that is not a socket
is never deleted); the socket is bound, given its mode and owner, and only then
starts listening. A UNIX
socket only accepts connections from peers with write permission on it.
Problems are :class:`~mailwarden.errors.ConfigError` naming the key.

:meth:`DovecotServer.close` stops accepting, cancels every connection (and with
it every request in flight) and removes the socket files it created.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import assert_never

from mailwarden.auth.engine import Engine
from mailwarden.config import Config, DovecotConfig
from mailwarden.errors import ConfigError
from mailwarden.frontends.connlimit import ConnectionGate
from mailwarden.frontends.dovecot_client import ClientConnection
from mailwarden.frontends.dovecot_common import Connection, DovecotState
from mailwarden.frontends.dovecot_master import MasterConnection
from mailwarden.frontends.dovecot_sockets import (
    Role,
    SocketSpec,
    peer_credentials,
    trusted,
    unix_listeners,
    userdb_full_access,
)
from mailwarden.frontends.inherited import InheritedSockets
from mailwarden.frontends.unixsock import bind_unix_socket, remove_own_socket
from mailwarden.protocols.dovecot_client import COOKIE_SIZE

__all__ = ["DovecotServer", "Listener", "Role", "SocketSpec", "start_dovecot"]

log = logging.getLogger("mailwarden.dovecot")


# How long close() lets killed connections finish before cancelling them.
_CLOSE_TIMEOUT = 5.0


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

    def __init__(
        self,
        state: DovecotState,
        *,
        resolve: Callable[[str], Path] = Path,
        inherited: InheritedSockets | None = None,
    ) -> None:
        self.state = state
        self.resolve = resolve  # config paths -> paths (app.resolve_path)
        self.inherited = inherited
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

    async def start(self) -> None:
        """Start every configured listener (see :func:`start_dovecot`); ConfigError when
        a socket cannot be set up, with the listeners already started closed again."""
        config, inherited = self.state.config, self.inherited
        try:
            for spec in unix_listeners(config):
                await self.listen_unix(
                    spec,
                    self.resolve(spec.path),
                    inherited=(inherited.get(spec.key, spec.path)[0] if inherited else None),
                )
            for address in config.tcp_listen:
                await self.listen_tcp(
                    address,
                    inherited=inherited.get("dovecot.tcp_listen", address) if inherited else None,
                )
        except BaseException:
            await self.close()
            raise
        if not self._listeners:
            log.warning("dovecot front end enabled but no socket is configured")

    def listening(self) -> list[str]:
        return [f"dovecot {lst.role.value} {lst.address}" for lst in self._listeners]

    def connection_caps(self) -> dict[str, int]:
        return {name: gate.limit for name, gate in self.gates.items()}

    async def reconfigure(self, old: Config, new: Config, *, move: bool) -> DovecotServer:
        """SIGHUP (frontends/base.py): new settings for the next requests; with
        ``move``, a UNIX socket whose path or permissions changed is opened anew and
        the old one stops accepting (its connections finish)."""
        self.state.reconfigure(new.dovecot)
        if not move:
            return self
        before = {spec.role: spec for spec in unix_listeners(old.dovecot)}
        after = {spec.role: spec for spec in unix_listeners(new.dovecot)}
        for role in Role:
            if before.get(role) == after.get(role):
                continue
            await self.stop_listening(role)
            if role in after:
                await self.listen_unix(after[role], self.resolve(after[role].path))
        return self

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

    def _handler(
        self, role: Role, address: str, *, owner: tuple[int, int] | None = None
    ) -> Handler:
        """Connections of one listener; ``owner``: its socket file's (uid, gid), None
        for TCP."""
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
            connection = self._connection(role, address, reader, writer, owner=owner)
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
        *,
        owner: tuple[int, int] | None,
    ) -> Connection:
        label = f"{role.value}:{address}"
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple):
            label += f" from {peer[0]}:{peer[1]}"
        config = self.state.config
        match role:
            case Role.CLIENT | Role.LOGIN:
                connection = ClientConnection(
                    self.state,
                    reader,
                    writer,
                    login=role is Role.LOGIN,
                    label=label,
                    cookie=secrets.token_bytes(COOKIE_SIZE),
                    trusted=trusted(config, role, tcp=owner is None),
                )
                connection.label += f" #{connection.cuid}"
                return connection
            case Role.MASTER:
                return MasterConnection(self.state, reader, writer, userdb_only=False, label=label)
            case Role.USERDB:
                credentials = peer_credentials(writer.get_extra_info("socket"))
                full = owner is not None and userdb_full_access(
                    credentials, owner, self.state.userdb_peers
                )
                if credentials is not None:
                    label += f" uid={credentials.uid}"
                return MasterConnection(
                    self.state,
                    reader,
                    writer,
                    userdb_only=True,
                    label=label,
                    restricted_uid=(
                        None if full else credentials.uid if credentials is not None else -1
                    ),
                )
            case _:
                assert_never(role)

    async def listen_unix(
        self, spec: SocketSpec, path: Path, *, inherited: socket.socket | None = None
    ) -> None:
        """Serve ``spec`` on the UNIX socket ``path`` (``spec.path`` resolved; see the
        module docstring), or on ``inherited``, bound there by the supervisor (whose
        file close() leaves alone)."""
        inode: int | None = None
        if inherited is None:
            sock, inode = bind_unix_socket(path, mode=spec.mode, owner=spec.owner, key=spec.key)
        else:
            sock = inherited
        # The file's actual owner (systemd may have made it: socket activation) is the
        # one the userdb peer rule compares with.
        try:
            st = path.stat()
            owner, mode = (st.st_uid, st.st_gid), stat.S_IMODE(st.st_mode)
        except OSError:
            owner, mode = spec.effective_owner(), spec.mode
        handler = self._handler(spec.role, str(path), owner=owner)
        server = await asyncio.start_unix_server(handler, sock=sock)
        listener = Listener(role=spec.role, address=str(path), path=path, inode=inode)
        self._servers.append(server)
        self._listeners.append(listener)
        self._unix[spec.role] = (server, listener)
        uid, gid = owner
        log.info(
            "dovecot %s socket listening on %s (mode %04o, uid %d, gid %d)",
            spec.role.value,
            path,
            mode,
            uid,
            gid,
        )

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
    server = DovecotServer(DovecotState(engine, config), resolve=resolve, inherited=inherited)
    await server.start()
    return server
