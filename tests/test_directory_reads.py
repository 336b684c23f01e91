"""Every front end reads the directory once per login, and not at all on a warm cache.

The engine decides a login with one directory read, and its outcome carries all
that a front end answers with (passdb and userdb fields, ``nodelay``), so no front
end and no one-shot command asks again after the decision (auth/engine.py). The
directories here are the real ones, wrapped so that their reads are counted:
:class:`CountingDirectory` counts the reads the engine asks for, and
:class:`TracedSQLite` the queries that reach the database file, which the SQLite
directory's login cache (``directory.cache_size``) spares on a repeat login.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from click.testing import CliRunner

from mailwarden import app as app_module
from mailwarden import checkpassword, cli
from mailwarden.app import Backend, build_engine
from mailwarden.auth import tokens
from mailwarden.auth.engine import Engine
from mailwarden.config import Config, HttpConfig, SaslauthdConfig
from mailwarden.directories.base import (
    ALL_LOGIN_ATTRIBUTES,
    BulkReport,
    Directory,
    LoginAttribute,
    Modified,
    QueryContext,
)
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.frontends.control import ControlServer
from mailwarden.frontends.dovecot import DovecotServer, start_dovecot
from mailwarden.frontends.dovecot_sockets import Role
from mailwarden.frontends.http import start_http
from mailwarden.frontends.saslauthd import start_saslauthd
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account, AccountStatus, AppPassword, AppPasswordUsed, Listed
from mailwarden.protocols import checkpassword as cp
from tests.classic.conftest import fill, write_config
from tests.frontends.test_dovecot_frontend import Peer, cram_md5, digest_md5, plain, scram
from tests.frontends.test_http_frontend import auth as http_auth
from tests.helpers import hashed, make_config


class CountingDirectory:
    """A real directory whose reads (find, get, search, ...) are counted."""

    def __init__(self, inner: Directory) -> None:
        self.inner = inner
        self.reads = 0

    async def find(
        self,
        login: str,
        *,
        by: Iterable[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        self.reads += 1
        return await self.inner.find(login, by=tuple(by), context=context)

    async def get(self, uid: str) -> Account | None:
        self.reads += 1
        return await self.inner.get(uid)

    async def get_many(self, uids: Sequence[str]) -> list[Account]:
        self.reads += 1
        return await self.inner.get_many(uids)

    async def find_by_fingerprint(self, fingerprint: str) -> list[Account]:
        self.reads += 1
        return await self.inner.find_by_fingerprint(fingerprint)

    async def iterate(self) -> AsyncIterator[str]:
        self.reads += 1
        async for uid in self.inner.iterate():
            yield uid

    async def search(self, pattern: str, *, limit: int = 1000) -> list[Account]:
        self.reads += 1
        return await self.inner.search(pattern, limit=limit)

    async def sample(self, count: int) -> list[Account]:
        self.reads += 1
        return await self.inner.sample(count)

    async def listing(self, pattern: str = "*") -> AsyncIterator[Listed]:
        self.reads += 1
        async for listed in self.inner.listing(pattern):
            yield listed

    async def count(self) -> int:
        self.reads += 1
        return await self.inner.count()

    async def create(self, account: Account) -> None:
        await self.inner.create(account)

    async def replace(self, account: Account) -> None:
        await self.inner.replace(account)

    async def update(self, uid: str, changes: Mapping[str, Any]) -> Account:
        return await self.inner.update(uid, changes)

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        return await self.inner.modify(uid, change)

    async def set_password(self, uid: str, new: str, *, expected: str | None = None) -> bool:
        return await self.inner.set_password(uid, new, expected=expected)

    async def delete(self, uid: str) -> bool:
        return await self.inner.delete(uid)

    async def record_app_password_uses(self, uses: Sequence[AppPasswordUsed]) -> None:
        await self.inner.record_app_password_uses(uses)

    async def bulk_upsert(
        self, accounts: Iterable[Account], *, replace: bool, skip_refused: bool = False
    ) -> BulkReport:
        return await self.inner.bulk_upsert(accounts, replace=replace, skip_refused=skip_refused)

    def data_version(self) -> int | None:
        return self.inner.data_version()

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class TracedSQLite(SQLiteDirectory):
    """The SQLite directory, counting the SELECTs its connections run on the file."""

    selects = 0

    def _connect(self, mode: str) -> sqlite3.Connection:
        conn = super()._connect(mode)
        conn.set_trace_callback(self._trace)
        return conn

    @classmethod
    def _trace(cls, statement: str) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            cls.selects += 1


# --------------------------------------------------------------------------- in-process front ends

APP_PASSWORD = "mwa_" + "r" * 24  # one of alice's app passwords: read with her account

ACCOUNTS = (
    Account(
        uid="alice",
        password=hashed("secret"),
        home="/home/alice",
        uid_number=5000,
        app_passwords=(
            AppPassword(
                id="r",
                name="reads",
                digest=tokens.digest(tokens.TokenKind.APP_PASSWORD, APP_PASSWORD),
            ),
        ),
    ),
    Account(uid="plainuser", password="{PLAIN}plainpw"),
    Account(
        uid="dave",
        password="{PLAIN}davepw",
        status=AccountStatus.DISABLED,
        passdb_fields={"nodelay": ""},
    ),
)
CONFIG = make_config(
    passwords={"scheme": "SHA512-CRYPT", "rehash": "never"},
    dovecot={
        "client_socket": "auth-client",
        "login_socket": "",
        "master_socket": "",
        "userdb_socket": "auth-userdb",
        "mechanisms": ("PLAIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256"),
        "failure_delay": 0.0,
        "hostname": "mx.example",
    },
)
HTTP = HttpConfig(
    enabled=True, listen=("127.0.0.1:0",), auth_username="dovecot", auth_password="apisecret"
)


@pytest_asyncio.fixture
async def counted() -> AsyncIterator[CountingDirectory]:
    directory = CountingDirectory(MemoryDirectory(ACCOUNTS))
    yield directory
    await directory.close()


@pytest.fixture
def hasher() -> Iterator[Hasher]:
    h = Hasher(workers=1)
    yield h
    h.close()


@pytest_asyncio.fixture
async def engine(counted: CountingDirectory, hasher: Hasher) -> Engine:
    return build_engine(CONFIG, directory=counted, hasher=hasher)


@pytest_asyncio.fixture
async def dovecot(engine: Engine, tmp_path: Path) -> AsyncIterator[DovecotServer]:
    server = await start_dovecot(engine, CONFIG.dovecot, resolve=lambda p: tmp_path / p)
    yield server
    await server.close()


async def reads_of(directory: CountingDirectory, login: Awaitable[object]) -> int:
    before = directory.reads
    await login
    return directory.reads - before


@pytest.mark.parametrize(
    ("dialogue", "user", "password"),
    [
        (plain, "alice", b"secret"),
        (plain, "alice", APP_PASSWORD.encode()),
        (plain, "alice", b"mwa_" + b"w" * 24),
        (plain, "alice", b"wrong"),
        (plain, "ghost", b"secret"),
        (plain, "dave", b"davepw"),  # disabled, nodelay: the FAIL path
        (cram_md5, "plainuser", b"plainpw"),
        (cram_md5, "ghost", b"plainpw"),
        (digest_md5, "plainuser", b"plainpw"),
        (digest_md5, "ghost", b"plainpw"),
        (scram("sha256", "SCRAM-SHA-256"), "plainuser", b"plainpw"),
    ],
)
async def test_a_dovecot_client_socket_login_reads_the_directory_once(
    dovecot: DovecotServer,
    counted: CountingDirectory,
    dialogue: Callable[[Peer, int, str, bytes], Awaitable[str]],
    user: str,
    password: bytes,
) -> None:
    peer = await Peer.client(dovecot.address(Role.CLIENT))
    try:
        assert await reads_of(counted, dialogue(peer, 1, user, password)) == 1
    finally:
        await peer.close()


async def test_the_fail_of_a_nodelay_account_is_decided_in_that_one_read(
    dovecot: DovecotServer, counted: CountingDirectory
) -> None:
    peer = await Peer.client(dovecot.address(Role.CLIENT))
    try:
        reply = await plain(peer, 1, "dave", b"davepw")
    finally:
        await peer.close()
    assert reply.startswith("FAIL\t1\t") and reply.endswith("\tnodelay")
    assert counted.reads == 1


async def test_a_userdb_lookup_reads_the_directory_once(
    dovecot: DovecotServer, counted: CountingDirectory
) -> None:
    peer = await Peer.master(dovecot.address(Role.USERDB))
    try:
        peer.send("USER\t1\talice\tservice=doveadm")
        assert await reads_of(counted, peer.line()) == 1
    finally:
        await peer.close()


async def test_an_http_json_login_reads_the_directory_once(
    engine: Engine, counted: CountingDirectory
) -> None:
    server = await start_http(engine, HTTP, resolve=Path)
    try:
        response = await http_auth(server, "alice", "secret")
    finally:
        await server.close()
    assert response.status == 200
    assert counted.reads == 1


async def test_a_saslauthd_login_reads_the_directory_once(
    engine: Engine, counted: CountingDirectory, tmp_path: Path
) -> None:
    server = await start_saslauthd(
        engine, SaslauthdConfig(socket=str(tmp_path / "mux"), failure_delay=0.0), resolve=Path
    )
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "mux"))
        fields = (b"alice", b"secret", b"imap", b"")
        writer.write(b"".join(len(f).to_bytes(2, "big") + f for f in fields))
        reply = await reader.read()
        writer.close()
    finally:
        await server.close()
    assert reply.endswith(b"OK")
    assert counted.reads == 1


class CountingControl(ControlServer):
    """The real control socket, counting the requests it answers."""

    requests = 0

    async def _answer(self, line: bytes) -> bytes:
        self.requests += 1
        return await super()._answer(line)


@pytest.mark.parametrize(
    ("user", "secret", "lookup_only", "decided"),
    [
        ("alice", b"secret", False, cp.Login),
        ("alice", b"wrong", False, cp.Refused),
        ("ghost", b"secret", False, cp.Refused),
        ("alice", b"", True, cp.Login),
        ("ghost", b"", True, cp.Unknown),
    ],
)
async def test_checkpassword_asking_the_daemon_is_one_request_and_one_read(
    engine: Engine,
    counted: CountingDirectory,
    tmp_path: Path,
    user: str,
    secret: bytes,
    lookup_only: bool,
    decided: type[cp.Decision],
) -> None:
    control = CountingControl(
        engine, lambda: asyncio.sleep(0, {}), socket_path=tmp_path / "control"
    )
    await control.start()
    settings = checkpassword.Settings(
        source="test",
        via="daemon",
        timeout=10,
        control_socket=str(tmp_path / "control"),
        first_valid_uid=500,
        first_valid_gid=1,
    )
    request = checkpassword.Request(
        block=cp.parse_block(user.encode() + b"\0" + secret + b"\0\0"),
        apop_digest=None,
        service="pop3",
        lookup_only=lookup_only,
        remote_ip="192.0.2.7",
        local_ip=None,
    )
    try:
        decision = await asyncio.to_thread(checkpassword.ask_daemon, settings, request)
    finally:
        await control.close()
    assert isinstance(decision, decided)
    if isinstance(decision, cp.Login):
        assert (decision.user, decision.userdb) == ("alice", {"home": "/home/alice", "uid": "5000"})
    assert (control.requests, counted.reads) == (1, 1)


async def test_a_verified_login_on_a_warm_cache_reaches_no_database(
    hasher: Hasher, tmp_path: Path
) -> None:
    """The repeat of a login: its password from the verified-login cache, its account
    from the SQLite directory's login cache (the engine still asks, as always)."""
    directory = await TracedSQLite.open(tmp_path / "a.db", create=True, cache_size=100)
    await directory.bulk_upsert(ACCOUNTS, replace=False)
    counted = CountingDirectory(directory)
    engine = build_engine(CONFIG, directory=counted, hasher=hasher)
    server = await start_dovecot(engine, CONFIG.dovecot, resolve=lambda p: tmp_path / p)
    peer = await Peer.client(server.address(Role.CLIENT))
    try:
        assert (await plain(peer, 1, "alice", b"secret")).startswith("OK")
        selects, hits = TracedSQLite.selects, engine.cache.hits
        assert await reads_of(counted, plain(peer, 2, "alice", b"secret")) == 1
        assert TracedSQLite.selects == selects
        assert engine.cache.hits == hits + 1
    finally:
        await peer.close()
        await server.close()
        await counted.close()


# --------------------------------------------------------------------------- one-shot commands


@pytest.fixture
def one_shot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, list[CountingDirectory]]:
    """A config with the classic accounts in SQLite; every directory the commands open
    is counted (app.open_backend, the composition root's one opening)."""
    cfg = write_config(tmp_path / "mw.toml")
    asyncio.run(fill(tmp_path / "data" / "mw.db"))
    opened: list[CountingDirectory] = []
    real = app_module.open_backend

    async def counting(config: Config, *, create: bool = False) -> Backend:
        backend = await real(config, create=create)
        directory = CountingDirectory(backend.directory)
        opened.append(directory)
        return Backend(directory=directory, checker=backend.checker)

    monkeypatch.setattr(app_module, "open_backend", counting)
    return cfg, opened


def login_reads(opened: list[CountingDirectory]) -> int:
    assert len(opened) == 1
    return opened[0].reads


def test_checkpassword_deciding_locally_reads_the_directory_once(
    one_shot: tuple[Path, list[CountingDirectory]],
) -> None:
    cfg, opened = one_shot
    block = cp.parse_block(b"alice\0secret\0\0")
    request = checkpassword.Request(
        block=block,
        apop_digest=None,
        service="pop3",
        lookup_only=False,
        remote_ip=None,
        local_ip=None,
    )
    decision = checkpassword.decide_locally(str(cfg), request)
    assert isinstance(decision, cp.Login)
    assert login_reads(opened) == 1


def test_auth_test_reads_the_directory_once(
    one_shot: tuple[Path, list[CountingDirectory]],
) -> None:
    cfg, opened = one_shot
    result = CliRunner().invoke(cli.main, ["-c", str(cfg), "auth", "test", "alice", "secret"])
    assert result.exit_code == 0, result.output
    assert "userdb extra fields" in result.output
    assert login_reads(opened) == 1


@pytest.mark.parametrize(("pam_type", "stdin"), [("auth", b"secret\0"), ("account", b"")])
def test_pam_reads_the_directory_once(
    one_shot: tuple[Path, list[CountingDirectory]], pam_type: str, stdin: bytes
) -> None:
    cfg, opened = one_shot
    env = {"PAM_USER": "alice", "PAM_TYPE": pam_type, "PAM_SERVICE": "smtp"}
    result = CliRunner().invoke(
        cli.main, ["-c", str(cfg), "pam", "service=imap|pop3"], input=stdin, env=env
    )
    assert result.exit_code == cli.PAM_SUCCESS, result.output
    assert login_reads(opened) == 1
    assert os.environ.get("PAM_USER") is None  # the runner's environment stayed its own
