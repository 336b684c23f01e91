"""The Dovecot front end over real sockets, the same cases against SQLite and LDAP.

What Postfix or Exim see on the wire must not depend on the backend: the same
accounts give the same replies from a SQLite directory and from a real slapd,
and a stopped slapd gives ``code=temp_fail``, never a plain FAIL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.app import build_engine
from mailwarden.config import LdapConfig
from mailwarden.directories.base import Directory
from mailwarden.directories.ldap import LDAPDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.frontends.dovecot import DovecotServer, Role, start_dovecot
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account, AccountStatus
from tests.frontends.test_dovecot_frontend import Peer, config_with, plain
from tests.helpers import hashed
from tests.slapd import Slapd, have_slapd

CAST = (
    Account(uid="bob", mail="bob@example.org", password="{PLAIN}bobpw", home="/var/mail/bob"),
    Account(uid="alice", mail="alice@example.org", password=hashed("secret")),
    Account(uid="dave", password="{PLAIN}davepw", status=AccountStatus.DISABLED),
    Account(uid="eve", password="{PLAIN}evepw", services={"smtp": False}),
)


@pytest.fixture
def hasher() -> Iterator[Hasher]:
    h = Hasher(workers=2)
    yield h
    h.close()


async def serving(directory: Directory, hasher: Hasher, root: Path) -> DovecotServer:
    config = config_with()
    engine = build_engine(config, directory=directory, hasher=hasher)
    return await start_dovecot(engine, config.dovecot, resolve=lambda p: root / p)


@pytest_asyncio.fixture(params=["sqlite", "ldap"])
async def server(
    request: pytest.FixtureRequest, tmp_path: Path, hasher: Hasher
) -> AsyncIterator[DovecotServer]:
    d: Directory
    if request.param == "ldap":
        d = await LDAPDirectory.open(request.getfixturevalue("ldap_config"))
    else:
        d = await SQLiteDirectory.open(tmp_path / "a.db", create=True)
    await d.bulk_upsert(CAST, replace=False)
    running = await serving(d, hasher, tmp_path / "sockets")
    yield running
    await running.close()
    await d.close()


async def client(server: DovecotServer) -> Peer:
    return await Peer.client(server.address(Role.CLIENT))


@pytest.mark.parametrize(
    ("user", "password", "reply"),
    [
        ("bob", b"bobpw", "OK\t1\tuser=bob"),
        ("BOB@example.org", b"bobpw", "OK\t1\tuser=bob\toriginal_user=BOB@example.org"),
        ("alice", b"secret", "OK\t1\tuser=alice"),
        ("bob", b"wrong", "FAIL\t1\tuser=bob"),
        ("nobody", b"bobpw", "FAIL\t1\tuser=nobody"),
        ("dave", b"davepw", "FAIL\t1\tuser=dave\tcode=user_disabled\treason=Account not enabled"),
        ("eve", b"evepw", "FAIL\t1\tuser=eve\tcode=user_disabled\treason=Account not enabled"),
    ],
)
async def test_the_same_logins_get_the_same_replies_from_sqlite_and_ldap(
    server: DovecotServer, user: str, password: bytes, reply: str
) -> None:
    peer = await client(server)
    try:
        assert await plain(peer, 1, user, password) == reply
    finally:
        await peer.close()


async def test_a_stopped_slapd_gives_temp_fail_on_the_wire(
    tmp_path: Path, hasher: Hasher, ldap_config: LdapConfig
) -> None:
    if not have_slapd():
        pytest.skip("slapd is not installed")
    own = Slapd(tmp_path / "slapd")
    own.start()
    try:
        config = dataclasses.replace(
            ldap_config, servers=(own.url,), base_dn="ou=people,dc=example,dc=org", timeout=1.0
        )
        d = await LDAPDirectory.open(config)
        await d.create(CAST[0])
        running = await serving(d, hasher, tmp_path / "sockets")
        try:
            peer = await client(running)
            assert await plain(peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"
            own.stop()
            for rid, password in ((2, b"bobpw"), (3, b"wrong")):
                line = await plain(peer, rid, "bob", password)
                assert line == f"FAIL\t{rid}\tuser=bob\tcode=temp_fail"
            await peer.close()
        finally:
            await running.close()
            await d.close()
    finally:
        own.stop()
