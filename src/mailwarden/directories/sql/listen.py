"""PostgreSQL LISTEN on a connection of its own, reconnecting for as long as it runs.

:class:`Listener` keeps one connection (outside the pool) to the first reachable
primary of ``sql.hosts``, LISTENs on a channel and calls ``on_notify(payload)`` for
every notification. Notifications sent while it was disconnected are lost, so after
every (re)connection, once LISTEN is in place, it calls ``on_reconnect()``: a cache
kept fresh by notifications must drop everything there (the first connection
included). A dead connection is found by the driver's termination callback (the
server closed it) or by a ``SELECT 1`` every ``keepalive`` seconds that does not
answer within ``sql.timeout`` (the network dropped it); it then waits a backoff
(doubling from 0.1 s up to ``sql.backoff_max``) and connects again.

Callbacks run on the event loop and must not block; an exception in one is logged
and the listener carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from mailwarden.directories.failover import BACKOFF_START
from mailwarden.directories.sql.drivers import (
    ConnectOptions,
    Endpoint,
    PgConnection,
    connect_postgresql,
    describe,
)
from mailwarden.lograte import RateLimitedLog

log = logging.getLogger("mailwarden.directory.sql")


class Listener:
    """LISTEN ``channel`` until :meth:`close` (module docstring)."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        options: ConnectOptions,
        channel: str,
        *,
        on_notify: Callable[[str], None],
        on_reconnect: Callable[[], None] = lambda: None,
        backoff_max: float = 1.0,
        keepalive: float = 10.0,
    ) -> None:
        if not endpoints:
            raise ValueError("a listener needs at least one host")
        self.endpoints = tuple(endpoints)
        self.options = options
        self.channel = channel
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.backoff_max = backoff_max
        self.keepalive = keepalive
        self.connections = 0  # successful (re)connections so far
        self._connected = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"sql-listen-{self.channel}")

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        """Whether the listener is connected (waiting at most ``timeout`` seconds)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    async def close(self) -> None:
        self._closing.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = BACKOFF_START
        while not self._closing.is_set():
            try:
                await self._session()
                backoff = BACKOFF_START  # it worked for a while: start the backoff over
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning(
                    "listen", "sql LISTEN %s: %s; reconnecting", self.channel, describe(exc)
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _session(self) -> None:
        conn = await self._connect()
        raw: Any = conn.raw
        lost = asyncio.Event()
        try:
            raw.add_termination_listener(lambda _c: lost.set())
            await raw.add_listener(self.channel, self._deliver)
            self._connected.set()
            self.connections += 1
            if self.connections > 1:
                log.info("sql LISTEN %s: connected again", self.channel)
            self._log.clear("listen")
            self._call(self.on_reconnect)
            while not lost.is_set() and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                if not lost.is_set():
                    await asyncio.wait_for(raw.fetchval("SELECT 1"), self.options.statement_timeout)
        finally:
            self._connected.clear()
            conn.abort()

    async def _connect(self) -> PgConnection:
        last: Exception | None = None
        for endpoint in self.endpoints:
            try:
                conn = await asyncio.wait_for(
                    connect_postgresql(endpoint, self.options), self.options.connect_timeout
                )
            except Exception as exc:
                last = exc
                continue
            if conn.writable:  # notifications are sent on the primary
                return conn
            conn.abort()
        raise last if last is not None else ConnectionError("no primary among sql.hosts")

    def _deliver(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._call(lambda: self.on_notify(payload))

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("sql LISTEN %s: callback failed", self.channel)
