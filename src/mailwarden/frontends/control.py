"""The control socket: ``mailwarden guard ...`` and ``mailwarden status`` ask the daemon here.

Line-delimited JSON (protocols/control.py) on a UNIX socket that only its owner
may use (``server.control_socket_mode``, 0600 by default). Each connection is
independent; a bad line gets an error reply and the connection stays usable; an
over-long line closes only that connection. At most :data:`MAX_CONNECTIONS` are
served at once, and one silent for :data:`IDLE_TIMEOUT` seconds is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mailwarden.auth.engine import Engine
from mailwarden.config import Config, ServerConfig
from mailwarden.errors import ProtocolError
from mailwarden.frontends.connlimit import ConnectionGate, IdleTimer
from mailwarden.frontends.delay import delay_failure
from mailwarden.frontends.dovecot_sockets import group_id, user_id
from mailwarden.frontends.unixsock import bind_unix_socket, remove_own_socket
from mailwarden.model import AuthAttempt, Denied, Password
from mailwarden.protocols import checkpassword as cp
from mailwarden.protocols import control as proto

log = logging.getLogger("mailwarden.control")

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]

#: Connections the control socket serves at once (its clients are one-shot commands).
MAX_CONNECTIONS = 256
#: Seconds a control connection may stay silent between requests before it is closed.
IDLE_TIMEOUT = 60.0


class ControlServer:
    """The running control socket (from :func:`start_control`)."""

    def __init__(
        self,
        engine: Engine,
        status: StatusProvider,
        *,
        socket_path: Path | None = None,
        mode: int = 0o600,
        owner: tuple[int, int] = (-1, -1),
        inherited: socket.socket | None = None,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout: float = IDLE_TIMEOUT,
        failure_delay: float = 0.0,
    ) -> None:
        self.engine = engine
        #: Seconds a refused checkpassword login waits (checkpassword.failure_delay).
        self.failure_delay = failure_delay
        self.status = status
        # Where start() listens (listen() takes them as arguments).
        self.socket_path, self.mode, self.inherited = socket_path, mode, inherited
        self.owner = owner  # uid, gid of the socket file (-1: the daemon's own)
        self.path: Path | None = None
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self.gate = ConnectionGate("control socket", lambda: max_connections)
        self.idle_timeout = idle_timeout

    async def listen(
        self, path: Path, mode: int, *, inherited: socket.socket | None = None
    ) -> None:
        """Listen on ``path``, or on ``inherited``: bound there by the supervisor of
        ``serve --workers``, whose file close() then leaves in place."""
        if inherited is None:
            sock, self._inode = bind_unix_socket(
                path, mode=mode, key="server.control_socket", owner=self.owner
            )
        else:
            sock = inherited
        self._server = await asyncio.start_unix_server(self._handle, sock=sock)
        self.path = path
        log.info("control socket listening on %s (mode %04o)", path, mode)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.gate.admit():
            writer.transport.abort()
            return
        lines = proto.LineReader()
        answering = False
        idle = IdleTimer(self.idle_timeout, busy=lambda: answering, expire=writer.close)
        try:
            while data := await reader.read(65536):
                idle.touch()
                answering = True
                lines.receive_data(data)
                while (line := lines.next_event()) is not None:
                    writer.write(await self._answer(line))
                await writer.drain()
                answering = False
        except ProtocolError as exc:
            log.info("control: %s", exc)
            with contextlib.suppress(ConnectionError):
                writer.write(proto.error(str(exc)))
        except ConnectionError:
            pass
        except Exception:  # the connection boundary
            log.exception("control: request failed")
        finally:
            idle.cancel()
            self.gate.release()
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = proto.parse_request(line)
            return proto.reply(await self._run(request))
        except ProtocolError as exc:
            return proto.error(str(exc))

    async def _run(self, request: proto.Request) -> Any:
        guard = self.engine.guard
        args = request.args
        match request.op:
            case "ping":
                return "pong"
            case "guard.list":
                return await guard.describe_bans()
            case "guard.unblock":
                target = args.get("target")
                if target is not None and not isinstance(target, str):
                    raise ProtocolError("guard.unblock: target must be a string or null")
                lifted = await guard.unblock(target)
                log.info("control: unblocked %s (%d ban(s))", target or "everything", lifted)
                return {"lifted": lifted}
            case "cache.flush":
                users = args.get("users")
                if users is not None and (
                    not isinstance(users, list) or not all(isinstance(u, str) for u in users)
                ):
                    raise ProtocolError("cache.flush: users must be a list of strings or null")
                return {"flushed": await self.engine.forget(users)}
            case "status":
                return await self.status()
            case "checkpassword":
                return cp.decision_to_wire(await self._checkpassword(cp.parse_query(args)))
            case "store":
                return await self._store(args.get("method"), args.get("args"))
        raise ProtocolError(f"unknown op {request.op!r}")  # pragma: no cover - OPS is checked

    async def _checkpassword(self, query: cp.Query) -> cp.Decision:
        """One login of ``mailwarden checkpassword`` (its daemon path): decided by the
        engine like any other, answered with the userdb fields the outcome carries.
        A refusal leaves after ``checkpassword.failure_delay`` (as the Dovecot client
        socket's FAIL does), unless the account's nodelay applies."""
        if query.lookup_only:
            return cp.lookup_decision(await self.engine.lookup(query.login, service=query.service))
        arrived = asyncio.get_running_loop().time()
        outcome = await self.engine.authenticate(
            AuthAttempt(
                username=query.login,
                credentials=Password(query.secret),
                service=query.service,
                mechanism="PLAIN",
                remote_ip=query.remote_ip,
                local_ip=query.local_ip,
                frontend="checkpassword",
            )
        )
        if isinstance(outcome, Denied) and not outcome.nodelay:
            await delay_failure(self.failure_delay, arrived)
        return cp.login_decision(outcome)

    async def _store(self, method: object, args: object) -> Any:
        """A guard-store operation of a one-shot command (guard/stores/control.py), run on
        the daemon's own store so that both see one state."""
        allowed = proto.STORE_METHODS
        if not isinstance(method, str) or method not in allowed:
            raise ProtocolError(f"store: method must be one of {', '.join(sorted(allowed))}")
        if not isinstance(args, list):
            raise ProtocolError("store: args must be a list")
        if method in ("hit", "counts"):
            args = [[tuple(c) for c in args[0]], *args[1:]] if args else args
        guard = self.engine.guard
        try:
            result = await guard.on_store(lambda s: getattr(s, method)(*args))
        except TypeError as exc:
            raise ProtocolError(f"store.{method}: bad arguments ({exc})") from None
        if method == "bans":
            return [{"target": b.target, "rule": b.rule, "expires": b.expires} for b in result]
        return result

    async def start(self) -> None:
        """Listen where the constructor said (``socket_path``, ``mode``, ``inherited``)."""
        if self.socket_path is None:
            raise ValueError("ControlServer.start needs socket_path")
        await self.listen(self.socket_path, self.mode, inherited=self.inherited)

    def listening(self) -> list[str]:
        return [f"control {self.path}"] if self.path is not None else []

    def connection_caps(self) -> dict[str, int]:
        return {"control": self.gate.limit}

    async def reconfigure(self, old: Config, new: Config, *, move: bool) -> ControlServer:
        """SIGHUP (frontends/base.py): the checkpassword failure delay (its socket is a
        restart key)."""
        self.failure_delay = new.checkpassword.failure_delay
        return self

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop accepting and remove the socket; a command in flight is not waited for."""
        if self._server is not None:
            self._server.close()
        if self.path is not None and self._inode is not None:
            remove_own_socket(self.path, self._inode)
        self.path = None


async def start_control(
    engine: Engine,
    path: Path,
    *,
    mode: int,
    status: StatusProvider,
    owner: tuple[int, int] = (-1, -1),
    inherited: socket.socket | None = None,
) -> ControlServer:
    """Serve the control socket at ``path`` (or on ``inherited``, see :meth:`listen`)."""
    server = ControlServer(
        engine, status, socket_path=path, mode=mode, owner=owner, inherited=inherited
    )
    await server.start()
    return server


def control_socket_owner(config: ServerConfig) -> tuple[int, int]:
    """The uid and gid the control socket file is given (-1: the daemon's own);
    ConfigError naming the key of a user or group that does not exist."""
    return (
        user_id(config.control_socket_user, key="server.control_socket_user"),
        group_id(config.control_socket_group, key="server.control_socket_group"),
    )
