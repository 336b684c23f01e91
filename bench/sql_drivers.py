"""CPU per point SELECT for each asyncio SQL driver, against real servers.

Starts a private PostgreSQL and MariaDB (tests/sqlservers.py), fills a table of
1000 accounts, then runs ``--queries`` point SELECTs by primary key, one at a time
and ``--concurrency`` at a time, with each driver: asyncpg and psycopg 3 (async)
for PostgreSQL, asyncmy and aiomysql for MariaDB. Prints the client-side CPU
(``time.process_time``: our process only, not the server's) and wall time per
query. Results and the choice are in docs/sql.md. Keep runs short (two shared cores).

    .venv/bin/python -m bench.sql_drivers --queries 3000
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql
import asyncmy
import asyncpg
from psycopg_pool import AsyncConnectionPool
from tests.sqlservers import PASSWORD, USER, MariaDBServer, PostgresServer

SCHEMA = "CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255));"

Query = Callable[[str], Awaitable[Any]]


async def asyncpg_query(pg: PostgresServer, db: str) -> tuple[Query, Callable[[], Awaitable[None]]]:
    pool = await asyncpg.create_pool(pg.dsn(db), min_size=4, max_size=4)
    sql = "SELECT username, password FROM mailbox WHERE username = $1"

    async def q(user: str) -> Any:
        async with pool.acquire() as conn:
            return await conn.fetchrow(sql, user)

    return q, pool.close


async def psycopg_query(pg: PostgresServer, db: str) -> tuple[Query, Callable[[], Awaitable[None]]]:
    pool = AsyncConnectionPool(pg.dsn(db), min_size=4, max_size=4, open=False)
    await pool.open()
    sql = "SELECT username, password FROM mailbox WHERE username = %s"

    async def q(user: str) -> Any:
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(sql, (user,), prepare=True)
            return await cur.fetchone()

    return q, pool.close


async def mysql_query(
    driver: Any, my: MariaDBServer, db: str
) -> tuple[Query, Callable[[], Awaitable[None]]]:
    """The point SELECT through ``driver`` (asyncmy or aiomysql: the same pool API)."""
    pool = await driver.create_pool(
        host=my.host, port=my.port, user=USER, password=PASSWORD, db=db, minsize=4, maxsize=4
    )
    sql = "SELECT username, password FROM mailbox WHERE username = %s"

    async def q(user: str) -> Any:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, (user,))
            return await cur.fetchone()

    async def close() -> None:
        pool.close()
        await pool.wait_closed()

    return q, close


async def measure(name: str, query: Query, n: int, concurrency: int) -> None:
    users = [f"user{i % 1000}@example.org" for i in range(n)]
    for u in users[:100]:  # warm up: connections, prepared statements
        await query(u)
    for label, width in (("serial", 1), (f"x{concurrency}", concurrency)):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(0, n, width):
            rows = await asyncio.gather(*(query(u) for u in users[i : i + width]))
            assert all(r is not None for r in rows)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(
            f"{name:10} {label:7} cpu/query {cpu / n * 1e6:7.1f} us"
            f"   wall/query {wall / n * 1e6:7.1f} us   {n / wall:8.0f} q/s"
        )


async def main_async(n: int, concurrency: int, root: Path) -> None:
    pg, my = PostgresServer(root / "pg"), MariaDBServer(root / "my")
    for server in (pg, my):
        (server.root).mkdir()
        server.start()
    try:
        rows = ",".join(f"('user{i}@example.org','{{PLAIN}}pw{i}')" for i in range(1000))
        fill = SCHEMA + f"INSERT INTO mailbox VALUES {rows};"  # noqa: S608 - our own values
        pg_db, my_db = pg.create_database(), my.create_database()
        pg.run_sql(fill, pg_db)
        my.run_sql(fill, my_db)
        makers: list[tuple[str, Any]] = [
            ("asyncpg", asyncpg_query(pg, pg_db)),
            ("psycopg", psycopg_query(pg, pg_db)),
            ("asyncmy", mysql_query(asyncmy, my, my_db)),
            ("aiomysql", mysql_query(aiomysql, my, my_db)),
        ]
        for name, maker in makers:
            query, close = await maker
            try:
                await measure(name, query, n, concurrency)
            finally:
                await close()
    finally:
        pg.stop()
        my.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailwarden-sqlbench-"))
    root.chmod(0o711)
    try:
        asyncio.run(main_async(args.queries, args.concurrency, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
