"""Overlapping writes through AccountAdmin lose nothing, on every backend.

Two administrators (two AccountAdmin objects, each over its own directory object on
the same store: two processes, as the CLI and the daemon are) change one account at
the same moment, 200 times over. Whatever the interleaving, both changes must be
stored afterwards: a password change racing a field edit, two edits of different
fields, and two edits of different keys of one field map.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.config import LdapConfig
from mailwarden.directories.base import Directory
from mailwarden.directories.ldap import MODIFY_ATTEMPTS, LDAPDirectory
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sql.own import OwnDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import AccountChanged
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account, Profile
from tests.conftest import sql_config_for
from tests.helpers import FAST

ROUNDS = 200
UID = "race"


@dataclasses.dataclass
class Pair:
    """Two administrators on one store, and a way to read what is stored."""

    a: AccountAdmin
    b: AccountAdmin

    async def stored(self) -> Account:
        account = await self.a.directory.get(UID)
        assert account is not None
        return account


async def _open(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Directory:
    if backend == "sqlite":
        return await SQLiteDirectory.open(tmp_path / "accounts.db", create=True, cache_size=100)
    if backend in ("postgresql", "mariadb"):
        # The own schema; the pair's second pool on the same database is a second node.
        server = request.getfixturevalue(
            "postgres_server" if backend == "postgresql" else "mariadb_server"
        )
        sql = sql_config_for(server, server.create_database())
        return await OwnDirectory.open(sql, password=sql.password, create=True)
    config: LdapConfig = request.getfixturevalue("ldap_config")
    return await LDAPDirectory.open(config)


@pytest_asyncio.fixture(params=["memory", "sqlite", "ldap", "postgresql", "mariadb"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    backend: str = request.param
    if backend == "memory":
        shared = MemoryDirectory()
        directories: list[Directory] = [shared, shared]
    else:
        first = await _open(backend, tmp_path, request)
        if backend == "ldap":
            # Both on the same subtree: the second admin is another node.
            second: Directory = await LDAPDirectory.open(first.config)  # type: ignore[attr-defined]
        elif isinstance(first, OwnDirectory):
            config = first.db.config
            second = await OwnDirectory.open(config, password=config.password, create=False)
        else:
            second = await _open(backend, tmp_path, request)
        directories = [first, second]
    await directories[0].create(Account(uid=UID, mail=f"{UID}@example.org", password="{PLAIN}0"))
    hasher = Hasher(workers=2)
    admins = [
        AccountAdmin(
            directory=d,
            hasher=hasher,
            engine=Engine(directory=d, hasher=hasher, config=FAST),
            default_scheme="PLAIN",
        )
        for d in directories
    ]
    yield Pair(admins[0], admins[1])
    hasher.close()
    for d in {id(d): d for d in directories}.values():
        await d.close()


Race = Callable[[Pair, int], tuple[Awaitable[object], Awaitable[object]]]
Check = Callable[[Account, int], list[str]]


async def _race(pair: Pair, race: Race, check: Check) -> list[str]:
    """Run ``race`` ROUNDS times; every change ``check`` finds missing."""
    lost: list[str] = []
    for i in range(1, ROUNDS + 1):
        first, second = race(pair, i)
        await asyncio.gather(first, second)
        lost.extend(f"round {i}: {what}" for what in check(await pair.stored(), i))
    return lost


async def test_a_password_change_racing_a_field_edit_keeps_both(pair: Pair) -> None:
    def race(p: Pair, i: int) -> tuple[Awaitable[object], Awaitable[object]]:
        return (
            p.a.set_password(UID, f"pw{i}".encode()),
            p.b.update(UID, [f"mail_host=mx{i}.example.org"]),
        )

    def check(account: Account, i: int) -> list[str]:
        lost = []
        if account.password != f"{{PLAIN}}pw{i}":
            lost.append(f"password is {account.password!r}")
        if account.mail_host != f"mx{i}.example.org":
            lost.append(f"mail_host is {account.mail_host!r}")
        return lost

    assert await _race(pair, race, check) == []


async def test_two_edits_of_different_fields_both_stay(pair: Pair) -> None:
    def race(p: Pair, i: int) -> tuple[Awaitable[object], Awaitable[object]]:
        return (
            p.a.update(UID, [f"home=/var/mail/{i}"]),
            p.b.patch(UID, {"quota_bytes": i}),
        )

    def check(account: Account, i: int) -> list[str]:
        lost = []
        if account.home != f"/var/mail/{i}":
            lost.append(f"home is {account.home!r}")
        if account.quota_bytes != i:
            lost.append(f"quota_bytes is {account.quota_bytes!r}")
        return lost

    assert await _race(pair, race, check) == []


async def test_two_edits_of_different_keys_of_one_field_map_both_stay(pair: Pair) -> None:
    # In LDAP both keys are values of one attribute: the compare-and-swap must
    # catch the overlap and apply the second edit on top of the first.
    def race(p: Pair, i: int) -> tuple[Awaitable[object], Awaitable[object]]:
        return (
            p.a.update(UID, [f"userdb.first={i}"]),
            p.b.update(UID, [f"userdb.second={i}"]),
        )

    def check(account: Account, i: int) -> list[str]:
        fields = dict(account.userdb_fields)
        expected = {"first": str(i), "second": str(i)}
        return [] if fields == expected else [f"userdb_fields are {fields}"]

    assert await _race(pair, race, check) == []


async def test_an_ldap_entry_that_keeps_changing_fails_with_changed_meanwhile(
    ldap_config: LdapConfig,
) -> None:
    import ldap  # type: ignore[import-untyped]

    from tests.slapd import ROOT_DN, ROOT_PW

    directory = await LDAPDirectory.open(ldap_config)
    other = ldap.initialize(ldap_config.servers[0])
    other.simple_bind_s(ROOT_DN, ROOT_PW)
    hasher = Hasher(workers=1)
    admin = AccountAdmin(
        directory=directory,
        hasher=hasher,
        engine=Engine(directory=directory, hasher=hasher, config=FAST),
        default_scheme="PLAIN",
    )
    calls = 0
    try:
        await directory.create(Account(uid=UID, home="/home/0"))
        dn = f"uid={UID},{ldap_config.base_dn}"

        def change(current: Account) -> Account:
            # Another writer changes the same attribute after every read.
            nonlocal calls
            calls += 1
            other.modify_s(dn, [(ldap.MOD_REPLACE, "homeDirectory", [f"/other/{calls}".encode()])])
            return dataclasses.replace(current, home="/mine")

        with pytest.raises(AccountChanged, match="changed meanwhile"):
            await admin.apply(UID, change)
        assert calls == MODIFY_ATTEMPTS
        stored = await directory.get(UID)
        assert stored is not None and stored.home == f"/other/{calls}"
    finally:
        other.unbind_s()
        hasher.close()
        await directory.close()


async def test_an_attribute_without_equality_rule_is_learnt_and_replaced_whole(
    ldap_config: LdapConfig,
) -> None:
    # Start as if the schema's gaps were unknown: the server's "inappropriate
    # matching" answer must teach the directory to replace that attribute whole.
    directory = await LDAPDirectory.open(ldap_config)
    try:
        directory._replace_whole.clear()
        await directory.create(Account(uid=UID, profile=Profile(facsimile_telephone_number="1")))
        changed = Profile(facsimile_telephone_number="2")
        await directory.replace(Account(uid=UID, profile=changed))
        stored = await directory.get(UID)
        assert stored is not None and stored.profile == changed
        assert "facsimiletelephonenumber" in directory._replace_whole
    finally:
        await directory.close()
