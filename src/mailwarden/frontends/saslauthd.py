"""The saslauthd front end: a UNIX socket (``mux``) speaking Cyrus saslauthd's protocol.

What belongs here: accepting connections (at most ``saslauthd.max_connections``
at once), reading one request with a size limit and a timeout, asking the engine,
writing the reply and closing. Parsing lives in protocols/saslauthd.py. Every
connection is independent, so many run at once.

Replies: ``OK`` for an accepted login; ``NO authentication failed`` for every
refusal (unknown user and wrong password alike; a disabled account or service
only shows its message after the password was proven, as the engine decides);
a backend outage closes the connection without a reply, which libsasl2 reports
as a generic (temporary) failure rather than a wrong password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import assert_never

from mailwarden.auth.engine import Engine
from mailwarden.config import Config, SaslauthdConfig
from mailwarden.errors import ProtocolError
from mailwarden.frontends.base import moved
from mailwarden.frontends.connlimit import ConnectionGate
from mailwarden.frontends.delay import delay_failure
from mailwarden.frontends.dovecot_sockets import group_id, user_id
from mailwarden.frontends.inherited import InheritedSockets
from mailwarden.frontends.unixsock import bind_unix_socket, remove_own_socket
from mailwarden.model import Accepted, AuthAttempt, Denied, Unavailable
from mailwarden.protocols import saslauthd as proto

log = logging.getLogger("mailwarden.saslauthd")

FAILED = "authentication failed"


class SaslauthdServer:
    """The running saslauthd listener (from :func:`start_saslauthd`)."""

    def __init__(
        self,
        engine: Engine,
        config: SaslauthdConfig,
        *,
        resolve: Callable[[str], Path] = Path,
        inherited: InheritedSockets | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.resolve = resolve  # config paths -> paths (app.resolve_path)
        self.inherited = inherited
        self.path: Path | None = None
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.gate = ConnectionGate("saslauthd", lambda: self.config.max_connections)

    async def start(self) -> None:
        """Listen on ``config.socket`` (resolved), or on the socket a supervisor bound
        for it (``inherited``)."""
        config, inherited = self.config, self.inherited
        await self.listen(
            self.resolve(config.socket),
            inherited=inherited.get("saslauthd.socket", config.socket)[0] if inherited else None,
        )

    def listening(self) -> list[str]:
        return [f"saslauthd {self.path}"] if self.path is not None else []

    def connection_caps(self) -> dict[str, int]:
        return {"saslauthd": self.gate.limit}

    async def reconfigure(self, old: Config, new: Config, *, move: bool) -> SaslauthdServer:
        """SIGHUP (frontends/base.py): realm handling, limits and delay for the next
        connections. With ``move``, a changed socket path or mode starts a new server
        (returned) and this one closes, letting its requests finish."""
        self.config = new.saslauthd
        before, after = old.saslauthd, new.saslauthd
        if not move or not moved(before, after, "saslauthd"):
            return self
        drain = new.server.shutdown_timeout
        same_path = before.socket == after.socket
        if same_path:
            await self.close(drain=drain)  # the path is bound again below
        replacement = await start_saslauthd(self.engine, after, resolve=self.resolve)
        if not same_path:
            await self.close(drain=drain)
        return replacement

    async def listen(self, path: Path, *, inherited: socket.socket | None = None) -> None:
        """Listen on ``path``, or on ``inherited``: bound there by the supervisor of
        ``serve --workers``, whose file close() then leaves in place."""
        if inherited is None:
            sock, self._inode = bind_unix_socket(
                path,
                mode=self.config.socket_mode,
                key="saslauthd.socket",
                owner=saslauthd_socket_owner(self.config),
            )
        else:
            sock = inherited
        self._server = await asyncio.start_unix_server(self._handle, sock=sock)
        self.path = path
        log.info("saslauthd socket listening on %s (mode %04o)", path, self.config.socket_mode)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.gate.admit():
            writer.transport.abort()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        metrics = self.engine.metrics
        if metrics is not None:
            metrics.connection("saslauthd", 1)
        try:
            reply = await asyncio.wait_for(self._answer(reader), self.config.request_timeout)
            if reply is not None:
                writer.write(reply)
                await writer.drain()
        except TimeoutError:
            log.info("saslauthd: request not complete within %.0f s", self.config.request_timeout)
        except ProtocolError as exc:
            log.info("saslauthd: bad request: %s", exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # the connection boundary: one bad request never stops the server
            log.exception("saslauthd: request failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)
            if metrics is not None:
                metrics.connection("saslauthd", -1)
            self.gate.release()

    async def _answer(self, reader: asyncio.StreamReader) -> bytes | None:
        parser = proto.RequestReader(max_field=self.config.max_field_length)
        while (request := parser.next_event()) is None:
            data = await reader.read(4096)
            if not data:
                return None
            parser.receive_data(data)
        arrived = asyncio.get_running_loop().time()
        attempt = AuthAttempt(
            username=request.login,
            # The engine appends it to a bare name (saslauthd.realm = "append").
            realm=(request.realm or None) if self.config.realm == "append" else None,
            credentials=request.password,
            service=request.service.lower() or "smtp",
            mechanism="PLAIN",
            frontend="saslauthd",
        )
        outcome = await self.engine.authenticate(attempt)
        match outcome:
            case Accepted():
                return proto.reply_ok()
            case Denied():
                await delay_failure(self.config.failure_delay, arrived)
                return proto.reply_no(outcome.message or FAILED)
            case Unavailable():
                return None
            case _:
                assert_never(outcome)

    async def close(self, *, drain: float = 0.0) -> None:
        """Stop accepting, let running requests finish (up to ``drain`` seconds),
        cancel the rest, remove the socket."""
        if self._server is not None:
            self._server.close()
        if self._tasks and drain > 0:
            await asyncio.wait(list(self._tasks), timeout=drain)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.path is not None and self._inode is not None:
            remove_own_socket(self.path, self._inode)
        self.path = None


async def start_saslauthd(
    engine: Engine,
    config: SaslauthdConfig,
    *,
    resolve: Callable[[str], Path],
    inherited: InheritedSockets | None = None,
) -> SaslauthdServer:
    """Start the saslauthd listener on ``config.socket`` (resolved by ``resolve``), or
    on the socket a supervisor bound for it (``inherited``)."""
    server = SaslauthdServer(engine, config, resolve=resolve, inherited=inherited)
    await server.start()
    return server


def saslauthd_socket_owner(config: SaslauthdConfig) -> tuple[int, int]:
    """The uid and gid the socket file is given (-1: the daemon's own); ConfigError
    naming the key of a user or group that does not exist."""
    return (
        user_id(config.socket_user, key="saslauthd.socket_user"),
        group_id(config.socket_group, key="saslauthd.socket_group"),
    )
