"""Every state store keeps the same contract: the memory store, the SQLite file, and
the SQL store on PostgreSQL and on MariaDB (a fresh database each)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden import sqlitemigrations
from mailwarden.errors import AccountExists, StateUnavailable
from mailwarden.history.base import LoginEvent, LoginResult
from mailwarden.model import CredentialKind
from mailwarden.state.base import (
    Administrator,
    ApiToken,
    AuditEntry,
    AuditQuery,
    SecondFactor,
    StateStore,
)
from mailwarden.state.memory import MemoryStateStore
from mailwarden.state.sql import SqlStateStore
from mailwarden.state.sqlite import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, SQLiteStateStore
from tests.conftest import sql_config_for
from tests.sqlservers import SqlServer


@pytest_asyncio.fixture(params=["memory", "sqlite", "postgresql", "mariadb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    made: StateStore
    if request.param == "memory":
        made = MemoryStateStore()
    elif request.param == "sqlite":
        made = await SQLiteStateStore.open(tmp_path / "state.db")
    else:
        fixture = {"postgresql": "postgres_server", "mariadb": "mariadb_server"}[request.param]
        server: SqlServer = request.getfixturevalue(fixture)
        config = sql_config_for(server, server.create_database())
        made = await SqlStateStore.open(config, password=config.password, create=True)
    yield made
    await made.close()


def entry(n: int, *, actor: str = "admin:ann", target: str = "bob") -> AuditEntry:
    return AuditEntry(
        time=1000.0 + n, actor=actor, action="account.update", target=target, fields=("mail",)
    )


async def test_audit_entries_come_back_newest_first_with_their_fields(store: StateStore) -> None:
    for n in range(3):
        await store.record(entry(n))
    found = await store.audit(AuditQuery())
    assert [e.time for e in found] == [1002.0, 1001.0, 1000.0]
    assert found[0].fields == ("mail",) and found[0].actor == "admin:ann"
    assert len({e.id for e in found}) == 3


async def test_audit_filters_by_target_actor_since_and_limit(store: StateStore) -> None:
    await store.record(entry(1, target="bob"))
    await store.record(entry(2, target="carol", actor="cli:root"))
    await store.record(entry(3, target="bob", actor="cli:root"))
    assert [e.time for e in await store.audit(AuditQuery(target="bob"))] == [1003.0, 1001.0]
    assert [e.time for e in await store.audit(AuditQuery(actor="cli:root"))] == [1003.0, 1002.0]
    assert [e.time for e in await store.audit(AuditQuery(since=1002.0))] == [1003.0, 1002.0]
    assert [e.time for e in await store.audit(AuditQuery(limit=1))] == [1003.0]


async def test_administrators_are_added_once_replaced_and_removed(store: StateStore) -> None:
    ann = Administrator(name="ann", password="{PLAIN}x", role="admin", created=1.0)
    assert await store.add_admin(ann)
    with pytest.raises(AccountExists):
        await store.add_admin(ann)
    assert await store.replace_admin(
        Administrator(name="ann", password="y", role="helpdesk", created=1.0)
    )
    got = await store.admin("ann")
    assert got is not None and got.role == "helpdesk" and got.password == "y"
    assert not await store.replace_admin(
        Administrator(name="zed", password="", role="admin", created=0)
    )
    assert [a.name for a in await store.admins()] == ["ann"]
    assert await store.remove_admin("ann") and not await store.remove_admin("ann")
    assert await store.admin("ann") is None


async def test_only_one_first_administrator_even_when_two_race(store: StateStore) -> None:
    made = [Administrator(name=f"a{i}", password="x", role="admin", created=0.0) for i in range(5)]
    results = await asyncio.gather(*(store.add_admin(a, first=True) for a in made))
    assert sum(results) == 1
    assert len(await store.admins()) == 1
    assert not await store.add_admin(
        Administrator(name="late", password="x", role="admin", created=0.0), first=True
    )


async def test_tokens_are_found_by_digest_and_revoked_by_name(store: StateStore) -> None:
    t = ApiToken(name="ci", digest="d1", scope="read", created=1.0, created_by="cli:root")
    await store.add_token(t)
    with pytest.raises(AccountExists):
        await store.add_token(t)
    assert await store.token("d1") == t
    assert await store.token("nope") is None
    assert [x.name for x in await store.tokens()] == ["ci"]
    assert await store.remove_token("ci")
    assert await store.token("d1") is None and not await store.remove_token("ci")


async def test_a_factor_is_written_only_over_the_version_read(store: StateStore) -> None:
    f = SecondFactor(owner="user:bob", secret="S", recovery=("r1", "r2"))
    assert not await store.swap_factor("user:bob", 0, f)  # there is none yet
    assert await store.swap_factor("user:bob", None, f)
    assert not await store.swap_factor("user:bob", None, f)  # there is one now
    got = await store.factor("user:bob")
    assert got is not None and got.version == 0 and got.recovery == ("r1", "r2")
    newer = SecondFactor(owner="user:bob", secret="S", confirmed=True, last_step=7)
    assert await store.swap_factor("user:bob", 0, newer)
    assert not await store.swap_factor("user:bob", 0, newer)  # a second writer loses
    got = await store.factor("user:bob")
    assert got is not None and got.version == 1 and got.confirmed and got.last_step == 7
    assert not await store.swap_factor("user:bob", 0, None)
    assert await store.swap_factor("user:bob", 1, None)
    assert await store.factor("user:bob") is None


async def test_a_closed_store_is_unavailable(store: StateStore) -> None:
    await store.close()
    with pytest.raises(StateUnavailable):
        await store.admins()


async def test_the_sqlite_file_keeps_everything_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = await SQLiteStateStore.open(path)
    await first.record(entry(1))
    await first.add_admin(Administrator(name="ann", password="x", role="admin", created=0))
    await first.close()
    assert path.stat().st_mode & 0o077 == 0
    again = await SQLiteStateStore.open(path)
    try:
        assert [e.target for e in await again.audit(AuditQuery())] == ["bob"]
        assert (await again.admin("ann")) is not None
    finally:
        await again.close()


async def test_a_missing_folder_is_unavailable_and_not_created(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable):
        await SQLiteStateStore.open(tmp_path / "absent" / "state.db")
    assert not (tmp_path / "absent").exists()


async def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StateUnavailable, match="newer"):
        await SQLiteStateStore.open(newer)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StateUnavailable, match="not a mailwarden state file"):
        await SQLiteStateStore.open(foreign)


def login(n: int, uid: str = "alice") -> LoginEvent:
    return LoginEvent(
        uid=uid,
        at=1000.0 + n,
        frontend="dovecot",
        service="imap",
        remote_ip="192.0.2.1" if n % 2 else None,
        result=LoginResult.WRONG_PASSWORD if n % 2 else LoginResult.ACCEPTED,
        credential=CredentialKind.APP_PASSWORD if n % 2 else CredentialKind.PASSWORD,
        app_password="phone" if n % 2 else None,
    )


async def test_the_login_history_comes_back_newest_first(store: StateStore) -> None:
    await store.add_logins([login(n) for n in range(4)], keep=10, ttl=86400)
    await store.add_logins([login(4), login(5, uid="bob")], keep=10, ttl=86400)
    await store.add_logins([], keep=10, ttl=86400)
    found = await store.logins("alice", limit=3, since=0)
    assert found == [login(4), login(3), login(2)]
    assert await store.logins("alice", limit=1, since=0) == [login(4)]
    assert await store.logins("alice", limit=10, since=1003.0) == [login(4), login(3)]
    assert await store.logins("bob", limit=10, since=0) == [login(5, uid="bob")]
    assert await store.logins("carol", limit=10, since=0) == []


async def test_the_login_history_is_cut_to_keep_per_account_by_the_prune_at_the_latest(
    store: StateStore,
) -> None:
    await store.add_logins([login(n) for n in range(5)], keep=3, ttl=86400)
    await store.add_logins([login(9, uid="bob")], keep=3, ttl=86400)
    await store.prune_logins(0, keep=3)
    assert await store.logins("alice", limit=10, since=0) == [login(4), login(3), login(2)]
    assert await store.logins("bob", limit=10, since=0) == [login(9, uid="bob")]


async def test_the_login_history_is_pruned_by_age(store: StateStore) -> None:
    await store.add_logins([login(n) for n in range(3)], keep=10, ttl=86400)
    await store.add_logins([login(1, uid="bob")], keep=10, ttl=86400)
    assert await store.prune_logins(1001.5, keep=10) == 3  # alice's 1000, 1001; bob's
    assert await store.logins("alice", limit=10, since=0) == [login(2)]
    assert await store.logins("bob", limit=10, since=0) == []


async def test_a_version_1_state_file_gains_the_login_history_and_keeps_its_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path, isolation_level=None) as conn:
        sqlitemigrations.apply(
            conn, 0, MIGRATIONS[:1], with_each=(f"PRAGMA application_id = {APPLICATION_ID}",)
        )
        conn.execute(
            "INSERT INTO admins (name, password, role, created) VALUES ('ann', 'x', 'admin', 0)"
        )
    store = await SQLiteStateStore.open(path)
    try:
        assert await store.admin("ann") is not None
        await store.add_logins([login(1)], keep=10, ttl=86400)
        assert await store.logins("alice", limit=10, since=0) == [login(1)]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
