"""The SQL state store as several nodes use it: two stores (two pools, as two nodes
have) on one PostgreSQL or MariaDB database, its schema made by ``init``, and the
failures a node sees (StateUnavailable, never a crash)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import CliRunner

from mailwarden import config as config_mod
from mailwarden.accounts import totp
from mailwarden.accounts.staff import ADMIN_OWNER, Staff
from mailwarden.cli import main
from mailwarden.config import SqlConfig
from mailwarden.directories.sql.own import OwnDirectory
from mailwarden.errors import ConfigError, StateUnavailable
from mailwarden.hashing.pool import Hasher
from mailwarden.state.base import Administrator, ApiToken
from mailwarden.state.opening import open_state
from mailwarden.state.sql import SqlStateStore
from mailwarden.state.sqlschema import SCHEMA_VERSION
from tests.conftest import sql_config_for
from tests.sqlservers import SqlServer, free_port
from tests.staffing import ADMIN_NAME, ADMIN_SECRET, add_admin

NOW = 1_800_000_000.0


async def open_store(config: SqlConfig, *, create: bool = True) -> SqlStateStore:
    return await SqlStateStore.open(config, password=config.password, create=create)


@pytest_asyncio.fixture
async def two(sql_config: SqlConfig) -> AsyncIterator[tuple[SqlStateStore, SqlStateStore]]:
    """Two stores on one database, as two nodes of a site have them."""
    a = await open_store(sql_config)
    b = await open_store(sql_config)
    yield a, b
    await a.close()
    await b.close()


async def test_administrators_and_tokens_added_on_one_node_are_seen_on_the_other(
    two: tuple[SqlStateStore, SqlStateStore],
) -> None:
    a, b = two
    await a.add_admin(Administrator(name="ann", password="{PLAIN}x", role="admin", created=1.5))
    await a.add_token(
        ApiToken(name="ci", digest="d1", scope="read", created=2.5, created_by="cli:root")
    )
    got = await b.admin("ann")
    assert got is not None and got.role == "admin" and got.created == 1.5
    token = await b.token("d1")
    assert token is not None and token.name == "ci" and token.expires is None
    assert await b.remove_token("ci")
    assert await a.token("d1") is None


async def test_a_totp_code_accepted_on_one_node_is_refused_on_the_other(
    two: tuple[SqlStateStore, SqlStateStore],
) -> None:
    a, b = two
    hasher = Hasher(workers=1)
    try:
        await add_admin(a)
        node_a = Staff(a, hasher, clock=lambda: NOW)
        node_b = Staff(b, hasher, clock=lambda: NOW)
        owner = ADMIN_OWNER + ADMIN_NAME
        code = totp.code_at(ADMIN_SECRET, int(NOW // totp.STEP))
        assert await node_a.check_code(owner, code) is totp.Verdict.ACCEPTED
        assert await node_b.check_code(owner, code) is totp.Verdict.REPLAYED
        assert await node_a.check_code(owner, code) is totp.Verdict.REPLAYED
    finally:
        hasher.close()
        await hasher.wait_closed()


async def test_the_same_code_at_once_on_both_nodes_is_accepted_once(
    two: tuple[SqlStateStore, SqlStateStore],
) -> None:
    a, b = two
    hasher = Hasher(workers=1)
    try:
        await add_admin(a)
        owner = ADMIN_OWNER + ADMIN_NAME
        code = totp.code_at(ADMIN_SECRET, int(NOW // totp.STEP))
        nodes = [Staff(s, hasher, clock=lambda: NOW) for s in (a, b, a, b)]
        verdicts = await asyncio.gather(*(n.check_code(owner, code) for n in nodes))
        assert verdicts.count(totp.Verdict.ACCEPTED) == 1
        assert set(verdicts) == {totp.Verdict.ACCEPTED, totp.Verdict.REPLAYED}
    finally:
        hasher.close()
        await hasher.wait_closed()


async def test_only_one_first_administrator_when_two_nodes_race(
    two: tuple[SqlStateStore, SqlStateStore],
) -> None:
    a, b = two
    made = [Administrator(name=f"a{i}", password="x", role="admin", created=0.0) for i in range(6)]
    stores = [a, b] * 3
    results = await asyncio.gather(
        *(s.add_admin(m, first=True) for s, m in zip(stores, made, strict=True))
    )
    assert sum(results) == 1
    assert len(await b.admins()) == 1


async def test_replacing_an_administrator_with_the_same_values_still_finds_it(
    two: tuple[SqlStateStore, SqlStateStore],
) -> None:
    """MariaDB counts only changed rows; the answer must not depend on that."""
    a, _ = two
    ann = Administrator(name="ann", password="p", role="admin", created=0.0)
    await a.add_admin(ann)
    assert await a.replace_admin(ann)


async def test_init_is_idempotent_and_a_store_before_init_says_so(sql_config: SqlConfig) -> None:
    with pytest.raises(StateUnavailable, match="mailwarden init"):
        await open_store(sql_config, create=False)
    store = await open_store(sql_config)
    await store.add_admin(Administrator(name="ann", password="x", role="admin", created=0.0))
    await store.close()
    again = await open_store(sql_config)  # init again: the tables and rows are kept
    try:
        assert [a.name for a in await again.admins()] == ["ann"]
    finally:
        await again.close()


async def test_state_tables_and_the_own_directory_share_one_database(
    sql_config: SqlConfig,
) -> None:
    """Either may be made first: neither takes the other's tables for a stranger's."""
    store = await open_store(sql_config)
    own = await OwnDirectory.open(sql_config, password=sql_config.password, create=True)
    try:
        assert await own.count() == 0
        assert await store.admins() == []
    finally:
        await own.close()
        await store.close()


async def test_a_newer_state_schema_is_refused(
    sql_server: SqlServer, sql_config: SqlConfig
) -> None:
    store = await open_store(sql_config)
    await store.close()
    sql_server.run_sql(
        f"UPDATE mailwarden_schema SET version = {SCHEMA_VERSION + 1}"
        " WHERE application = 'mailwarden_state'",
        sql_config.database,
    )
    with pytest.raises(StateUnavailable, match="newer"):
        await open_store(sql_config, create=False)


async def test_state_tables_mailwarden_did_not_make_are_refused(
    sql_server: SqlServer, sql_config: SqlConfig
) -> None:
    sql_server.run_sql("CREATE TABLE mailwarden_state_admins (x INTEGER)", sql_config.database)
    with pytest.raises(StateUnavailable, match="did not make"):
        await open_store(sql_config)


async def test_no_server_is_unavailable_not_a_crash(sql_server: SqlServer) -> None:
    config = sql_config_for(
        sql_server, "absent", hosts=(f"127.0.0.1:{free_port()}",), connect_timeout=1.0
    )
    with pytest.raises(StateUnavailable):
        await open_store(config)


async def test_a_closed_store_is_unavailable(two: tuple[SqlStateStore, SqlStateStore]) -> None:
    a, b = two
    await a.close()
    with pytest.raises(StateUnavailable):
        await a.admins()
    assert await b.admins() == []


def _config_text(sql: SqlConfig) -> str:
    hosts = ", ".join(f'"{h}"' for h in sql.hosts)
    return (
        '[state]\nbackend = "sql"\n'
        f'[sql]\ndriver = "{sql.driver}"\nhosts = [{hosts}]\ndatabase = "{sql.database}"\n'
        f'user = "{sql.user}"\npassword = "{sql.password}"\n'
    )


async def test_the_configured_store_is_the_sql_one(sql_config: SqlConfig) -> None:
    cfg = config_mod.loads(_config_text(sql_config), source="/etc/mailwarden/mailwarden.toml")
    store = open_state(cfg)
    try:
        with pytest.raises(StateUnavailable, match="mailwarden init"):
            await store.admins()  # not made yet: init makes the tables
        made = await open_store(sql_config)
        await made.add_admin(Administrator(name="ann", password="x", role="admin", created=0.0))
        await made.close()
        assert [a.name for a in await store.admins()] == ["ann"]
    finally:
        await store.close()


def test_a_state_path_with_the_sql_backend_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"state\.path"):
        config_mod.loads('[state]\nbackend = "sql"\npath = "state.db"\n', source="mw.toml")


def test_init_makes_the_state_tables_and_admin_add_writes_there(
    tmp_path: Path, sql_config: SqlConfig
) -> None:
    cfg = tmp_path / "mw.toml"
    cfg.write_text(
        '[directory]\npath = "data/mw.db"\n'
        '[server]\npid_file = "data/mw.pid"\ncontrol_socket = "run/control"\n'
        + _config_text(sql_config)
    )
    runner = CliRunner()
    for _ in range(2):  # init again changes nothing
        r = runner.invoke(main, ["--config", str(cfg), "init"])
        assert r.exit_code == 0, r.output
        assert f"state store ready (sql, {sql_config.database}" in r.output
    r = runner.invoke(
        main,
        ["--config", str(cfg), "admin", "add", "ann", "--password-stdin"],
        input="a long enough password\n",
    )
    assert r.exit_code == 0, r.output

    async def check() -> None:
        store = await open_store(sql_config, create=False)
        try:
            got = await store.admin("ann")
            assert got is not None and got.role == "admin"
        finally:
            await store.close()

    asyncio.run(check())
