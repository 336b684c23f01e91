"""``mailwarden migrate``: every account copied between SQLite and a real slapd, in
batches, idempotent (an interrupted copy completed by a rerun), refusals reported.

The accounts come from the contract suite's builder (``full_account``: every field
set); the LDAP side is the session's slapd (tests/directories/conftest.py), except for
the crash tests, which kill a slapd of their own.
"""

from __future__ import annotations

import asyncio
import io
import select
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailwarden import confignames
from mailwarden.cli.migrate import ProgressLine, describe
from mailwarden.config import Config, LdapConfig, SqlConfig
from mailwarden.directories.base import Directory, Refusal
from mailwarden.directories.ldap import LDAPDirectory
from mailwarden.directories.migration import MigrationProgress, OnBatch, migrate
from mailwarden.directories.places import dn_key, same_accounts, server_key
from mailwarden.directories.sql.own import OwnDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import DirectoryUnavailable
from mailwarden.model import Account, Profile
from tests.directories.conftest import add_subtree
from tests.directories.test_directory_contract import full_account
from tests.helpers import hashed
from tests.peers.configs import toml
from tests.slapd import SERVICE_DN, SERVICE_PW, Slapd, have_slapd
from tests.test_cli import MAILWARDEN


def accounts(count: int, *, prefix: str = "user") -> list[Account]:
    """``count`` accounts, every field set (``full_account``), every fifth with only a
    uid and a password, so both full and sparse accounts travel."""
    made = []
    for i in range(count):
        uid = f"{prefix}{i:04d}"
        if i % 5 == 4:
            made.append(Account(uid=uid, password="{PLAIN}bare"))
        else:
            made.append(full_account(uid, uid_number=5000 + i))
    return made


async def everything(directory: Directory) -> list[Account]:
    """Every account of ``directory``, by uid (a test's directories are small)."""
    return await directory.get_many([uid async for uid in directory.iterate()])


async def sqlite(path: Path, stored: Sequence[Account] = ()) -> SQLiteDirectory:
    directory = await SQLiteDirectory.open(path, create=True, timeout=0.2)
    await directory.bulk_upsert(stored, replace=False)
    return directory


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[SQLiteDirectory]:
    directory = await sqlite(tmp_path / "source.db")
    yield directory
    await directory.close()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[SQLiteDirectory]:
    directory = await sqlite(tmp_path / "target.db")
    yield directory
    await directory.close()


@pytest.fixture
async def ldap_target(ldap_config: LdapConfig) -> AsyncIterator[LDAPDirectory]:
    directory = await LDAPDirectory.open(ldap_config)
    yield directory
    await directory.close()


# --------------------------------------------------------------------------- copying


async def test_sqlite_to_sqlite_copies_every_account_and_field_in_batches(
    source: SQLiteDirectory, target: SQLiteDirectory
) -> None:
    stored = [*accounts(23), full_account("hashed", password=hashed("secret"))]
    await source.bulk_upsert(stored, replace=False)
    seen: list[MigrationProgress] = []

    done = await migrate(source, target, batch_size=5, on_batch=lambda p, _r: seen.append(p))

    assert await everything(target) == await everything(source)
    assert (await target.get("hashed") or Account(uid="")).password == stored[-1].password
    assert (done.read, done.created, done.replaced, done.refused) == (24, 24, 0, 0)
    assert [p.read for p in seen] == [5, 10, 15, 20, 24]
    assert all(p.total == 24 for p in seen)


async def test_a_rerun_replaces_without_duplicates_and_resume_writes_nothing(
    source: SQLiteDirectory, target: SQLiteDirectory
) -> None:
    await source.bulk_upsert(accounts(12), replace=False)
    await migrate(source, target, batch_size=5)

    again = await migrate(source, target, batch_size=5)
    assert (again.created, again.replaced) == (0, 12)
    assert await target.count() == 12

    await source.update("user0001", {"home": "/moved"})
    before = target.data_version()
    resumed = await migrate(source, target, batch_size=5, resume=True)
    assert (resumed.unchanged, resumed.replaced, resumed.created) == (11, 1, 0)
    assert await everything(target) == await everything(source)
    assert target.data_version() != before  # the one changed account was written

    before = target.data_version()
    assert (await migrate(source, target, resume=True)).unchanged == 12
    assert target.data_version() == before


async def test_a_dry_run_counts_and_writes_nothing(
    source: SQLiteDirectory, target: SQLiteDirectory
) -> None:
    await source.bulk_upsert(accounts(6), replace=False)
    await target.bulk_upsert(accounts(2), replace=False)
    dry = await migrate(source, target, batch_size=4, dry_run=True)
    assert (dry.read, dry.created, dry.replaced, dry.dry_run) == (6, 4, 2, True)
    assert await target.count() == 2


async def test_sqlite_to_ldap_and_back_keeps_every_field(
    source: SQLiteDirectory, ldap_target: LDAPDirectory, tmp_path: Path
) -> None:
    stored = accounts(15)
    await source.bulk_upsert(stored, replace=False)
    there = await migrate(source, ldap_target, batch_size=4)
    assert (there.created, there.refused) == (15, 0)
    assert await everything(ldap_target) == stored

    back = await sqlite(tmp_path / "back.db")
    try:
        returned = await migrate(ldap_target, back, batch_size=6)
        assert (returned.read, returned.created) == (15, 15)
        assert await everything(back) == stored
    finally:
        await back.close()


async def test_sqlite_to_sql_and_back_keeps_every_field(
    source: SQLiteDirectory, sql_config: SqlConfig, tmp_path: Path
) -> None:
    stored = accounts(15)
    await source.bulk_upsert(stored, replace=False)
    sql = await OwnDirectory.open(sql_config, password=sql_config.password, create=True)
    try:
        there = await migrate(source, sql, batch_size=4)
        assert (there.created, there.refused) == (15, 0)
        assert await everything(sql) == stored
        again = await migrate(source, sql, batch_size=7)  # a rerun: no duplicates
        assert (again.created, again.replaced) == (0, 15)
        assert await sql.count() == 15
        back = await sqlite(tmp_path / "back.db")
        try:
            returned = await migrate(sql, back, batch_size=6)
            assert (returned.read, returned.created) == (15, 15)
            assert await everything(back) == stored
        finally:
            await back.close()
    finally:
        await sql.close()


def test_the_command_copies_into_an_sql_directory_init_made(
    tmp_path: Path, sql_config: SqlConfig
) -> None:
    source = sqlite_toml(tmp_path, "source", accounts(5))
    section = {
        "driver": sql_config.driver,
        "hosts": list(sql_config.hosts),
        "database": sql_config.database,
        "user": sql_config.user,
        "password": sql_config.password,
        "pool_size": 2,
    }
    target = tmp_path / "sql.toml"
    target.write_text(toml({"directory": {"backend": "sql"}, "sql": section}))
    missing = run(source, "--to", str(target), "-q")
    assert missing.exit_code == 78, missing.output  # no schema yet: 'mailwarden init'
    from mailwarden.cli import main

    assert CliRunner().invoke(main, ["--config", str(target), "init"]).exit_code == 0
    result = run(source, "--to", str(target), "-q")
    assert result.exit_code == 0, result.output
    assert "5 created" in result.stdout
    assert run(source, "--to", str(source), "-q").exit_code == 2  # onto itself


async def test_accounts_the_target_refuses_are_reported_and_the_rest_copied(
    source: SQLiteDirectory, target: SQLiteDirectory, ldap_target: LDAPDirectory
) -> None:
    await source.bulk_upsert(
        [
            full_account("alice"),
            full_account("bob", mail="taken@example.org"),
            full_account("carol"),
            Account(uid="dora", mail="dora@bücher.example"),  # LDAP: IA5 (ASCII) only
        ],
        replace=False,
    )
    await target.create(Account(uid="owner", mail="taken@example.org"))
    refusals: list[Refusal] = []

    done = await migrate(source, target, on_batch=lambda _p, r: refusals.extend(r))
    assert (done.created, done.refused) == (3, 1)
    assert [(r.uid, "taken@example.org" in r.message) for r in refusals] == [("bob", True)]
    assert await target.get("carol") == full_account("carol")

    refusals.clear()
    done = await migrate(source, ldap_target, on_batch=lambda _p, r: refusals.extend(r))
    assert (done.created, done.refused) == (3, 1)
    assert [(r.uid, "ASCII" in r.message) for r in refusals] == [("dora", True)]


async def test_an_account_the_ldap_server_refuses_is_reported_and_its_old_entry_kept(
    source: SQLiteDirectory, ldap_target: LDAPDirectory
) -> None:
    # slapd refuses a country that is not two letters (countryString): known only
    # when the entry is written, after the old one was deleted to be replaced.
    old = Account(uid="erin", mail="erin@example.org")
    await ldap_target.create(old)
    await source.bulk_upsert(
        [full_account("erin", profile=Profile(c="Britain")), full_account("fred")],
        replace=False,
    )
    refusals: list[Refusal] = []
    done = await migrate(source, ldap_target, on_batch=lambda _p, r: refusals.extend(r))
    assert (done.created, done.replaced, done.refused) == (1, 0, 1)
    assert [(r.uid, "invalid per syntax" in r.message) for r in refusals] == [("erin", True)]
    assert await ldap_target.get("erin") == old
    assert await ldap_target.get("fred") == full_account("fred")


# --------------------------------------------------------------------------- interrupted


@pytest.fixture(scope="module")
def own_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A slapd the crash tests kill and start again (not the session's)."""
    if not have_slapd():
        pytest.skip("slapd is not installed (scripts/bootstrap.sh installs it)")
    server = Slapd(tmp_path_factory.mktemp("migrate-slapd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def own_ldap_config(server: Slapd) -> LdapConfig:
    return LdapConfig(
        servers=(server.url,),
        base_dn=add_subtree(server),
        bind_dn=SERVICE_DN,
        bind_password=SERVICE_PW,
        timeout=2.0,
        backoff_max=0.1,
    )


def kill_after(server: Slapd, batches: int) -> tuple[list[int], OnBatch]:
    """An ``on_batch`` that SIGKILLs slapd once ``batches`` batches are written."""
    reads: list[int] = []

    def on_batch(progress: MigrationProgress, _refused: Sequence[Refusal]) -> None:
        reads.append(progress.read)
        if len(reads) == batches:
            server.signal(signal.SIGKILL)

    return reads, on_batch


def restart(server: Slapd) -> None:
    server.stop()  # reaps the killed process
    server.start()


async def test_slapd_killed_under_a_migration_into_it_then_a_rerun_completes_it(
    own_slapd: Slapd, source: SQLiteDirectory
) -> None:
    stored = accounts(60)
    await source.bulk_upsert(stored, replace=False)
    config = own_ldap_config(own_slapd)
    ldap = await LDAPDirectory.open(config)
    try:
        reads, on_batch = kill_after(own_slapd, 3)
        with pytest.raises(DirectoryUnavailable):
            await migrate(source, ldap, batch_size=10, on_batch=on_batch)
        assert reads == [10, 20, 30]
    finally:
        await ldap.close()
    restart(own_slapd)
    # The rerun is a new process: a new directory, with new connections.
    ldap = await LDAPDirectory.open(config)
    try:
        assert await ldap.count() >= 30  # what was reported written is there
        done = await migrate(source, ldap, batch_size=10)
        assert done.created + done.replaced == 60 and done.replaced >= 30
        assert await ldap.count() == 60
        assert await everything(ldap) == stored
    finally:
        await ldap.close()


async def test_slapd_killed_under_a_migration_out_of_it_then_a_rerun_completes_it(
    own_slapd: Slapd, target: SQLiteDirectory
) -> None:
    stored = accounts(45)
    config = own_ldap_config(own_slapd)
    ldap = await LDAPDirectory.open(config)
    try:
        await ldap.bulk_upsert(stored, replace=False)
        _reads, on_batch = kill_after(own_slapd, 2)
        with pytest.raises(DirectoryUnavailable):
            await migrate(ldap, target, batch_size=10, on_batch=on_batch)
        assert await target.count() == 20
    finally:
        await ldap.close()
    restart(own_slapd)
    ldap = await LDAPDirectory.open(config)
    try:
        done = await migrate(ldap, target, batch_size=10)
        assert (done.created, done.replaced) == (25, 20)
        assert await everything(target) == stored
    finally:
        await ldap.close()


async def test_a_target_locked_by_another_writer_fails_the_copy_and_a_rerun_completes_it(
    source: SQLiteDirectory, target: SQLiteDirectory, tmp_path: Path
) -> None:
    # Another process holds the write lock past the directory's busy timeout: the
    # batch in flight fails as a whole (one transaction), the ones before it stay.
    stored = accounts(30)
    await source.bulk_upsert(stored, replace=False)
    blocker = sqlite3.connect(tmp_path / "target.db", isolation_level=None)
    try:

        def lock_after_two(progress: MigrationProgress, _r: Sequence[Refusal]) -> None:
            if progress.read == 16:
                blocker.execute("BEGIN IMMEDIATE")

        with pytest.raises(DirectoryUnavailable, match="locked"):
            await migrate(source, target, batch_size=8, on_batch=lock_after_two)
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    assert await target.count() == 16
    done = await migrate(source, target, batch_size=8, resume=True)
    assert (done.unchanged, done.created) == (16, 14)
    assert await everything(target) == stored


# --------------------------------------------------------------------------- the command


def run(config: Path, *args: str) -> Result:
    from mailwarden.cli import main

    return CliRunner().invoke(main, ["--config", str(config), "migrate", *args])


def sqlite_toml(tmp_path: Path, name: str, stored: Sequence[Account] = ()) -> Path:
    """A config whose SQLite directory ``name.db`` exists and holds ``stored``."""
    path = tmp_path / f"{name}.toml"
    path.write_text(toml({"directory": {"path": f"{name}.db"}}))

    async def fill() -> None:
        await (await sqlite(tmp_path / f"{name}.db", stored)).close()

    asyncio.run(fill())
    return path


def ldap_toml(tmp_path: Path, name: str, config: LdapConfig) -> Path:
    path = tmp_path / f"{name}.toml"
    section = {
        "servers": list(config.servers),
        "base_dn": config.base_dn,
        "bind_dn": config.bind_dn,
        "bind_password": config.bind_password,
        "timeout": 1.0,
    }
    path.write_text(toml({"directory": {"backend": "ldap"}, "ldap": section}))
    return path


def test_the_command_copies_and_reports_with_progress_lines_off_a_terminal(
    tmp_path: Path, ldap_config: LdapConfig
) -> None:
    stored = accounts(7)
    source = sqlite_toml(tmp_path, "source", stored)
    target = ldap_toml(tmp_path, "target", ldap_config)
    result = run(source, "--to", str(target), "--batch", "3", "--progress")
    assert result.exit_code == 0, result.output
    assert "migrated 7 account(s): 7 created, 0 replaced, 0 unchanged, 0 refused" in result.stdout
    assert result.stderr.startswith("migrating: 3/7 accounts (42%)")
    quiet = run(source, "--to", str(target), "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert "7 replaced" in quiet.stdout


def test_the_command_lists_refused_accounts_and_exits_65(tmp_path: Path) -> None:
    source = sqlite_toml(tmp_path, "source", [Account(uid="bob", mail="x@example.org")])
    target = sqlite_toml(tmp_path, "target", [Account(uid="owner", mail="x@example.org")])
    result = run(source, "--to", str(target))
    assert result.exit_code == 65, result.output
    assert "refused bob: address 'x@example.org' already belongs to 'owner'" in result.stderr
    assert "1 refused" in result.stdout


def test_the_command_refuses_to_copy_a_directory_onto_itself(tmp_path: Path) -> None:
    source = sqlite_toml(tmp_path, "source", [Account(uid="bob")])
    (tmp_path / "sub").mkdir()
    same = tmp_path / "sub" / "same.toml"
    same.write_text(toml({"directory": {"path": "../source.db"}}))
    result = run(source, "--to", str(same))
    assert result.exit_code == 2, result.output
    assert "onto itself: both use the SQLite file" in result.stderr


def test_the_command_exits_75_when_the_target_is_down_and_78_when_it_is_missing(
    tmp_path: Path,
) -> None:
    source = sqlite_toml(tmp_path, "source", [Account(uid="bob")])
    down = LdapConfig(servers=("ldap://127.0.0.1:9/",), base_dn="dc=example,dc=org")
    result = run(source, "--to", str(ldap_toml(tmp_path, "down", down)))
    assert result.exit_code == 75, result.output
    assert "run the same command again" in result.stderr
    missing = tmp_path / "missing.toml"
    missing.write_text(toml({"directory": {"path": "nowhere.db"}}))
    result = run(source, "--to", str(missing))
    assert result.exit_code == 78, result.output
    assert "the --to config" in result.stderr and "init" in result.stderr


def test_the_command_killed_halfway_loses_nothing_and_a_rerun_completes_the_copy(
    tmp_path: Path,
) -> None:
    stored = accounts(3000)
    source = sqlite_toml(tmp_path, "source", stored)
    target = sqlite_toml(tmp_path, "target")
    args = ["-c", str(source), "migrate", "--to", str(target), "--batch", "10", "--progress"]
    child = subprocess.Popen(
        [*MAILWARDEN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stderr is not None
        ready, _, _ = select.select([child.stderr], [], [], 60)
        assert ready, "no progress line within 60 s"
        first = child.stderr.readline()  # printed once the first batch is committed
        child.kill()
    finally:
        child.kill()
        child.wait(timeout=10)
    assert first.startswith("migrating: 10/3,000 accounts"), first

    async def copied() -> list[Account]:
        directory = await sqlite(tmp_path / "target.db")
        try:
            return await everything(directory)
        finally:
            await directory.close()

    before = asyncio.run(copied())
    assert 10 <= len(before) < 3000  # killed halfway; every account there is whole
    by_uid = {a.uid: a for a in stored}
    assert [by_uid[a.uid] for a in before] == before
    result = run(source, "--to", str(target), "--resume", "-q")
    assert result.exit_code == 0, result.output
    assert f"{len(before)} unchanged" in result.stdout
    assert asyncio.run(copied()) == stored


# --------------------------------------------------------------------------- pure parts


def ldap_config_file(tmp_path: Path, name: str, servers: list[str], base: str) -> Path:
    return ldap_toml(tmp_path, name, LdapConfig(servers=tuple(servers), base_dn=base))


@pytest.mark.parametrize(
    ("servers", "base", "same"),
    [
        (["ldap://LOCALHOST/"], "DC=Example, dc=org", "both use base DN"),
        (["ldap://127.0.0.1:389"], "ou=people,dc=example,dc=org", "one lies under the other"),
        (["ldap://other.example/", "ldap://127.0.0.1/"], "dc=org", "one lies under the other"),
        (["ldap://127.0.0.1:1389/"], "dc=example,dc=org", None),
        (["ldap://127.0.0.1/"], "ou=people,dc=example,dc=net", None),
    ],
)
def test_ldap_directories_are_the_same_on_a_shared_server_with_nested_bases(
    tmp_path: Path, servers: list[str], base: str, same: str | None
) -> None:
    a = confignames.load(
        ldap_config_file(tmp_path, "a", ["ldap://127.0.0.1/"], "dc=example,dc=org")
    )
    b = confignames.load(ldap_config_file(tmp_path, "b", servers, base))
    why = same_accounts(a, b)
    assert (why is None) if same is None else (why is not None and same in why)


def test_server_and_dn_keys_ignore_spelling() -> None:
    assert (
        server_key("LDAP://LocalHost") == server_key("ldap://[::1]:389/") == "ldap://localhost:389"
    )
    assert server_key("ldaps://h.example") == "ldaps://h.example:636"
    assert dn_key("OU=People, DC=Example,dc=org") == dn_key("ou=people,dc=example,dc=org")


def test_the_progress_line_shows_at_most_once_per_interval_but_every_refusal() -> None:
    now = [0.0]
    stream = io.StringIO()
    line = ProgressLine(stream, terminal=False, enabled=True, clock=lambda: now[0])
    for read in (10, 20, 30):
        line.batch(MigrationProgress(total=40, read=read, elapsed=1.0), ())
        now[0] += 0.4
    line.batch(
        MigrationProgress(total=40, read=40, refused=1, elapsed=2.0),
        [Refusal(uid="bob", message="no")],
    )
    assert stream.getvalue().splitlines() == [
        "migrating: 10/40 accounts (25%), 10/s",  # 20 and 30 came within the second
        "refused bob: no",
        "migrating: 40/40 accounts (100%), 20/s, 1 refused",
    ]
    assert describe(MigrationProgress(total=0)) == "0/0 accounts, 0/s"


def test_the_progress_line_rewrites_itself_on_a_terminal_and_stays_quiet_when_off() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, terminal=True, enabled=True, interval=0)
    line.batch(MigrationProgress(total=2, read=1, elapsed=1.0), ())
    line.batch(MigrationProgress(total=2, read=2, elapsed=1.0), [Refusal(uid="x", message="y")])
    line.finish()
    assert stream.getvalue() == (
        "\rmigrating: 1/2 accounts (50%), 1/s\x1b[K\r\x1b[Krefused x: y\n"
        "\rmigrating: 2/2 accounts (100%), 2/s\x1b[K\n"
    )
    silent = io.StringIO()
    off = ProgressLine(silent, terminal=True, enabled=False)
    off.batch(MigrationProgress(total=2, read=2), ())
    off.finish()
    assert silent.getvalue() == ""


def test_a_batch_size_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="batch size"):
        asyncio.run(migrate(None, None, batch_size=0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "same"),
    [
        ('hosts = ["DB1.example"]\ndatabase = "mail"', True),
        ('hosts = ["db2.example"]\nreplicas = ["db1.example"]\ndatabase = "mail"', True),
        ('hosts = ["db1.example"]\ndatabase = "other"', False),
        ('hosts = ["db2.example"]\ndatabase = "mail"', False),
        ('driver = "mariadb"\nhosts = ["db1.example"]\ndatabase = "mail"', False),
    ],
)
def test_sql_directories_are_the_same_database_on_a_shared_server(
    tmp_path: Path, text: str, same: bool
) -> None:
    def load(name: str, sql: str) -> Config:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[directory]\nbackend = "sql"\n[sql]\n{sql}\n')
        return confignames.load(path)

    a = load("a", 'hosts = ["db1.example"]\ndatabase = "mail"')
    why = same_accounts(a, load("b", text))
    assert (why is not None) is same
    assert why is None or "database mail" in why
