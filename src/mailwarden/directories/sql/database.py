"""The connection pool: bounded connections, failover across hosts, one deadline per
operation, and every failure as DirectoryUnavailable (the package docstring has the
rules; this module is their one implementation)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from mailwarden.config import SqlConfig
from mailwarden.directories.failover import Servers
from mailwarden.directories.sql.dialect import DIALECTS, Param, Sql
from mailwarden.directories.sql.drivers import (
    Connection,
    ConnectOptions,
    Endpoint,
    Row,
    classify,
    connect,
    constraint_of,
    describe,
    parse_endpoint,
)
from mailwarden.directories.sql.listen import Listener
from mailwarden.errors import ConfigError, DirectoryUnavailable, DuplicateKey
from mailwarden.lograte import RateLimitedLog

log = logging.getLogger("mailwarden.directory.sql")

T = TypeVar("T")


@dataclass(slots=True)
class _Slot:
    conn: Connection | None = None


class _HostFailed(Exception):
    """One host could not be used for this operation (already logged, host rested)."""


class Database:
    """A pool of connections to the ``[sql]`` servers (package docstring)."""

    def __init__(self, config: SqlConfig, *, password: str | None = None) -> None:
        """``password``: the server password (read from ``password_file`` by the
        caller: :func:`.modes.read_password`); None: ``config.password``."""
        self.config = config
        self.dialect = DIALECTS[config.driver]
        port = config.port or self.dialect.default_port
        self.hosts = tuple(parse_endpoint(h, port) for h in config.hosts)
        self.replicas = tuple(parse_endpoint(h, port) for h in config.replicas)
        first, then = (
            (self.hosts, self.replicas)
            if config.read_from == "hosts"
            else (self.replicas, self.hosts)
        )
        self._read_order = _unique((*first, *then))
        self._write_order = _unique(self.hosts)
        self._servers = Servers(
            [e.text for e in _unique((*self.hosts, *self.replicas))],
            config.backoff_max,
            label=f"{config.driver} host",
            logger=log,
        )
        # Hosts a write found read-only (a replica, a demoted primary): skipped by
        # writes until the time noted, then checked again.
        self._not_primary: dict[str, float] = {}
        self._options = ConnectOptions(
            database=config.database,
            user=config.user,
            password=config.password if password is None else password,
            connect_timeout=config.connect_timeout,
            statement_timeout=config.timeout,
        )
        self._all_slots = [_Slot() for _ in range(config.pool_size)]
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._all_slots:
            self._slots.put_nowait(slot)
        self._query_log = RateLimitedLog(log)
        self._closed = False

    @classmethod
    async def open(cls, config: SqlConfig, *, password: str | None = None) -> Database:
        """A pool on ``config``'s servers; DirectoryUnavailable if none answers."""
        db = cls(config, password=password)
        try:
            await db.ping()
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def options(self) -> ConnectOptions:
        """How connections are opened (for :class:`~.listen.Listener`)."""
        return self._options

    # ----------------------------------------------------------------- public API

    async def fetch(self, query: Sql, *, primary: bool = False) -> list[Row]:
        """All rows of a read; on a primary when ``primary`` (read-your-writes)."""
        text, args = self.dialect.render(query)
        return await self._run(lambda c: c.fetch(text, args), write=primary)

    async def fetchrow(self, query: Sql, *, primary: bool = False) -> Row | None:
        """The first row of a read, or None."""
        rows = await self.fetch(query, primary=primary)
        return rows[0] if rows else None

    async def execute(self, query: Sql) -> int:
        """A write on a primary, committed at once; rows affected. Never retried."""
        text, args = self.dialect.render(query)
        return await self._run(lambda c: c.execute(text, args), write=True)

    async def notify(self, channel: str, payload: str) -> None:
        """PostgreSQL ``NOTIFY`` (through ``pg_notify``, so both are bound values)."""
        await self.execute(self.notify_query(channel, payload))

    def notify_query(self, channel: str, payload: str) -> Sql:
        """The ``NOTIFY`` statement, for use inside a :meth:`transaction` (sent at commit)."""
        if self.dialect.name != "postgresql":
            raise ConfigError("LISTEN/NOTIFY needs PostgreSQL", key="sql.driver")
        return Sql.of("SELECT pg_notify(", Param(channel), ", ", Param(payload), ")")

    def listen(
        self,
        channel: str,
        *,
        on_notify: Callable[[str], None],
        on_reconnect: Callable[[], None] = lambda: None,
        keepalive: float = 10.0,
    ) -> Listener:
        """A started :class:`~.listen.Listener` on ``channel`` (PostgreSQL only), on
        the first reachable primary of ``hosts``; :meth:`Listener.close` it."""
        if self.dialect.name != "postgresql":
            raise ConfigError("LISTEN/NOTIFY needs PostgreSQL", key="sql.driver")
        listener = Listener(
            self.hosts,
            self._options,
            channel,
            on_notify=on_notify,
            on_reconnect=on_reconnect,
            backoff_max=self.config.backoff_max,
            keepalive=keepalive,
        )
        listener.start()
        return listener

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One connection to a primary in a transaction, committed when the block ends.

        The whole block (waiting for a connection included) has one ``timeout``. An
        exception in the block, or a failed statement, drops the connection, which
        rolls the transaction back; after a failed statement the transaction cannot
        be used any more (raise out of the block)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        slot = await self._take_slot(deadline)
        try:
            conn = await self._begin(slot, deadline)
            done = False
            try:
                # Statements in the block raise errors.py exceptions already
                # (Transaction); anything else is the caller's own, passed on.
                yield Transaction(self, conn, deadline)
                await self._step(conn, conn.commit(), deadline)
                done = True
            finally:
                if not done:
                    conn.abort()  # the server rolls the transaction back
                    slot.conn = None
        finally:
            self._slots.put_nowait(slot)

    async def stream(self, query: Sql, *, batch: int = 500) -> AsyncGenerator[Row]:
        """The rows of a read, fetched ``batch`` at a time from a server-side cursor
        (never the whole result in memory). Each batch has its own ``timeout``; the
        connection is held until the iterator ends, so close it (``aclosing``) when
        stopping early: the connection is then dropped, not drained."""
        text, args = self.dialect.render(query)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        slot = await self._take_slot(deadline)
        finished = False
        conn: Connection | None = None
        try:
            conn = await self._usable_connection(slot, self._read_order, False, deadline)
            batches = conn.cursor(text, args, batch)
            try:
                while True:
                    try:
                        rows = await asyncio.wait_for(anext(batches), self.config.timeout)
                    except StopAsyncIteration:
                        finished = True
                        break
                    except TimeoutError:
                        raise DirectoryUnavailable("sql: a batch of rows timed out") from None
                    except Exception as exc:
                        raise self._translate(conn.endpoint, exc) from exc
                    for row in rows:
                        yield row
            finally:
                if not finished:
                    conn.abort()
                    slot.conn = None
                with contextlib.suppress(Exception):
                    await batches.aclose()
        finally:
            self._slots.put_nowait(slot)

    async def ping(self) -> None:
        """DirectoryUnavailable unless a read host answers ``SELECT 1``."""
        await self.fetch(Sql.of("SELECT 1"))

    async def close(self) -> None:
        """Close every idle connection; operations after this are DirectoryUnavailable."""
        self._closed = True
        for slot in self._all_slots:
            conn, slot.conn = slot.conn, None
            if conn is not None and not conn.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2.0)

    # --------------------------------------------------------------- machinery

    async def _take_slot(self, deadline: float) -> _Slot:
        if self._closed:
            raise DirectoryUnavailable("sql directory: closed")
        try:
            return await within(deadline, self._slots.get())
        except TimeoutError:
            raise DirectoryUnavailable("sql: no free connection within the timeout") from None

    async def _run(self, op: Callable[[Connection], Awaitable[T]], *, write: bool) -> T:
        """Run ``op`` on a connection of this pool, with failover (package docstring)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        order = self._write_order if write else self._read_order
        slot = await self._take_slot(deadline)
        failed: set[str] = set()  # hosts a fresh connection failed on, in this operation
        try:
            # A pooled connection found dead (the server restarted) costs one more
            # attempt on the same host; a failed host moves a read to the next one.
            for _attempt in range(2 * len(order) + 2):
                reused = slot.conn is not None
                conn = await self._usable_connection(slot, order, write, deadline, failed)
                try:
                    result = await within(deadline, op(conn))
                except TimeoutError:
                    conn.abort()
                    slot.conn = None
                    self._servers.failed(conn.endpoint.text, "timed out")
                    raise DirectoryUnavailable(
                        f"sql: {conn.endpoint.text}: no answer within {self.config.timeout} s"
                    ) from None
                except asyncio.CancelledError:
                    conn.abort()
                    slot.conn = None
                    raise
                except Exception as exc:
                    kind = classify(self.config.driver, exc)
                    if kind == "host":
                        conn.abort()
                        slot.conn = None
                        if write:  # it may have been applied: never sent twice
                            self._servers.failed(conn.endpoint.text, describe(exc))
                            raise DirectoryUnavailable(
                                f"sql: {conn.endpoint.text}: {describe(exc)}"
                            ) from exc
                        if not reused:
                            self._servers.failed(conn.endpoint.text, describe(exc))
                            failed.add(conn.endpoint.text)
                        continue
                    if kind == "readonly" and write:
                        self._not_primary[conn.endpoint.text] = (
                            time.monotonic() + self.config.backoff_max
                        )
                        continue  # refused, so nothing was written: the next host
                    raise self._translate(conn.endpoint, exc) from exc
                self._servers.worked(conn.endpoint.text)
                return result
            raise DirectoryUnavailable("sql: no host could answer")
        finally:
            self._slots.put_nowait(slot)

    async def _usable_connection(
        self,
        slot: _Slot,
        order: Sequence[Endpoint],
        write: bool,
        deadline: float,
        skip: frozenset[str] | set[str] = frozenset(),
    ) -> Connection:
        """The slot's connection if it is to the first usable host of ``order`` (not in
        ``skip``), else a new one to it (the old one closed). DirectoryUnavailable
        when no host can be connected to before ``deadline``."""
        tried: set[str] = set(skip)
        last = "no host configured"
        for _ in range(len(order) + 1):
            endpoint = self._choose(order, tried, write)
            if endpoint is None:
                break
            tried.add(endpoint.text)
            conn = slot.conn
            stale_read_only = (
                write
                and conn is not None
                and not conn.writable
                and self._not_primary.get(endpoint.text, 0.0) <= time.monotonic()
            )
            if conn is not None and (conn.closed or conn.endpoint != endpoint or stale_read_only):
                # (A read-only connection whose host's rest is over: ask a new one.)
                conn.abort()
                slot.conn = conn = None
            if conn is None:
                try:
                    conn = await self._connect(endpoint, deadline)
                except _HostFailed as failed:
                    last = str(failed)
                    continue
                slot.conn = conn
            if write and not conn.writable:
                # Writes skip it for a while; then a new connection asks again (a
                # standby may have been promoted meanwhile).
                self._not_primary[endpoint.text] = time.monotonic() + self.config.backoff_max
                conn.abort()
                slot.conn = None
                last = f"{endpoint.text} is read-only (not a primary)"
                continue
            self._not_primary.pop(endpoint.text, None)
            return conn
        raise DirectoryUnavailable(f"sql: {last}")

    def _choose(self, order: Sequence[Endpoint], tried: set[str], write: bool) -> Endpoint | None:
        now = time.monotonic()
        left = [e for e in order if e.text not in tried]
        if write:
            primaries = [e for e in left if self._not_primary.get(e.text, 0.0) <= now]
            left = primaries or left
        fresh = [e for e in left if not self._servers.resting(e.text)]
        if fresh:
            return fresh[0]
        # Every other host failed this operation: a resting one may be back already.
        return left[0] if left else None

    async def _connect(self, endpoint: Endpoint, deadline: float) -> Connection:
        loop = asyncio.get_running_loop()
        until = min(deadline, loop.time() + self.config.connect_timeout)
        try:
            return await within(until, connect(self.config.driver, endpoint, self._options))
        except TimeoutError:
            why = "connect timed out"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = describe(exc)
        self._servers.failed(endpoint.text, why)
        raise _HostFailed(f"{endpoint.text}: {why}")

    async def _begin(self, slot: _Slot, deadline: float) -> Connection:
        """A primary connection in the slot with a transaction begun. A pooled
        connection found dead at ``BEGIN`` (nothing was written yet) is replaced once."""
        for attempt in range(2):
            reused = slot.conn is not None
            conn = await self._usable_connection(slot, self._write_order, True, deadline)
            try:
                await within(deadline, conn.begin())
            except TimeoutError:
                conn.abort()
                slot.conn = None
                self._servers.failed(conn.endpoint.text, "timed out")
                raise DirectoryUnavailable("sql: transaction timed out") from None
            except asyncio.CancelledError:
                conn.abort()
                slot.conn = None
                raise
            except Exception as exc:
                conn.abort()
                slot.conn = None
                if attempt == 0 and reused and classify(self.config.driver, exc) == "host":
                    continue
                raise self._translate(conn.endpoint, exc) from exc
            return conn
        raise DirectoryUnavailable("sql: no connection could begin a transaction")

    async def _step(self, conn: Connection, work: Awaitable[T], deadline: float) -> T:
        """One statement of a transaction on ``conn``, its failures as errors.py's."""
        try:
            return await within(deadline, work)
        except TimeoutError:
            self._servers.failed(conn.endpoint.text, "timed out")
            raise DirectoryUnavailable("sql: transaction timed out") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(conn.endpoint, exc) from exc

    def _translate(self, endpoint: Endpoint, exc: BaseException) -> Exception:
        """The errors.py exception for a driver error on ``endpoint``."""
        kind = classify(self.config.driver, exc)
        if kind == "duplicate":
            return DuplicateKey(
                f"sql: {describe(exc)}", constraint=constraint_of(self.config.driver, exc)
            )
        if kind == "host":
            self._servers.failed(endpoint.text, describe(exc))
        elif kind == "query":
            # A query the server refuses (a typo in a configured query, a missing
            # table) fails every login the same way: logged, at a bounded rate.
            self._query_log.error("query", "sql query failed: %s", describe(exc))
        return DirectoryUnavailable(f"sql: {endpoint.text}: {describe(exc)}")


class Transaction:
    """Statements inside :meth:`Database.transaction` (one connection, one deadline)."""

    def __init__(self, db: Database, conn: Connection, deadline: float) -> None:
        self._db = db
        self._conn = conn
        self._deadline = deadline

    async def fetch(self, query: Sql) -> list[Row]:
        text, args = self._db.dialect.render(query)
        return await self._step(self._conn.fetch(text, args))

    async def fetchrow(self, query: Sql) -> Row | None:
        rows = await self.fetch(query)
        return rows[0] if rows else None

    async def execute(self, query: Sql) -> int:
        text, args = self._db.dialect.render(query)
        return await self._step(self._conn.execute(text, args))

    async def notify(self, channel: str, payload: str) -> None:
        """Queue a PostgreSQL notification, delivered when the transaction commits."""
        await self.execute(self._db.notify_query(channel, payload))

    async def _step(self, work: Awaitable[T]) -> T:
        return await self._db._step(self._conn, work, self._deadline)


async def within(deadline: float, work: Awaitable[T]) -> T:
    """``await work``, TimeoutError at ``deadline`` (the loop's clock).

    ``asyncio.wait_for`` rather than ``asyncio.timeout``: a login runs inside its
    connection's task, which a timeout context would cancel (tests/test_layers.py)."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        if asyncio.iscoroutine(work):
            work.close()
        raise TimeoutError
    return await asyncio.wait_for(work, remaining)


def _unique(endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
    seen: dict[str, Endpoint] = {}
    for e in endpoints:
        seen.setdefault(e.text, e)
    return tuple(seen.values())
