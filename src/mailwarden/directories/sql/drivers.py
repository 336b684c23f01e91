"""The two drivers behind one small connection interface, and what their errors mean.

asyncpg (PostgreSQL) and aiomysql (MariaDB/MySQL) were chosen by measurement
(bench/sql_drivers.py, docs/sql.md). Each is wrapped in a :class:`Connection`:
``fetch``, ``execute``, a server-side ``cursor``, transactions, and ``abort``
(drop the socket at once: used after a timeout or a cancellation, when the
connection's state is unknown). :func:`classify` says what an exception from a
driver means for the pool (:data:`Failure`). Nothing here retries or times out;
:mod:`.database` does.

The drivers are imported on first connection, so loading the config or this
package costs nothing on a site that does not use SQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mailwarden.directories.sql.dialect import DriverName

#: What an exception means for the pool:
#: ``host``: the connection or server is unusable (discard, rest the host, a read may
#: go on to the next host); ``readonly``: a write reached a server that is not a
#: primary; ``duplicate``: a unique index refused a write; ``query``: this query
#: failed (syntax, missing table, lock timeout...), the connection is still good.
Failure = Literal["host", "readonly", "duplicate", "query"]


@dataclass(frozen=True, slots=True)
class Row:
    """One result row: column names (in the query's order) and values."""

    columns: tuple[str, ...]
    values: tuple[Any, ...]

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self.values[self.columns.index(name)]
        except ValueError:
            return default

    def __getitem__(self, name: str) -> Any:
        return self.values[self.columns.index(name)]

    def as_dict(self) -> dict[str, Any]:
        """Column -> value; with a repeated column name, the first one wins."""
        out: dict[str, Any] = {}
        for name, value in zip(self.columns, self.values, strict=True):
            out.setdefault(name, value)
        return out


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one server listens: a TCP host and port, or a UNIX socket (for
    PostgreSQL the socket's directory, for MariaDB the socket file)."""

    text: str  # as configured, for logs and failover bookkeeping
    host: str
    port: int
    unix_socket: str = ""


def parse_endpoint(text: str, default_port: int) -> Endpoint:
    """``name``, ``name:port``, ``[v6]:port``, an IP or an absolute socket path
    (already checked by config/sql.py)."""
    if text.startswith("/"):
        return Endpoint(text, text, default_port, unix_socket=text)
    if text.startswith("["):
        end = text.index("]")
        port = text[end + 2 :]
        return Endpoint(text, text[1:end], int(port) if port else default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return Endpoint(text, host, int(port))
    return Endpoint(text, text, default_port)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectOptions:
    database: str
    user: str
    password: str
    connect_timeout: float
    statement_timeout: float


class Connection(Protocol):
    """One open connection to one server (not safe for concurrent use)."""

    endpoint: Endpoint
    writable: bool  # a primary that accepts writes (checked at connect)

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> list[Row]: ...

    async def execute(self, sql: str, args: tuple[Any, ...]) -> int:
        """Rows affected."""
        ...

    def cursor(self, sql: str, args: tuple[Any, ...], batch: int) -> AsyncGenerator[list[Row]]:
        """The result in batches of at most ``batch`` rows, read from the server as
        they are consumed (in a transaction on PostgreSQL)."""
        ...

    async def begin(self) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    def abort(self) -> None:
        """Close the socket now, without a goodbye (state unknown)."""
        ...

    async def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...


async def connect(driver: DriverName, endpoint: Endpoint, options: ConnectOptions) -> Connection:
    """A new connection (driver errors propagate: :func:`classify` them)."""
    if driver == "postgresql":
        return await PgConnection.connect(endpoint, options)
    return await _MyConnection.connect(endpoint, options)


async def connect_postgresql(endpoint: Endpoint, options: ConnectOptions) -> PgConnection:
    """A new PostgreSQL connection, with its asyncpg connection at hand (LISTEN)."""
    return await PgConnection.connect(endpoint, options)


def classify(driver: DriverName, exc: BaseException) -> Failure:
    """What ``exc`` (raised by the driver or the socket) means for the pool."""
    if isinstance(exc, OSError | EOFError | ConnectionError):
        return "host"
    return _pg_classify(exc) if driver == "postgresql" else _my_classify(exc)


def constraint_of(driver: DriverName, exc: BaseException) -> str:
    """The name of the unique index a ``duplicate`` failure broke, if known."""
    if driver == "postgresql":
        import asyncpg  # noqa: PLC0415

        if isinstance(exc, asyncpg.PostgresError):
            return str(exc.constraint_name or "")
        return ""
    text = str(exc)
    marker = "for key '"
    if marker in text:  # MariaDB: Duplicate entry 'x' for key 'PRIMARY'
        return text.split(marker, 1)[1].split("'", 1)[0]
    return ""


def describe(exc: BaseException) -> str:
    """A short text for logs and DirectoryUnavailable messages (never a query's values)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ----------------------------------------------------------------------- PostgreSQL


def _pg_classify(exc: BaseException) -> Failure:
    import asyncpg  # noqa: PLC0415 - loaded only with the SQL directory

    if isinstance(exc, asyncpg.UniqueViolationError):
        return "duplicate"
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return "readonly"
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return "host"
    if not isinstance(exc, asyncpg.PostgresError):
        return "host"
    sqlstate: str = exc.sqlstate or ""
    # 08: connection exception, 57P: shutdown / cannot connect now, 53: resources,
    # 28: authorization (the server refuses us), 3D: no such database.
    if sqlstate.startswith(("08", "57P", "53", "28", "3D")):
        return "host"
    return "query"


class PgConnection:
    def __init__(self, conn: Any, endpoint: Endpoint) -> None:
        self._conn = conn
        self.endpoint = endpoint
        self.writable = True

    @classmethod
    async def connect(cls, endpoint: Endpoint, options: ConnectOptions) -> PgConnection:
        import asyncpg  # noqa: PLC0415

        conn = await asyncpg.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=options.user,
            password=options.password or None,
            database=options.database,
            timeout=options.connect_timeout,
            command_timeout=None,
            server_settings={
                "application_name": "mailwarden",
                # The server gives up too, so an abandoned query does not run on.
                "statement_timeout": str(int(options.statement_timeout * 1000)),
            },
        )
        wrapped = cls(conn, endpoint)
        try:
            read_only = await conn.fetchval("SHOW transaction_read_only")
            wrapped.writable = read_only == "off"
        except BaseException:
            conn.terminate()
            raise
        return wrapped

    @property
    def raw(self) -> Any:
        """The asyncpg connection (for LISTEN: :mod:`.listen`)."""
        return self._conn

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        records = await self._conn.fetch(sql, *args)
        if not records:
            return []
        columns = tuple(records[0].keys())
        return [Row(columns, tuple(r.values())) for r in records]

    async def execute(self, sql: str, args: tuple[Any, ...]) -> int:
        status: str = await self._conn.execute(sql, *args)
        last = status.rsplit(" ", 1)[-1]  # "UPDATE 1", "INSERT 0 1", "SELECT 3"
        return int(last) if last.isdigit() else 0

    async def cursor(
        self, sql: str, args: tuple[Any, ...], batch: int
    ) -> AsyncGenerator[list[Row]]:
        async with self._conn.transaction(readonly=True):
            cur = await self._conn.cursor(sql, *args)
            columns: tuple[str, ...] = ()
            while True:
                records = await cur.fetch(batch)
                if not records:
                    return
                if not columns:
                    columns = tuple(records[0].keys())
                yield [Row(columns, tuple(r.values())) for r in records]

    async def begin(self) -> None:
        await self._conn.execute("BEGIN")

    async def commit(self) -> None:
        await self._conn.execute("COMMIT")

    async def rollback(self) -> None:
        await self._conn.execute("ROLLBACK")

    def abort(self) -> None:
        self._conn.terminate()

    async def close(self) -> None:
        try:
            await self._conn.close(timeout=1.0)
        except Exception:
            self._conn.terminate()

    @property
    def closed(self) -> bool:
        return bool(self._conn.is_closed())


# -------------------------------------------------------------------------- MariaDB

# Error numbers that mean the server or connection is gone or refuses us.
_MY_HOST_ERRORS = frozenset(
    {
        1040,  # too many connections
        1044,  # access denied to the database
        1045,  # access denied for user
        1049,  # unknown database
        1053,  # server shutdown in progress
        1077,  # normal shutdown
        1152,  # aborted connection
        1927,  # connection was killed
        2002,  # can't connect through socket
        2003,  # can't connect to server
        2006,  # server has gone away
        2013,  # lost connection during query
        2014,  # commands out of sync
        2055,  # lost connection (system error)
    }
)
_MY_READONLY = frozenset({1290, 1836})  # --read-only / running in read-only mode
_MY_DUPLICATE = frozenset({1062, 1586})


def _my_classify(exc: BaseException) -> Failure:
    import pymysql  # noqa: PLC0415

    if not isinstance(exc, pymysql.err.MySQLError):
        return "host"
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    if code in _MY_DUPLICATE:
        return "duplicate"
    if code in _MY_READONLY:
        return "readonly"
    if code in _MY_HOST_ERRORS or isinstance(exc, pymysql.err.InterfaceError):
        return "host"
    if code == 0 or code >= 2000:  # 2xxx: client-side errors (the connection)
        return "host"
    return "query"


class _MyConnection:
    def __init__(self, conn: Any, endpoint: Endpoint) -> None:
        self._conn = conn
        self.endpoint = endpoint
        self.writable = True

    @classmethod
    async def connect(cls, endpoint: Endpoint, options: ConnectOptions) -> _MyConnection:
        import aiomysql  # noqa: PLC0415

        conn = await aiomysql.connect(
            host=endpoint.host,
            port=endpoint.port,
            unix_socket=endpoint.unix_socket or None,
            user=options.user,
            password=options.password,
            db=options.database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=options.connect_timeout,
            program_name="mailwarden",
        )
        wrapped = cls(conn, endpoint)
        try:
            rows = await wrapped.fetch("SELECT @@read_only, VERSION()", ())
            read_only, version = rows[0].values
            wrapped.writable = not int(read_only)
            # The server gives up too: MariaDB's max_statement_time (seconds, every
            # statement), MySQL's max_execution_time (milliseconds, SELECTs only).
            if "mariadb" in str(version).lower():
                limit = f"max_statement_time = {options.statement_timeout:.3f}"
            else:
                limit = f"max_execution_time = {int(options.statement_timeout * 1000)}"
            await wrapped.execute(f"SET SESSION {limit}", ())
        except BaseException:
            conn.close()
            raise
        return wrapped

    async def fetch(self, sql: str, args: tuple[Any, ...]) -> list[Row]:
        async with self._conn.cursor() as cur:
            await cur.execute(sql, args)
            records = await cur.fetchall()
            if not records:
                return []
            columns = tuple(d[0] for d in cur.description)
            return [Row(columns, tuple(r)) for r in records]

    async def execute(self, sql: str, args: tuple[Any, ...]) -> int:
        async with self._conn.cursor() as cur:
            count: int = await cur.execute(sql, args)
            return count

    async def cursor(
        self, sql: str, args: tuple[Any, ...], batch: int
    ) -> AsyncGenerator[list[Row]]:
        import aiomysql  # noqa: PLC0415

        cur = await self._conn.cursor(aiomysql.SSCursor)
        try:
            await cur.execute(sql, args)
            columns = tuple(d[0] for d in cur.description or ())
            while True:
                records = await cur.fetchmany(batch)
                if not records:
                    return
                yield [Row(columns, tuple(r)) for r in records]
        finally:
            # Closing an unbuffered cursor reads the rest of the result; when the
            # consumer stopped early the connection is dropped instead (by the pool).
            with contextlib.suppress(Exception):
                if not self._conn.closed:
                    await cur.close()

    async def begin(self) -> None:
        await self._conn.begin()

    async def commit(self) -> None:
        await self._conn.commit()

    async def rollback(self) -> None:
        await self._conn.rollback()

    def abort(self) -> None:
        self._conn.close()

    async def close(self) -> None:
        try:
            await self._conn.ensure_closed()
        except Exception:
            self._conn.close()

    @property
    def closed(self) -> bool:
        # aiomysql notices a closed socket only when it next reads; the stream
        # reader has seen the EOF already (a restarted server closes its end).
        reader = self._conn._reader
        return bool(self._conn.closed) or (reader is not None and reader.at_eof())
