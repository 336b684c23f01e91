"""The own schema (``sql.mode = "own"``) beyond the Directory contract: migrations,
what ``init`` refuses, and the change feed, on real PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence

import pytest

from mailwarden.config import SqlConfig
from mailwarden.directories.sql import Database, Param, Sql
from mailwarden.directories.sql.own import SCHEMA_VERSION, OwnDirectory
from mailwarden.directories.sql.own.feed import decode, encode
from mailwarden.directories.sql.own.schema import MIGRATIONS
from mailwarden.errors import AccountExists, DirectoryMissing, DirectoryUnavailable, InvalidAccount
from mailwarden.model import Account, AppPassword
from tests.conftest import sql_config_for
from tests.helpers import eventually
from tests.sqlservers import PostgresServer, SqlServer

pytestmark = pytest.mark.peer


async def _open(config: SqlConfig, *, create: bool) -> OwnDirectory:
    return await OwnDirectory.open(config, password=config.password, create=create)


async def _sql(config: SqlConfig, text: str) -> list[tuple[object, ...]]:
    db = await Database.open(config)
    try:
        return [row.values for row in await db.fetch(Sql.of(text), primary=True)]
    finally:
        await db.close()


async def test_init_creates_the_schema_once_and_keeps_the_data(sql_config: SqlConfig) -> None:
    first = await _open(sql_config, create=True)
    await first.create(Account(uid="alice", mail="alice@example.org"))
    await first.close()
    again = await _open(sql_config, create=True)  # init run twice
    try:
        assert await again.count() == 1
    finally:
        await again.close()
    rows = await _sql(sql_config, "SELECT application, version FROM mailwarden_schema")
    assert rows == [("mailwarden", SCHEMA_VERSION)]


async def test_an_empty_database_without_init_says_to_run_init(sql_config: SqlConfig) -> None:
    with pytest.raises(DirectoryMissing, match="mailwarden init"):
        await _open(sql_config, create=False)


async def test_a_newer_schema_is_refused(sql_config: SqlConfig) -> None:
    directory = await _open(sql_config, create=True)
    await directory.db.execute(
        Sql.of("UPDATE mailwarden_schema SET version = ", Param(SCHEMA_VERSION + 1))
    )
    await directory.close()
    for create in (False, True):
        with pytest.raises(DirectoryUnavailable, match="newer than this mailwarden"):
            await _open(sql_config, create=create)


async def test_a_database_of_another_application_is_refused(sql_config: SqlConfig) -> None:
    db = await Database.open(sql_config)
    await db.execute(Sql.of("CREATE TABLE mailbox (username VARCHAR(100) PRIMARY KEY)"))
    await db.close()
    with pytest.raises(DirectoryUnavailable, match="not a mailwarden database"):
        await _open(sql_config, create=True)
    assert await _sql(sql_config, "SELECT count(*) FROM mailbox") == [(0,)]


async def test_a_taken_address_names_its_owner_and_an_overlong_login_is_invalid(
    sql_config: SqlConfig,
) -> None:
    directory = await _open(sql_config, create=True)
    try:
        await directory.create(Account(uid="alice", mail="alice@example.org"))
        with pytest.raises(
            AccountExists, match=re.escape("'ALICE@example.org' already belongs to 'alice'")
        ):
            await directory.create(Account(uid="bob", mail="ALICE@example.org"))
        with pytest.raises(InvalidAccount, match="longer than"):
            await directory.create(Account(uid="x" * 701))
    finally:
        await directory.close()


def test_feed_payloads_round_trip_and_a_long_one_means_everything() -> None:
    assert decode(encode(["b", "a", "a"])) == ["a", "b"]
    assert decode(encode(None)) is None
    assert decode(encode([f"user{i}@example.org" for i in range(1000)])) is None
    assert decode("not json") is None


async def test_a_write_on_one_node_reaches_the_other_nodes_subscriber(
    sql_config: SqlConfig,
) -> None:
    """Node A writes; node B's feed (LISTEN on PostgreSQL, the polled change log on
    MariaDB) names the account's logins."""
    a = await _open(sql_config, create=True)
    b = await _open(dataclasses.replace(sql_config, poll_interval=0.05), create=False)
    heard: list[Sequence[str] | None] = []
    b.changes.subscribe(heard.append)
    try:
        # The feed starts with "everything" (nothing can be known of before it).
        await eventually(lambda: bool(heard), seconds=5)
        assert heard == [None]
        await a.create(Account(uid="Carol", mail="carol@example.org", password="{PLAIN}x"))
        await a.set_password("carol", "{PLAIN}y")
        await eventually(lambda: len(heard) >= 3, seconds=5)
        assert heard[1:] == [["carol", "carol@example.org"], ["carol"]]
    finally:
        await b.close()
        await a.close()


async def test_a_lost_listen_connection_flushes_everything_once_it_is_back(
    postgres_server: PostgresServer,
) -> None:
    """Notifications sent while LISTEN was down are lost: the feed says "everything"."""
    config = sql_config_for(postgres_server, postgres_server.create_database())
    directory = await _open(config, create=True)
    heard: list[Sequence[str] | None] = []
    directory.changes.subscribe(heard.append)
    try:
        listener = directory.feed.listener
        assert listener is not None and await listener.wait_connected(10)
        assert heard == [None]
        postgres_server.run_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{config.database}';"
        )
        await eventually(lambda: len(heard) >= 2)
        assert heard == [None, None]
        assert listener.connections == 2
    finally:
        await directory.close()


async def test_two_nodes_creating_one_address_at_once_get_one_account_and_a_named_refusal(
    sql_config: SqlConfig,
) -> None:
    a = await _open(sql_config, create=True)
    b = await _open(sql_config, create=False)
    try:
        for i in range(10):
            address = f"shared{i}@example.org"
            results = await asyncio.gather(
                a.create(Account(uid=f"a{i}", mail=address)),
                b.create(Account(uid=f"b{i}", alternate_addresses=(address,))),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, BaseException)]
            assert len(refused) == 1, results
            assert isinstance(refused[0], AccountExists)
            assert f"address {address!r} already belongs to" in str(refused[0])
    finally:
        await b.close()
        await a.close()


@pytest.mark.parametrize("killable_sql_server", ["mariadb"], indirect=True)
async def test_polls_that_failed_make_the_feed_flush_everything_when_they_work_again(
    killable_sql_server: SqlServer,
) -> None:
    """MariaDB: a change made while the node could not poll may be missed."""
    server = killable_sql_server
    config = dataclasses.replace(
        sql_config_for(server, server.create_database()), poll_interval=0.05, timeout=1.0
    )
    directory = await _open(config, create=True)
    heard: list[Sequence[str] | None] = []
    directory.changes.subscribe(heard.append)
    try:
        await eventually(lambda: bool(heard), seconds=5)
        assert heard == [None]
        polls = directory.feed.polls
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.5)
        assert directory.feed.polls == polls
        await asyncio.to_thread(server.start)
        await eventually(lambda: len(heard) >= 2)
        assert heard == [None, None]
    finally:
        await directory.close()


@pytest.mark.parametrize("odd", ["a\x00b", "a\udcffb"])
async def test_a_login_no_account_can_have_matches_nothing_instead_of_failing(
    sql_config: SqlConfig, odd: str
) -> None:
    """PostgreSQL refuses NUL (and both engines lone surrogates) in a query: such a
    name is an unknown user, not a temporary failure."""
    directory = await _open(sql_config, create=True)
    try:
        assert await directory.find(odd) is None
        assert await directory.get(odd) is None
        assert await directory.search(odd) == []
        assert await directory.find_by_fingerprint(odd) == []
        assert await directory.set_password(odd, "{PLAIN}x") is False
        assert await directory.delete(odd) is False
        with pytest.raises(InvalidAccount):
            await directory.create(Account(uid="nul", password="a\x00b"))
    finally:
        await directory.close()


async def test_init_upgrades_a_version_1_schema_for_app_passwords_and_keeps_the_data(
    sql_config: SqlConfig,
) -> None:
    db = await Database.open(sql_config)
    try:
        for statement in MIGRATIONS[0](db.dialect):
            await db.execute(Sql.of(statement))
        await db.execute(
            Sql.of(
                "CREATE TABLE mailwarden_schema (application VARCHAR(64) NOT NULL PRIMARY KEY,"
                " version INTEGER NOT NULL)"
            )
        )
        await db.execute(Sql.of("INSERT INTO mailwarden_schema VALUES ('mailwarden', 1)"))
        (row,) = await db.fetch(
            Sql.of(
                "INSERT INTO accounts (uid, password, status, master, allow_nets, passdb_fields,"
                " userdb_fields, profile, dns_records) VALUES"
                " ('alice', '', 'active', 0, '[]', '{}', '{}', '{}', '[]') RETURNING id"
            ),
            primary=True,
        )
        await db.execute(
            Sql.of(
                "INSERT INTO logins (login, space, kind, account_id, name) VALUES"
                " ('alice', 'uid', 'uid', ",
                Param(int(row.values[0])),
                ", 'alice')",
            )
        )
    finally:
        await db.close()
    with pytest.raises(DirectoryMissing, match="older"):
        await _open(sql_config, create=False)
    directory = await _open(sql_config, create=True)
    try:
        found = await directory.get("alice")
        assert found is not None and found.app_passwords == () and not found.app_passwords_only
        app = AppPassword(id="p1", name="phone", digest="0" * 64, services=("imap",), created=3)
        changed = await directory.update(
            "alice", {"app_passwords": (app,), "app_passwords_only": True}
        )
        assert await directory.get("alice") == changed
        assert changed.app_passwords == (app,)
    finally:
        await directory.close()
    rows = await _sql(sql_config, "SELECT version FROM mailwarden_schema")
    assert rows == [(SCHEMA_VERSION,)] and SCHEMA_VERSION >= 2
