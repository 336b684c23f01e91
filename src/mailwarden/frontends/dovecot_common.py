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
import time
from collections import OrderedDict
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from mailwarden.auth.engine import Engine
from mailwarden.config import DovecotConfig
from mailwarden.errors import ProtocolError
from mailwarden.frontends.connlimit import ConnectionGate, IdleTimer
from mailwarden.frontends.dovecot_sockets import peer_credentials, trusted_peers
from mailwarden.protocols.dovecot_master import FinishedLogin
from mailwarden.sasl import MECHANISMS
from mailwarden.sasl.base import MechanismContext

log = logging.getLogger("mailwarden.dovecot")

READ_SIZE = 65536


# --------------------------------------------------------------------------- logins


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
        #: Client-protocol requests in flight on every connection together
        #: (``dovecot.max_pending_total``); beyond it a request gets a temporary failure.
        self.requests = ConnectionGate(
            "dovecot requests in flight", lambda: self.config.max_pending_total
        )
        self.userdb_peers = trusted_peers(config)
        self._cuids = itertools.count(1)

    def reconfigure(self, config: DovecotConfig) -> None:
        """SIGHUP: new settings for new requests (sockets are not touched here)."""
        self.config = config
        self.hostname = config.hostname or socket.gethostname()
        self.mechanisms = offered_mechanisms(config)
        self.userdb_peers = trusted_peers(config, strict=False)

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


class _Continuation:
    """Awaiting this resumes a coroutine that already ran up to ``waiting_on``: the
    task that awaits it waits for ``waiting_on`` first, then drives the coroutine."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self._coro
        waiting_on = self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:  # a cancellation, passed on to the request
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration:
                    return


async def _resume(coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
    await _Continuation(coro, waiting_on)


def peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The peer's pid from ``SO_PEERCRED`` on a UNIX socket, else None."""
    peer = peer_credentials(writer.get_extra_info("socket"))
    return peer.pid if peer is not None and peer.pid > 0 else None


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
        idle = IdleTimer(
            self.state.config.idle_timeout, busy=lambda: self.busy, expire=self._idle_expired
        )
        try:
            self.write(self.greeting())
            while not self.closing:
                await self.writer.drain()
                data = await self.reader.read(READ_SIZE)
                idle.touch()
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
            idle.cancel()
            await self._shutdown()
            if metrics is not None:
                metrics.connection("dovecot", -1)
        log.debug("dovecot %s: disconnected", self.label)

    def _idle_expired(self) -> None:
        log.info(
            "dovecot %s: idle for %.0f s, disconnecting",
            self.label,
            self.state.config.idle_timeout,
        )
        self.abort()

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

    def spawn(
        self, coro: Coroutine[Any, Any, None], *, request_id: int
    ) -> asyncio.Task[None] | None:
        """Run one request; its failures stay inside it.

        It runs at once, up to the first thing it has to wait for (a hash, a
        directory read, a failure delay, the client's next line); only then does it
        become a task of its own, which is returned. A request decided from memory
        (a cached login) never needs one: None. Python 3.12's eager tasks do the
        same. Until the first wait the request runs inside the connection's task,
        so request code must not keep the current task across a wait
        (``asyncio.timeout`` does): tests/test_layers.py checks that none of the
        code does.
        """
        guarded = self._guard(coro, request_id)
        try:
            waiting_on = guarded.send(None)
        except StopIteration:
            return None
        task = asyncio.get_running_loop().create_task(_resume(guarded, waiting_on))
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, guarded))
        return task

    def _finished(self, guarded: Coroutine[Any, Any, None], task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # A task cancelled before it first ran never resumes the request: close it,
        # so that its ``finally`` blocks run now.
        guarded.close()

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
