"""What the Dovecot front end's connections share: server state and the I/O loop.

* :class:`DovecotState` exists once per server: the engine, the ``[dovecot]``
  configuration, what the handshakes announce (SPID, the CUID counter, the
  mechanisms offered) and the :class:`LoginRegistry`.
* :class:`LoginRegistry` holds, per client pid of an auth-login connection, its
  cookie and its successful logins, until the master fetches one with ``REQUEST``
  (Dovecot keeps the finished request in the login connection's handler; the
  master names it by client pid and AUTH id and proves it saw the handshake by
  quoting the cookie).
* :class:`Connection` is the base of both kinds of connection (client protocol in
  :mod:`~mailwarden.frontends.dovecot_client`, master protocol in
  :mod:`~mailwarden.frontends.dovecot_master`): send the handshake, read, feed the
  codec, dispatch events, run each request as its own task, write replies as they
  are ready, close. A :class:`~mailwarden.errors.ProtocolError` closes only that
  connection and is logged once; any other exception is caught here, at the
  connection boundary, and logged once with the connection (and request) id.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hmac
import itertools
import logging
import os
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mailwarden.config import DovecotConfig
from mailwarden.engine import Engine
from mailwarden.errors import ProtocolError
from mailwarden.sasl import MECHANISMS
from mailwarden.sasl.base import MechanismContext

log = logging.getLogger("mailwarden.dovecot")

READ_SIZE = 65536


# --------------------------------------------------------------------------- logins


@dataclass(frozen=True, slots=True, kw_only=True)
class FinishedLogin:
    """A successful AUTH on an auth-login socket, waiting for the master's REQUEST.

    What the userdb reply needs: who logged in (``user``), how (``mechanism``), for
    which ``service``, the master user of a master login, the name as typed
    (``original_user``) and the TLS SNI name (``local_name``).
    """

    user: str
    mechanism: str
    service: str
    master_user: str | None = None
    original_user: str | None = None
    local_name: str | None = None
    anonymous: bool = False


@dataclass(slots=True)
class _LoginClient:
    cookie: bytes
    # auth id -> (login, monotonic expiry); insertion order is expiry order because
    # every entry lives for the same time.
    logins: OrderedDict[int, tuple[FinishedLogin, float]] = field(default_factory=OrderedDict)


class LoginRegistry:
    """Successful logins of auth-login connections, by client pid and AUTH id.

    A pid belongs to one live connection at a time (Dovecot refuses a second
    connection with the same CPID on login sockets: the master could otherwise be
    handed another process's login). Entries expire after ``ttl`` seconds, are
    consumed by :meth:`take`, and vanish with their connection.
    """

    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self._clients: dict[int, _LoginClient] = {}

    def register(self, pid: int, cookie: bytes) -> bool:
        """Claim ``pid`` for a connection with ``cookie``; False if a live one has it."""
        if pid in self._clients:
            return False
        self._clients[pid] = _LoginClient(cookie=cookie)
        return True

    def unregister(self, pid: int) -> None:
        """The connection of ``pid`` closed: drop it and its logins."""
        self._clients.pop(pid, None)

    def keep(self, pid: int, auth_id: int, login: FinishedLogin) -> None:
        """Remember a successful login of the connection of ``pid``."""
        client = self._clients.get(pid)
        if client is None:
            return
        now = time.monotonic()
        while client.logins:
            oldest = next(iter(client.logins.values()))
            if oldest[1] > now:
                break
            client.logins.popitem(last=False)
        client.logins.pop(auth_id, None)
        client.logins[auth_id] = (login, now + self.ttl)

    def take(self, pid: int, auth_id: int, cookie: bytes) -> FinishedLogin | None:
        """The login named by a REQUEST, once; None for a wrong pid, id or cookie."""
        client = self._clients.get(pid)
        if client is None or not hmac.compare_digest(client.cookie, cookie):
            return None
        entry = client.logins.pop(auth_id, None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]


# --------------------------------------------------------------------------- state


class DovecotState:
    """Everything the connections of one Dovecot front end share."""

    def __init__(self, engine: Engine, config: DovecotConfig) -> None:
        self.engine = engine
        self.config = config
        self.spid = os.getpid()
        self.started = int(time.time())
        self.hostname = config.hostname or socket.gethostname()
        self.mechanisms = offered_mechanisms(config)
        self.logins = LoginRegistry(ttl=config.request_timeout)
        self._cuids = itertools.count(1)

    def reconfigure(self, config: DovecotConfig) -> None:
        """SIGHUP: new settings for new requests (sockets are not touched here)."""
        self.config = config
        self.hostname = config.hostname or socket.gethostname()
        self.mechanisms = offered_mechanisms(config)

    def next_cuid(self) -> int:
        """The next connection number (Dovecot's CUID, from 1; APOP binds to it)."""
        return next(self._cuids)

    def mechanism_context(self, *, cuid: int, cert_username: str | None) -> MechanismContext:
        """The per-request context of a SASL mechanism session."""
        return MechanismContext(
            hostname=self.hostname,
            realms=self.config.realms,
            anonymous_username=self.config.anonymous_username,
            cert_username=cert_username,
            spid=self.spid,
            cuid=cuid,
            started=self.started,
        )


def offered_mechanisms(config: DovecotConfig) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``(name, MECH flag words)`` in configured order, as the handshake lists them.

    ANONYMOUS is left out when no anonymous user is configured, as Dovecot does not
    register it then.
    """
    out: dict[str, tuple[str, ...]] = {}
    for name in config.mechanisms:
        upper = name.upper()
        if upper == "ANONYMOUS" and not config.anonymous_username:
            continue
        out.setdefault(upper, MECHANISMS[upper].flag_words())
    return tuple(out.items())


# --------------------------------------------------------------------------- connections


def peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The peer's pid from ``SO_PEERCRED`` on a UNIX socket, else None."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", raw)[0]
    return pid if pid > 0 else None


class Connection(abc.ABC):
    """One accepted connection: handshake, read loop, request tasks, close.

    Subclasses own a codec and say what the handshake is (:meth:`greeting`), how
    bytes reach the codec (:meth:`feed`) and what to do with its events
    (:meth:`dispatch`). Reading pauses while the peer is not reading our replies
    (``drain``), so a client cannot make us buffer without bound.
    """

    def __init__(
        self,
        state: DovecotState,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        label: str,
    ) -> None:
        self.state = state
        self.reader = reader
        self.writer = writer
        self.label = label
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._out: list[bytes] = []

    @abc.abstractmethod
    def greeting(self) -> bytes:
        """The server handshake, sent on accept before anything is read."""

    @abc.abstractmethod
    def feed(self, data: bytes) -> None:
        """Give received bytes (``b""``: end of stream) to the codec."""

    @abc.abstractmethod
    def dispatch(self) -> None:
        """Handle every event the codec has ready; ProtocolError ends the connection."""

    def closed(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once when the connection ends, after its tasks were cancelled."""

    async def run(self) -> None:
        """Serve the connection until the peer leaves, breaks the protocol, or we close."""
        log.debug("dovecot %s: connected", self.label)
        metrics = self.state.engine.metrics
        if metrics is not None:
            metrics.connection("dovecot", 1)
        try:
            self.write(self.greeting())
            while not self.closing:
                await self.writer.drain()
                data = await self.reader.read(READ_SIZE)
                self.feed(data)
                self.dispatch()
                if not data:
                    break
        except ProtocolError as exc:
            log.warning("dovecot %s: protocol error, disconnecting: %s", self.label, exc)
        except ConnectionError:
            log.debug("dovecot %s: connection lost", self.label)
        except Exception:  # the connection boundary: one bad connection must not spread
            log.exception("dovecot %s: unexpected error, disconnecting", self.label)
        finally:
            await self._shutdown()
            if metrics is not None:
                metrics.connection("dovecot", -1)
        log.debug("dovecot %s: disconnected", self.label)

    @property
    def busy(self) -> bool:
        """Whether requests of this connection are still being decided."""
        return bool(self._tasks)

    def abort(self) -> None:
        """End the connection from inside a request: flush what was written, then close.

        The read loop sees the end of the stream and shuts everything down.
        """
        self.closing = True
        self._send_out()
        self.writer.close()

    def kill(self) -> None:
        """End the connection now, dropping unsent replies (server shutdown).

        The read loop sees the end of the stream, cancels the requests and returns.
        """
        self.closing = True
        self.writer.transport.abort()

    def write(self, data: bytes) -> None:
        """Queue reply bytes (dropped once the connection is closing).

        Replies written in one turn of the event loop leave in one ``send``: a
        pipelining client (Postfix, a login process) gets its answers batched
        instead of paying a system call for each.
        """
        if self.writer.is_closing():
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._send_out)
        self._out.append(data)

    def _send_out(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            if not self.writer.is_closing():
                self.writer.write(data)

    def spawn(self, coro: Coroutine[Any, Any, None], *, request_id: int) -> asyncio.Task[None]:
        """Run one request as its own task; its failures stay inside it."""
        task = asyncio.get_running_loop().create_task(self._guard(coro, request_id))
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, coro))
        return task

    def _finished(self, coro: Coroutine[Any, Any, None], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # A task cancelled before it first ran never starts ``coro``: close it, or
        # Python warns that it was never awaited.
        coro.close()

    async def _guard(self, coro: Coroutine[Any, Any, None], request_id: int) -> None:
        try:
            await coro
        except ConnectionError:
            log.debug("dovecot %s: request %d: connection lost", self.label, request_id)
        except Exception:  # the request boundary: logged once, then the peer is told
            log.exception("dovecot %s: request %d failed unexpectedly", self.label, request_id)
            self.request_crashed(request_id)

    @abc.abstractmethod
    def request_crashed(self, request_id: int) -> None:
        """Answer a request whose task raised (a temporary failure, if still owed)."""

    async def _shutdown(self) -> None:
        self.closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.closed()
        self._send_out()
        self.writer.close()
        with contextlib.suppress(OSError):  # the peer already went away
            await self.writer.wait_closed()
