"""What only the SQLite backend has: a file, a schema, threads and locks.

The shared behaviour is in test_directory_contract.py; this module covers
opening and creating files, migrations, damage, durability across reopen and
that the event loop keeps running while SQLite works.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.directories.sqlite import (
    APPLICATION_ID,
    CACHE_RECHECK,
    MIGRATIONS,
    SCHEMA_VERSION,
    SQLiteDirectory,
)
from mailwarden.errors import DirectoryUnavailable
from mailwarden.model import Account, AppPassword


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "mailwarden.db"


@pytest_asyncio.fixture
async def directory(db_path: Path) -> AsyncIterator[SQLiteDirectory]:
    opened = await SQLiteDirectory.open(db_path, create=True)
    yield opened
    await opened.close()


def pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


# --------------------------------------------------------------------------- files and schema


async def test_a_new_database_has_every_migration_applied(
    directory: SQLiteDirectory, db_path: Path
) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    assert pragma(db_path, "user_version") == SCHEMA_VERSION
    assert pragma(db_path, "application_id") == APPLICATION_ID
    assert pragma(db_path, "journal_mode") == "wal"
    with sqlite3.connect(db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"accounts", "logins", "services", "ssh_keys", "account_rows"} <= tables


async def test_the_database_file_is_readable_by_its_owner_only(
    directory: SQLiteDirectory, db_path: Path
) -> None:
    await directory.create(Account(uid="alice", password="{PLAIN}secret"))
    for suffix in ("", "-wal", "-shm"):
        path = db_path.with_name(db_path.name + suffix)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_accounts_survive_close_and_reopen(db_path: Path) -> None:
    account = Account(uid="alice", mail="alice@example.org", services={"imap": False})
    first = await SQLiteDirectory.open(db_path, create=True)
    await first.create(account)
    await first.set_password("alice", "{PLAIN}changed")
    await first.close()
    second = await SQLiteDirectory.open(db_path, create=False)
    try:
        assert await second.find("ALICE@example.org") == Account(
            uid="alice",
            mail="alice@example.org",
            services={"imap": False},
            password="{PLAIN}changed",
        )
        assert pragma(db_path, "user_version") == SCHEMA_VERSION
    finally:
        await second.close()


async def test_creating_an_existing_database_keeps_its_accounts(db_path: Path) -> None:
    first = await SQLiteDirectory.open(db_path, create=True)
    await first.create(Account(uid="alice"))
    await first.close()
    again = await SQLiteDirectory.open(db_path, create=True)
    try:
        assert await again.count() == 1
    finally:
        await again.close()


async def test_opening_a_missing_file_without_create_is_unavailable(db_path: Path) -> None:
    with pytest.raises(
        DirectoryUnavailable, match=r"mailwarden\.db: no such file.*mailwarden init"
    ):
        await SQLiteDirectory.open(db_path, create=False)
    assert not db_path.exists()


async def test_creating_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DirectoryUnavailable, match="No such file or directory"):
        await SQLiteDirectory.open(tmp_path / "missing" / "x.db", create=True)


@pytest.mark.parametrize("create", [False, True])
async def test_a_file_that_is_not_sqlite_is_unavailable(db_path: Path, create: bool) -> None:
    db_path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 200)
    with pytest.raises(DirectoryUnavailable, match="file is not a database"):
        await SQLiteDirectory.open(db_path, create=create)


async def test_an_empty_file_without_create_asks_for_init(db_path: Path) -> None:
    db_path.touch()
    with pytest.raises(DirectoryUnavailable, match="mailwarden init"):
        await SQLiteDirectory.open(db_path, create=False)


async def test_another_applications_database_is_refused_even_with_create(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    with pytest.raises(DirectoryUnavailable, match="not a mailwarden database"):
        await SQLiteDirectory.open(db_path, create=True)
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 1


async def test_a_database_from_a_newer_mailwarden_is_refused(db_path: Path) -> None:
    await (await SQLiteDirectory.open(db_path, create=True)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(DirectoryUnavailable, match="newer than this mailwarden"):
        await SQLiteDirectory.open(db_path, create=False)


async def test_damaged_pages_make_reads_unavailable_not_a_crash(db_path: Path) -> None:
    first = await SQLiteDirectory.open(db_path, create=True)
    await first.bulk_upsert(
        (Account(uid=f"user{n}", mail=f"user{n}@example.org") for n in range(5000)), replace=False
    )
    await first.close()
    with db_path.open("r+b") as f:
        f.seek(3 * 4096)
        f.write(b"\x5a" * (20 * 4096))
    damaged = await SQLiteDirectory.open(db_path, create=False)
    try:
        with pytest.raises(DirectoryUnavailable, match="malformed"):
            await damaged.find("user4000")
        with pytest.raises(DirectoryUnavailable, match="malformed"):
            await damaged.count()
    finally:
        await damaged.close()


@pytest.mark.parametrize(("readers", "timeout"), [(0, 1.0), (1, 0.0)])
async def test_open_refuses_nonsense_pool_settings(
    db_path: Path, readers: int, timeout: float
) -> None:
    with pytest.raises(ValueError, match=r"readers|timeout"):
        await SQLiteDirectory.open(db_path, create=True, readers=readers, timeout=timeout)


# --------------------------------------------------------------------------- locks and threads


async def test_another_process_holding_the_write_lock_makes_writes_unavailable_not_reads(
    db_path: Path,
) -> None:
    directory = await SQLiteDirectory.open(db_path, create=True, timeout=0.2)
    await directory.create(Account(uid="alice"))
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DirectoryUnavailable, match="locked"):
            await directory.create(Account(uid="bob"))
        # WAL: readers do not wait for a writer.
        assert await directory.find("alice") == Account(uid="alice")
        other.execute("ROLLBACK")
        await directory.create(Account(uid="bob"))
        assert await directory.count() == 2
    finally:
        other.close()
        await directory.close()


async def test_opening_an_up_to_date_database_does_not_wait_for_a_writer(db_path: Path) -> None:
    await (await SQLiteDirectory.open(db_path, create=True)).close()
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        directory = await SQLiteDirectory.open(db_path, create=False, timeout=0.2)
        try:
            assert await directory.count() == 0
        finally:
            await directory.close()
    finally:
        other.close()


async def test_find_does_not_block_the_event_loop(directory: SQLiteDirectory) -> None:
    # 50,000 SSH keys make this one find take tens of milliseconds of SQLite and
    # JSON work. If that work ran on the loop, the ticker could not run at all
    # before find returned; on a reader thread it runs on every loop iteration.
    keys = tuple(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{n:08d} key{n}" for n in range(50_000))
    await directory.create(Account(uid="big", ssh_keys=keys))
    ticks_while_pending = 0
    find = asyncio.create_task(directory.find("big"))

    async def ticker() -> None:
        nonlocal ticks_while_pending
        while not find.done():
            ticks_while_pending += 1
            await asyncio.sleep(0)

    await asyncio.gather(find, ticker())
    found = find.result()
    assert found is not None
    assert found.ssh_keys == keys
    assert ticks_while_pending >= 10


async def test_many_concurrent_finds_each_get_their_own_account(
    directory: SQLiteDirectory,
) -> None:
    accounts = [Account(uid=f"user{n}", mail=f"user{n}@example.org") for n in range(200)]
    await directory.bulk_upsert(accounts, replace=False)
    logins = [f"USER{n}@example.org" for n in range(200)] * 3
    found = await asyncio.gather(*(directory.find(login) for login in logins))
    assert found == accounts * 3


async def test_a_burst_of_finds_fails_only_the_one_whose_row_is_malformed(
    db_path: Path,
) -> None:
    """The finds of one loop turn are read together (FIND_BATCH per reader job): a
    row that does not decode, and a caller that gave up, concern only their own find."""
    directory = await SQLiteDirectory.open(db_path, create=True)
    try:
        accounts = [Account(uid=f"user{n}") for n in range(150)]
        await directory.bulk_upsert(accounts, replace=False)
        with sqlite3.connect(db_path) as raw:
            raw.execute("UPDATE accounts SET passdb_fields = '{broken' WHERE uid = 'user70'")
        tasks = [asyncio.create_task(directory.find(f"user{n}")) for n in range(150)]
        tasks.append(asyncio.create_task(directory.find("nobody")))
        tasks[3].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await directory.close()
    assert isinstance(results[3], asyncio.CancelledError)
    assert isinstance(results[70], DirectoryUnavailable)
    assert "malformed" in str(results[70])
    assert results[150] is None
    for n, result in enumerate(results[:150]):
        if n not in (3, 70):
            assert result == accounts[n]


async def test_reads_and_writes_interleave_from_many_tasks(directory: SQLiteDirectory) -> None:
    async def writer(n: int) -> None:
        await directory.create(Account(uid=f"w{n}"))
        assert await directory.set_password(f"w{n}", f"p{n}", expected="") is True

    async def reader() -> None:
        for _ in range(20):
            await directory.count()

    await asyncio.gather(*(writer(n) for n in range(50)), *(reader() for _ in range(10)))
    assert await directory.count() == 50
    found = await directory.get("w7")
    assert found is not None
    assert found.password == "p7"


async def test_close_waits_for_running_calls_then_refuses_new_ones(
    directory: SQLiteDirectory,
) -> None:
    await directory.create(Account(uid="alice"))
    pending = [asyncio.create_task(directory.find("alice")) for _ in range(20)]
    await asyncio.sleep(0)
    await directory.close()
    results = await asyncio.gather(*pending, return_exceptions=True)
    # Each call either finished or was refused as unavailable; none was cancelled
    # or failed any other way.
    assert results
    for result in results:
        assert result == Account(uid="alice") or isinstance(result, DirectoryUnavailable)
    with pytest.raises(DirectoryUnavailable, match="closed"):
        await directory.find("alice")


async def test_the_login_cache_sees_commits_of_other_connections(tmp_path: Path) -> None:
    """A second directory on the same file stands for a CLI command or another node;
    its commits are seen once CACHE_RECHECK (10 ms) has passed."""
    from mailwarden.model import Account, AccountStatus

    daemon = await SQLiteDirectory.open(tmp_path / "d.db", create=True, cache_size=100)
    other = await SQLiteDirectory.open(tmp_path / "d.db", create=False)
    try:
        await other.create(Account(uid="alice", password="{PLAIN}one"))
        found = await daemon.find("alice")
        assert found is not None and found.password == "{PLAIN}one"
        assert await daemon.find("bob") is None  # not kept: only accounts are
        assert len(daemon._cache) == 1
        await other.set_password("alice", "{PLAIN}two")
        await asyncio.sleep(CACHE_RECHECK * 2)
        found = await daemon.find("alice")
        assert found is not None and found.password == "{PLAIN}two"
        await other.create(Account(uid="bob"))
        await asyncio.sleep(CACHE_RECHECK * 2)
        assert await daemon.find("bob") is not None
        await other.update("alice", {"status": AccountStatus.DISABLED})
        await asyncio.sleep(CACHE_RECHECK * 2)
        found = await daemon.find("alice")
        assert found is not None and found.status is AccountStatus.DISABLED
        # Repeats are answered from the cache while nothing changes.
        hits_before = len(daemon._cache)
        for _ in range(3):
            assert await daemon.find("alice") is not None
        assert len(daemon._cache) == hits_before
    finally:
        await other.close()
        await daemon.close()


async def test_own_writes_drop_the_login_cache_at_once(tmp_path: Path) -> None:
    directory = await SQLiteDirectory.open(tmp_path / "d.db", create=True, cache_size=100)
    try:
        from mailwarden.model import Account

        await directory.create(Account(uid="alice", password="{PLAIN}one"))
        assert (await directory.find("alice")).password == "{PLAIN}one"  # type: ignore[union-attr]
        await directory.set_password("alice", "{PLAIN}two")
        found = await directory.find("alice")  # no pause: our own commit
        assert found is not None and found.password == "{PLAIN}two"
    finally:
        await directory.close()


async def test_migration_2_keeps_version_1_accounts_and_indexes_fingerprints(
    tmp_path: Path,
) -> None:
    """A file written by the first schema gains dns_records and the fingerprint index."""
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO accounts (id, uid, password, status, master, pgp_fingerprint)"
            " VALUES (1, 'alice', '', 'active', 0, 'ab12 cd34')"
        )
        conn.execute(
            "INSERT INTO logins (login, space, kind, account_id, name)"
            " VALUES ('alice', 'uid', 'uid', 1, 'alice')"
        )
        conn.execute("PRAGMA user_version = 1")
    conn.close()
    directory = await SQLiteDirectory.open(path, create=False)
    try:
        assert pragma(path, "user_version") == SCHEMA_VERSION >= 2
        found = await directory.find("alice")
        assert found is not None and found.dns_records == ()
        assert [a.uid for a in await directory.find_by_fingerprint("AB12CD34")] == ["alice"]
        await directory.update("alice", {"dns_records": ("alice IN A 192.0.2.1",)})
        again = await directory.get("alice")
        assert again is not None and again.dns_records == ("alice IN A 192.0.2.1",)
    finally:
        await directory.close()


async def test_migration_3_gives_version_2_accounts_no_app_passwords_and_stores_new_ones(
    tmp_path: Path,
) -> None:
    """A file written by the second schema gains the app_passwords table and switch."""
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        for step in MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO accounts (id, uid, password, status, master)"
            " VALUES (1, 'alice', '', 'active', 0)"
        )
        conn.execute(
            "INSERT INTO logins (login, space, kind, account_id, name)"
            " VALUES ('alice', 'uid', 'uid', 1, 'alice')"
        )
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    directory = await SQLiteDirectory.open(path, create=False)
    try:
        assert pragma(path, "user_version") == SCHEMA_VERSION >= 3
        found = await directory.find("alice")
        assert found is not None
        assert (found.app_passwords, found.app_passwords_only) == ((), False)
        app = AppPassword(id="p1", name="phone", digest="0" * 64, services=("imap",), created=5)
        await directory.update("alice", {"app_passwords": (app,), "app_passwords_only": True})
        again = await directory.get("alice")
        assert again is not None
        assert (again.app_passwords, again.app_passwords_only) == ((app,), True)
        await directory.delete("alice")
        assert pragma_count(path, "app_passwords") == 0  # the rows go with the account
    finally:
        await directory.close()


def pragma_count(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return count
