"""The SQL connection layer against real PostgreSQL and MariaDB servers: queries,
streams, transactions, timeouts, outages, failover, recovery, LISTEN."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailwarden.config import SqlConfig
from mailwarden.directories.sql import Database, Param, Sql
from mailwarden.errors import DirectoryUnavailable, DuplicateKey
from tests.conftest import sql_config_for
from tests.sqlservers import (
    MariaDBServer,
    PostgresServer,
    SqlServer,
    free_port,
    have_postgres,
)

pytestmark = pytest.mark.peer

ODD = ["o'brien@example.org", "back\\slash", "100%", "%u", "$1", "ünï", 'q"uote', "a;b--"]


@pytest.fixture
async def db(sql_config: SqlConfig) -> AsyncIterator[Database]:
    database = await Database.open(sql_config)
    yield database
    await database.close()


async def make_table(db: Database) -> None:
    await db.execute(
        Sql.of("CREATE TABLE t (k VARCHAR(100) PRIMARY KEY, v VARCHAR(100), n INTEGER)")
    )


def sleep_query(db: Database, seconds: float) -> Sql:
    if db.dialect.name == "postgresql":
        return Sql.of(f"SELECT pg_sleep({seconds})")
    return Sql.of(f"SELECT SLEEP({seconds})")


async def test_bound_values_are_data_whatever_they_contain(db: Database) -> None:
    await make_table(db)
    for i, value in enumerate(ODD):
        await db.execute(
            Sql.of("INSERT INTO t (k, v, n) VALUES (", Param(value), ", 'x%y', ", Param(i), ")")
        )
    for i, value in enumerate(ODD):
        row = await db.fetchrow(Sql.of("SELECT k, v, n FROM t WHERE k = ", Param(value)))
        assert row is not None
        assert (row["k"], row["v"], row["n"]) == (value, "x%y", i)
        assert row.columns == ("k", "v", "n")
    assert await db.fetchrow(Sql.of("SELECT k FROM t WHERE k = ", Param("nobody"))) is None


async def test_upsert_inserts_then_overwrites(db: Database) -> None:
    await make_table(db)
    for v in ("one", "two"):
        await db.execute(db.dialect.upsert("t", ("k", "v", "n"), ("k",), ("key", v, 1)))
    rows = await db.fetch(Sql.of("SELECT v FROM t"))
    assert [r["v"] for r in rows] == ["two"]


async def test_a_duplicate_key_is_duplicatekey_and_the_pool_goes_on(db: Database) -> None:
    await make_table(db)
    insert = Sql.of("INSERT INTO t (k, v, n) VALUES ('a', 'b', 1)")
    await db.execute(insert)
    with pytest.raises(DuplicateKey):
        await db.execute(insert)
    assert len(await db.fetch(Sql.of("SELECT k FROM t"))) == 1


async def test_a_transaction_commits_at_the_end_and_rolls_back_on_an_exception(
    db: Database,
) -> None:
    await make_table(db)
    async with db.transaction() as tx:
        await tx.execute(Sql.of("INSERT INTO t (k, v, n) VALUES ('a', 'b', 1)"))
        assert (await tx.fetchrow(Sql.of("SELECT v FROM t WHERE k = 'a'"))) is not None
    with pytest.raises(LookupError):
        async with db.transaction() as tx:
            await tx.execute(Sql.of("UPDATE t SET v = 'changed'"))
            raise LookupError("the caller's own error passes through")
    with pytest.raises(DuplicateKey):
        async with db.transaction() as tx:
            await tx.execute(Sql.of("UPDATE t SET v = 'changed'"))
            await tx.execute(Sql.of("INSERT INTO t (k, v, n) VALUES ('a', 'b', 1)"))
    assert [r["v"] for r in await db.fetch(Sql.of("SELECT v FROM t"))] == ["b"]


async def test_stream_reads_every_row_in_batches_and_can_stop_early(
    sql_config: SqlConfig,
) -> None:
    db = await Database.open(dataclass_replace(sql_config, pool_size=1))
    try:
        await make_table(db)
        async with db.transaction() as tx:
            for i in range(1234):
                await tx.execute(
                    Sql.of("INSERT INTO t (k, v, n) VALUES (", Param(f"k{i:05}"), ", 'v', 0)")
                )
        seen = [r["k"] async for r in db.stream(Sql.of("SELECT k FROM t ORDER BY k"), batch=100)]
        assert seen == [f"k{i:05}" for i in range(1234)]
        async with contextlib.aclosing(db.stream(Sql.of("SELECT k FROM t"), batch=50)) as rows:
            async for _row in rows:
                break
        # The only connection was given back (dropped, not drained): the pool goes on.
        assert (await db.fetchrow(Sql.of("SELECT COUNT(*) AS c FROM t")))["c"] == 1234  # type: ignore[index]
    finally:
        await db.close()


async def test_a_query_over_the_timeout_is_unavailable_and_the_next_one_works(
    sql_config: SqlConfig,
) -> None:
    db = await Database.open(dataclass_replace(sql_config, timeout=0.5, pool_size=1))
    try:
        with pytest.raises(DirectoryUnavailable):
            await db.fetch(sleep_query(db, 3))
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
    finally:
        await db.close()


async def test_a_cancelled_query_leaves_a_working_pool(sql_config: SqlConfig) -> None:
    db = await Database.open(dataclass_replace(sql_config, pool_size=1))
    try:
        task = asyncio.create_task(db.fetch(sleep_query(db, 3)))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
    finally:
        await db.close()


async def test_a_bad_query_is_unavailable_never_an_empty_answer(db: Database) -> None:
    with pytest.raises(DirectoryUnavailable):
        await db.fetch(Sql.of("SELECT nope FROM no_such_table"))
    assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None


async def test_no_server_listening_is_unavailable(sql_server: SqlServer) -> None:
    config = sql_config_for(sql_server, "x", hosts=(f"127.0.0.1:{free_port()}",))
    with pytest.raises(DirectoryUnavailable):
        await Database.open(config)
    db = Database(config)
    with pytest.raises(DirectoryUnavailable):
        await db.fetch(Sql.of("SELECT 1"))


async def test_a_wrong_server_password_is_unavailable(sql_config: SqlConfig) -> None:
    with pytest.raises(DirectoryUnavailable):
        await Database.open(dataclass_replace(sql_config, password="wrong"))


async def test_reads_and_writes_skip_a_dead_first_host(
    sql_server: SqlServer, sql_database: str
) -> None:
    live = f"{sql_server.host}:{sql_server.port}"
    config = sql_config_for(sql_server, sql_database, hosts=(f"127.0.0.1:{free_port()}", live))
    db = await Database.open(config)
    try:
        await make_table(db)
        await db.execute(Sql.of("INSERT INTO t (k, v, n) VALUES ('a', 'b', 1)"))
        assert len(await db.fetch(Sql.of("SELECT k FROM t"))) == 1
    finally:
        await db.close()


async def test_a_replica_serves_reads_but_never_writes(
    sql_server: SqlServer, sql_database: str
) -> None:
    live = f"{sql_server.host}:{sql_server.port}"
    config = sql_config_for(
        sql_server, sql_database, hosts=(f"127.0.0.1:{free_port()}",), replicas=(live,)
    )
    db = await Database.open(config)
    try:
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
        with pytest.raises(DirectoryUnavailable):
            await db.execute(Sql.of("CREATE TABLE t (k INTEGER)"))
        with pytest.raises(DirectoryUnavailable):
            await db.fetch(Sql.of("SELECT 1"), primary=True)
    finally:
        await db.close()


async def test_a_unix_socket_host_works(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database()
    config = sql_config_for(
        postgres_server,
        database,
        hosts=(str(postgres_server.socket_dir),),
        port=postgres_server.port,
    )
    db = await Database.open(config)
    try:
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
    finally:
        await db.close()


async def test_mariadb_unix_socket_host_works(mariadb_server: MariaDBServer) -> None:
    database = mariadb_server.create_database()
    config = sql_config_for(mariadb_server, database, hosts=(mariadb_server.unix_socket,))
    db = await Database.open(config)
    try:
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
    finally:
        await db.close()


# ------------------------------------------------------------- a server of its own


async def test_a_killed_server_is_unavailable_and_its_return_needs_no_restart_of_ours(
    killable_sql_server: SqlServer,
) -> None:
    database = killable_sql_server.create_database()
    db = await Database.open(
        sql_config_for(killable_sql_server, database, timeout=2.0, pool_size=2)
    )
    try:
        await make_table(db)
        await db.execute(Sql.of("INSERT INTO t (k, v, n) VALUES ('a', 'b', 1)"))
        killable_sql_server.kill()
        for _ in range(3):
            with pytest.raises(DirectoryUnavailable):
                await db.fetch(Sql.of("SELECT k FROM t"))
        with pytest.raises(DirectoryUnavailable):
            await db.execute(Sql.of("UPDATE t SET n = 2"))
        await asyncio.to_thread(killable_sql_server.start)
        # The first read after the restart already answers (dead pooled
        # connections are replaced, the rest of a failed host is bypassed).
        rows = await db.fetch(Sql.of("SELECT k FROM t"))
        assert [r["k"] for r in rows] == ["a"]
        assert await db.execute(Sql.of("UPDATE t SET n = 2")) == 1
    finally:
        await db.close()


async def test_a_restart_between_queries_costs_no_failed_read_or_transaction(
    killable_sql_server: SqlServer,
) -> None:
    database = killable_sql_server.create_database()
    db = await Database.open(sql_config_for(killable_sql_server, database, pool_size=1))
    try:
        await make_table(db)
        killable_sql_server.stop()
        await asyncio.to_thread(killable_sql_server.start)
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
        killable_sql_server.stop()
        await asyncio.to_thread(killable_sql_server.start)
        async with db.transaction() as tx:
            await tx.execute(Sql.of("INSERT INTO t (k, v, n) VALUES ('a', 'b', 1)"))
        assert len(await db.fetch(Sql.of("SELECT k FROM t"))) == 1
    finally:
        await db.close()


# -------------------------------------------------------------------------- LISTEN


async def wait_for(predicate: object, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_listen_delivers_notifications_and_reconnects_after_a_crash() -> None:
    if not have_postgres():
        pytest.skip("PostgreSQL is not installed")
    root = Path(tempfile.mkdtemp(prefix="mailwarden-pglisten-"))
    root.chmod(0o711)
    server = PostgresServer(root)
    try:
        server.start()
        database = server.create_database()
        db = await Database.open(sql_config_for(server, database))
        got: list[str] = []
        reconnects: list[int] = []
        listener = db.listen(
            "accounts",
            on_notify=got.append,
            on_reconnect=lambda: reconnects.append(1),
            keepalive=0.5,
        )
        try:
            assert await listener.wait_connected(10)
            await db.notify("accounts", "alice's 100% ünï")
            async with db.transaction() as tx:
                await tx.notify("accounts", "at commit")
            await wait_for(lambda: len(got) == 2)
            assert got == ["alice's 100% ünï", "at commit"]
            assert len(reconnects) == 1

            server.kill()
            await wait_for(lambda: not listener.connected)
            await asyncio.to_thread(server.start)
            await wait_for(lambda: len(reconnects) == 2)
            await db.notify("accounts", "after the crash")
            await wait_for(lambda: len(got) == 3)
            assert got[-1] == "after the crash"
        finally:
            await listener.close()
            await db.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def dataclass_replace(config: SqlConfig, **changes: object) -> SqlConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


async def test_a_read_only_server_serves_reads_refuses_writes_and_is_asked_again(
    postgres_server: PostgresServer,
) -> None:
    database = postgres_server.create_database()
    postgres_server.run_sql(f"ALTER DATABASE {database} SET default_transaction_read_only = on;")
    config = sql_config_for(postgres_server, database, backoff_max=0.2, pool_size=2)
    db = await Database.open(config)
    try:
        # Both pooled connections now know the server as read-only.
        assert await db.fetchrow(Sql.of("SELECT 1 AS one")) is not None
        with pytest.raises(DirectoryUnavailable, match="read-only"):
            await db.execute(Sql.of("CREATE TABLE t (k INTEGER)"))
        # Promoted (here: the setting lifted): once the rest is over, writes go there.
        postgres_server.run_sql(
            f"ALTER DATABASE {database} SET default_transaction_read_only = off;"
        )
        await asyncio.sleep(0.3)
        await db.execute(Sql.of("CREATE TABLE t (k INTEGER)"))
    finally:
        await db.close()
