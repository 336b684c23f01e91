"""The asyncio Dovecot front end over real UNIX sockets, with a real engine.

Every test starts :func:`start_dovecot` on sockets in a temporary directory, with
an :class:`~mailwarden.auth.engine.Engine` over a MemoryDirectory (or a real SQLite
directory that was closed, for backend failures), and talks to it as Postfix,
Exim, doveadm or a login process would: bytes on a socket, nothing patched.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import os
import re
import socket
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.auth import tokens
from mailwarden.config import Config
from mailwarden.directories.base import ALL_LOGIN_ATTRIBUTES, LoginAttribute, QueryContext
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import ConfigError
from mailwarden.frontends.dovecot import DovecotServer, Role, start_dovecot
from mailwarden.model import Accepted, Account, AccountStatus, AppPassword, AuthAttempt, Denied
from mailwarden.sasl import MECHANISMS
from tests.conftest import EngineFactory
from tests.helpers import make_config
from tests.sasl.clients import ScramClient, digest_md5_ha1, digest_md5_values, md5, scram_stored

TIMEOUT = 10.0
ALL_MECHANISMS = tuple(MECHANISMS)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


# --------------------------------------------------------------------------- a test peer


class Peer:
    """One connection to a Dovecot socket, speaking the protocol as its clients do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.handshake: list[list[str]] = []

    @classmethod
    async def connect(cls, address: str) -> Peer:
        if address.startswith("/"):
            reader, writer = await asyncio.open_unix_connection(address)
        else:
            host, _, port = address.rpartition(":")
            reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    @classmethod
    async def client(cls, address: str, *, cpid: int | None = None, minor: int = 2) -> Peer:
        """A client-protocol connection after the whole handshake."""
        peer = await cls.connect(address)
        while (fields := (await peer.line()).split("\t"))[0] != "DONE":
            peer.handshake.append(fields)
        peer.send(f"VERSION\t1\t{minor}", f"CPID\t{cpid or os.getpid()}")
        return peer

    @classmethod
    async def master(cls, address: str) -> Peer:
        """A master-protocol connection after the server's VERSION and SPID."""
        peer = await cls.connect(address)
        peer.handshake = [(await peer.line()).split("\t"), (await peer.line()).split("\t")]
        peer.send("VERSION\t1\t0")
        return peer

    def value(self, name: str) -> str:
        """The first handshake line named ``name``, its argument."""
        return next(fields[1] for fields in self.handshake if fields[0] == name)

    def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\n" for line in lines).encode())

    async def line(self, timeout: float = TIMEOUT) -> str:
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        if not data.endswith(b"\n"):
            raise EOFError(f"connection closed (partial line {data!r})")
        return data[:-1].decode()

    async def lines(self, count: int) -> list[str]:
        return [await self.line() for _ in range(count)]

    async def wait_closed_by_server(self) -> bytes:
        """What arrived until the server closed the connection (TimeoutError if it does not)."""
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while data := await asyncio.wait_for(self.reader.read(65536), TIMEOUT):
                received += data
        return received

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def auth(rid: int, mech: str, *params: str, resp: bytes | None = None) -> str:
    line = "\t".join(("AUTH", str(rid), mech, "service=smtp", *params))
    if resp is not None:
        line += "\tresp=" + (b64(resp) if resp else "=")
    return line


# --------------------------------------------------------------------------- accounts

BOB_HOME = "/var/mail/bob"
BOB_APP_PASSWORD = "mwa_" + "b" * 24  # an app password of bob's (docs/credentials.md)
CAROL_SCRAM = scram_stored("sha256", b"carolpw", b"0123456789abcdef", 4096).decode()


@pytest_asyncio.fixture(autouse=True)
async def accounts(directory: MemoryDirectory) -> None:
    """alice (from conftest, SHA512-CRYPT "secret", nologin) and a cast for the mechanisms."""
    for account in (
        Account(
            uid="bob",
            password="{PLAIN}bobpw",
            home=BOB_HOME,
            uid_number=5001,
            gid_number=5001,
            app_passwords=(
                AppPassword(
                    id="phone",
                    name="phone",
                    digest=tokens.digest(tokens.TokenKind.APP_PASSWORD, BOB_APP_PASSWORD),
                ),
            ),
        ),
        Account(uid="carol", password="{SCRAM-SHA-256}" + CAROL_SCRAM),
        Account(uid="dave", password="{PLAIN}davepw", status=AccountStatus.DISABLED),
        Account(uid="eve", password="{PLAIN}evepw", services={"smtp": False}),
        Account(
            uid="frank",
            password="{PLAIN}frankpw",
            status=AccountStatus.DISABLED,
            passdb_fields={"nodelay": ""},
        ),
        Account(uid="admin", password="{PLAIN}masterpw", master=True),
        Account(uid="anonymous"),
    ):
        await directory.create(account)


# --------------------------------------------------------------------------- servers

Serve = Callable[..., Awaitable[DovecotServer]]


def dovecot_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "client_socket": "auth-client",
        "login_socket": "auth-login",
        "master_socket": "auth-master",
        "userdb_socket": "auth-userdb",
        "mechanisms": ALL_MECHANISMS,
        "failure_delay": 0.0,
        "hostname": "mx.example",
    }
    settings.update(overrides)
    return settings


# Cheap hashes, and no rehash on login: the {PLAIN} accounts must keep their
# plaintext for the challenge-response mechanisms.
PASSWORDS = {"scheme": "SHA512-CRYPT", "rehash": "never"}


def config_with(**dovecot: Any) -> Config:
    return make_config(passwords=PASSWORDS, dovecot=dovecot_settings(**dovecot))


@pytest_asyncio.fixture
async def serve(make_engine: EngineFactory, tmp_path: Path) -> AsyncIterator[Serve]:
    """Start a front end: ``await serve(directory=None, **dovecot_settings)``."""
    servers: list[DovecotServer] = []

    async def start(directory: Any = None, **dovecot: Any) -> DovecotServer:
        config = config_with(**dovecot)
        root = tmp_path / f"server{len(servers)}"
        server = await start_dovecot(
            make_engine(config, directory), config.dovecot, resolve=lambda p: root / p
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


@pytest_asyncio.fixture
async def server(serve: Serve) -> DovecotServer:
    return await serve()


async def client(server: DovecotServer, **kw: Any) -> Peer:
    return await Peer.client(server.address(Role.CLIENT), **kw)


@pytest_asyncio.fixture
async def closed_sqlite(tmp_path: Path) -> SQLiteDirectory:
    """A real directory whose every call fails the way an unreachable backend does."""
    directory = await SQLiteDirectory.open(tmp_path / "gone.db", create=True, readers=1)
    await directory.close()
    return directory


# --------------------------------------------------------------------------- handshake


async def test_the_handshake_comes_at_once_in_dovecots_order(server: DovecotServer) -> None:
    peer = await Peer.connect(server.address(Role.CLIENT))
    lines = [await peer.line() for _ in range(len(MECHANISMS) + 5)]
    assert lines[0] == "VERSION\t1\t2"
    assert [line.split("\t")[1] for line in lines[1:-4]] == list(MECHANISMS)
    assert lines[1] == "MECH\tPLAIN\tplaintext"
    assert lines[-4] == f"SPID\t{os.getpid()}"
    assert re.fullmatch(r"CUID\t\d+", lines[-3])
    assert re.fullmatch(r"COOKIE\t[0-9a-f]{32}", lines[-2])
    assert lines[-1] == "DONE"
    await peer.close()


async def test_each_connection_gets_the_next_cuid_and_its_own_cookie(
    server: DovecotServer,
) -> None:
    first, second = await client(server), await client(server)
    assert int(second.value("CUID")) == int(first.value("CUID")) + 1
    assert first.value("COOKIE") != second.value("COOKIE")


async def test_only_configured_mechanisms_are_offered_in_their_order(serve: Serve) -> None:
    server = await serve(mechanisms=("LOGIN", "PLAIN", "CRAM-MD5"))
    peer = await client(server)
    assert [f for f in peer.handshake if f[0] == "MECH"] == [
        ["MECH", "LOGIN", "plaintext"],
        ["MECH", "PLAIN", "plaintext"],
        ["MECH", "CRAM-MD5", "dictionary", "active"],
    ]


async def test_anonymous_is_not_offered_without_an_anonymous_user(serve: Serve) -> None:
    server = await serve(anonymous_username="")
    peer = await client(server)
    assert "ANONYMOUS" not in [f[1] for f in peer.handshake if f[0] == "MECH"]


# --------------------------------------------------------------------------- mechanisms

Dialogue = Callable[[Peer, int, str, bytes], Awaitable[str]]


async def plain(peer: Peer, rid: int, user: str, password: bytes) -> str:
    peer.send(auth(rid, "PLAIN", resp=b"\0" + user.encode() + b"\0" + password))
    return await peer.line()


async def login(peer: Peer, rid: int, user: str, password: bytes) -> str:
    peer.send(auth(rid, "LOGIN"))
    assert await peer.line() == f"CONT\t{rid}\t{b64(b'Username:')}"
    peer.send(f"CONT\t{rid}\t{b64(user.encode())}")
    assert await peer.line() == f"CONT\t{rid}\t{b64(b'Password:')}"
    peer.send(f"CONT\t{rid}\t{b64(password)}")
    return await peer.line()


async def cram_md5(peer: Peer, rid: int, user: str, password: bytes) -> str:
    peer.send(auth(rid, "CRAM-MD5"))
    challenge = unb64((await peer.line()).split("\t")[2])
    assert re.fullmatch(rb"<\d{16}\.\d+@mx\.example>", challenge)
    digest = hmac.new(password, challenge, "md5").hexdigest()
    peer.send(f"CONT\t{rid}\t{b64(f'{user} {digest}'.encode())}")
    return await peer.line()


async def digest_md5(peer: Peer, rid: int, user: str, password: bytes) -> str:
    peer.send(auth(rid, "DIGEST-MD5"))
    challenge = unb64((await peer.line()).split("\t")[2])
    match = re.search(rb'nonce="([^"]+)"', challenge)
    assert match is not None
    nonce = match.group(1).decode()
    response, rspauth = digest_md5_values(
        ha1=digest_md5_ha1(user, "", password), nonce=nonce, cnonce="c0ffee", digest_uri="smtp/mx"
    )
    answer = (
        f'username="{user}",nonce="{nonce}",cnonce="c0ffee",nc=00000001,qop=auth,'
        f'digest-uri="smtp/mx",response={response}'
    )
    peer.send(f"CONT\t{rid}\t{b64(answer.encode())}")
    reply = await peer.line()
    if reply.startswith("CONT"):  # success data first, then the OK for our empty answer
        assert unb64(reply.split("\t")[2]) == f"rspauth={rspauth}".encode()
        peer.send(f"CONT\t{rid}\t")
        reply = await peer.line()
    return reply


def scram(hash_name: str, mech: str) -> Dialogue:
    async def dialogue(peer: Peer, rid: int, user: str, password: bytes) -> str:
        scram_client = ScramClient(hash_name, user, password, cnonce="fyko+d2lbbFgONRv9qkxdawL")
        peer.send(auth(rid, mech, resp=scram_client.first()))
        server_first = unb64((await peer.line()).split("\t")[2])
        final, expected = scram_client.final(server_first)
        peer.send(f"CONT\t{rid}\t{b64(final)}")
        reply = await peer.line()
        if reply.startswith("CONT"):
            assert unb64(reply.split("\t")[2]) == expected
            peer.send(f"CONT\t{rid}\t")
            reply = await peer.line()
        return reply

    return dialogue


async def apop(peer: Peer, rid: int, user: str, password: bytes) -> str:
    spid, cuid = int(peer.value("SPID")), int(peer.value("CUID"))
    challenge = f"<{spid:x}.{cuid:x}.{int(time.time()):x}.1@mx.example>".encode()
    peer.send(
        auth(
            rid, "APOP", resp=challenge + b"\0" + user.encode() + b"\0" + md5(challenge + password)
        )
    )
    return await peer.line()


async def xoauth2(peer: Peer, rid: int, user: str, password: bytes) -> str:
    peer.send(
        auth(
            rid,
            "XOAUTH2",
            resp=b"user=" + user.encode() + b"\x01auth=Bearer " + password + b"\x01\x01",
        )
    )
    return await oauth_reply(peer, rid)


async def oauthbearer(peer: Peer, rid: int, user: str, password: bytes) -> str:
    data = b"n,a=" + user.encode() + b",\x01auth=Bearer " + password + b"\x01\x01"
    peer.send(auth(rid, "OAUTHBEARER", resp=data))
    return await oauth_reply(peer, rid)


DUMMY_OAUTH_ANSWER = b64(b"\x01")


async def oauth_reply(peer: Peer, rid: int) -> str:
    reply = await peer.line()
    if reply.startswith("CONT"):  # the JSON error first; our dummy answer gets the FAIL
        assert b"status" in unb64(reply.split("\t")[2])
        peer.send(f"CONT\t{rid}\t{DUMMY_OAUTH_ANSWER}")
        reply = await peer.line()
    return reply


PASSWORD_DIALOGUES: dict[str, Dialogue] = {
    "PLAIN": plain,
    "LOGIN": login,
    "CRAM-MD5": cram_md5,
    "DIGEST-MD5": digest_md5,
    "SCRAM-SHA-1": scram("sha1", "SCRAM-SHA-1"),
    "SCRAM-SHA-256": scram("sha256", "SCRAM-SHA-256"),
    "APOP": apop,
    "XOAUTH2": xoauth2,
    "OAUTHBEARER": oauthbearer,
}


@pytest.mark.parametrize("mech", PASSWORD_DIALOGUES)
async def test_every_password_mechanism_logs_in_over_the_socket(
    server: DovecotServer, mech: str
) -> None:
    peer = await client(server)
    assert await PASSWORD_DIALOGUES[mech](peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"


# XOAUTH2 and OAUTHBEARER carry a bearer token, which is not a password (issue 19).
APP_PASSWORD_DIALOGUES = [m for m in PASSWORD_DIALOGUES if m not in ("XOAUTH2", "OAUTHBEARER")]


@pytest.mark.parametrize("mech", APP_PASSWORD_DIALOGUES)
async def test_an_app_password_logs_in_with_the_plaintext_mechanisms_alone(
    server: DovecotServer, mech: str
) -> None:
    """PLAIN and LOGIN carry the app password itself; a challenge-response mechanism
    proves a stored credential that an app password's digest cannot serve."""
    peer = await client(server)
    reply = await PASSWORD_DIALOGUES[mech](peer, 1, "bob", BOB_APP_PASSWORD.encode())
    plaintext = mech in ("PLAIN", "LOGIN")
    assert reply == ("OK\t1\tuser=bob" if plaintext else "FAIL\t1\tuser=bob")


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
async def test_a_wrong_app_password_fails_like_a_wrong_password(
    server: DovecotServer, mech: str
) -> None:
    peer = await client(server)
    assert (
        await PASSWORD_DIALOGUES[mech](peer, 1, "bob", b"mwa_" + b"c" * 24) == "FAIL\t1\tuser=bob"
    )
    assert await PASSWORD_DIALOGUES[mech](peer, 2, "bob", b"wrong") == "FAIL\t2\tuser=bob"


@pytest.mark.parametrize("mech", PASSWORD_DIALOGUES)
async def test_every_password_mechanism_fails_with_a_wrong_password(
    server: DovecotServer, mech: str
) -> None:
    peer = await client(server)
    assert await PASSWORD_DIALOGUES[mech](peer, 1, "bob", b"wrong") == "FAIL\t1\tuser=bob"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "DIGEST-MD5", "CRAM-MD5"])
async def test_challenge_response_works_against_stored_scram_and_plain_credentials(
    server: DovecotServer, mech: str
) -> None:
    peer = await client(server)
    user, password = ("carol", b"carolpw") if mech == "SCRAM-SHA-256" else ("bob", b"bobpw")
    assert await PASSWORD_DIALOGUES[mech](peer, 1, user, password) == f"OK\t1\tuser={user}"


async def test_scram_with_final_resp_ok_carries_the_server_signature_in_the_ok(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    scram_client = ScramClient("sha256", "carol", b"carolpw", cnonce="abcdefgh")
    peer.send(auth(1, "SCRAM-SHA-256", "final-resp-ok", resp=scram_client.first()))
    final, expected = scram_client.final(unb64((await peer.line()).split("\t")[2]))
    peer.send(f"CONT\t1\t{b64(final)}")
    assert await peer.line() == f"OK\t1\tuser=carol\tresp={b64(expected)}"


async def test_anonymous_logs_in_as_the_anonymous_user(server: DovecotServer) -> None:
    peer = await client(server)
    peer.send(auth(1, "ANONYMOUS", resp=b"trace-info"))
    assert await peer.line() == "OK\t1\tuser=anonymous\tanonymous"


async def test_external_logs_in_the_user_of_a_verified_certificate(server: DovecotServer) -> None:
    # On the login socket: trusted by default (tests/frontends/test_dovecot_sockets.py).
    peer = await Peer.client(server.address(Role.LOGIN))
    peer.send(auth(1, "EXTERNAL", "valid-client-cert", "cert_username=bob", resp=b""))
    peer.send(auth(2, "EXTERNAL", "cert_username=bob", resp=b""))
    assert sorted(await peer.lines(2)) == ["FAIL\t2", "OK\t1\tuser=bob"]


async def test_the_engine_refuses_anonymous_unless_the_mechanism_is_offered(
    make_engine: EngineFactory,
) -> None:
    attempt = AuthAttempt(
        username="anonymous", credentials=None, service="smtp", mechanism="ANONYMOUS"
    )
    offered = make_engine(config_with(mechanisms=("PLAIN", "ANONYMOUS")))
    not_offered = make_engine(config_with(mechanisms=("PLAIN",)))
    assert isinstance(await offered.authenticate(attempt), Accepted)
    assert isinstance(await not_offered.authenticate(attempt), Denied)


async def test_the_engine_refuses_anonymous_for_any_other_user(make_engine: EngineFactory) -> None:
    engine = make_engine(config_with())
    attempt = AuthAttempt(username="bob", credentials=None, service="smtp", mechanism="ANONYMOUS")
    assert isinstance(await engine.authenticate(attempt), Denied)


# --------------------------------------------------------------------------- outcomes


async def test_an_ok_carries_the_passdb_fields_but_not_the_hidden_ones(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    assert await plain(peer, 1, "alice", b"secret") == "OK\t1\tuser=alice\tnologin\treason=moved"


async def test_a_login_by_address_reports_the_name_as_typed(server: DovecotServer) -> None:
    peer = await client(server)
    reply = await plain(peer, 1, "alice@example.com", b"secret")
    assert reply == "OK\t1\tuser=alice\tnologin\treason=moved\toriginal_user=alice@example.com"


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-256"])
async def test_unknown_user_and_wrong_password_get_identical_replies(
    serve: Serve, directory: MemoryDirectory, mech: str
) -> None:
    with_alice = await serve(directory)
    without_alice = await serve(MemoryDirectory())
    replies = []
    for server in (with_alice, without_alice):
        peer = await client(server)
        replies.append(await PASSWORD_DIALOGUES[mech](peer, 1, "alice", b"not-the-password"))
    assert replies[0] == replies[1] == "FAIL\t1\tuser=alice"


async def test_a_disabled_account_with_the_right_password_is_told_so(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    reply = await plain(peer, 1, "dave", b"davepw")
    assert reply == "FAIL\t1\tuser=dave\tcode=user_disabled\treason=Account not enabled"


async def test_a_disabled_account_with_a_wrong_password_learns_nothing(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    assert await plain(peer, 1, "dave", b"wrong") == "FAIL\t1\tuser=dave"


async def test_a_service_switched_off_fails_with_user_disabled(server: DovecotServer) -> None:
    peer = await client(server)
    reply = await plain(peer, 1, "eve", b"evepw")
    assert reply == "FAIL\t1\tuser=eve\tcode=user_disabled\treason=Account not enabled"


async def test_a_master_user_acts_as_the_target_user(server: DovecotServer) -> None:
    peer = await client(server)
    peer.send(auth(1, "PLAIN", resp=b"bob\0admin\0masterpw"))
    assert await peer.line() == "OK\t1\tuser=bob\toriginal_user=admin\tauth_user=admin"


async def test_a_user_without_the_master_flag_gets_authz_fail(server: DovecotServer) -> None:
    peer = await client(server)
    peer.send(auth(1, "PLAIN", resp=b"bob\0alice\0secret"))
    assert await peer.line() == "FAIL\t1\tuser=alice\tcode=authz_fail"


async def test_a_failing_directory_gives_temp_fail(
    serve: Serve, closed_sqlite: SQLiteDirectory
) -> None:
    server = await serve(closed_sqlite)
    peer = await client(server)
    assert await plain(peer, 1, "alice", b"secret") == "FAIL\t1\tuser=alice\tcode=temp_fail"


async def test_a_failing_directory_during_a_credentials_lookup_gives_temp_fail(
    serve: Serve, closed_sqlite: SQLiteDirectory
) -> None:
    server = await serve(closed_sqlite)
    peer = await client(server)
    peer.send(auth(1, "SCRAM-SHA-256", resp=ScramClient("sha256", "bob", b"x", "nonce").first()))
    assert await peer.line() == "FAIL\t1\tuser=bob\tcode=temp_fail"


async def test_a_protocol_1_0_client_is_disconnected_on_a_temporary_failure(
    serve: Serve, closed_sqlite: SQLiteDirectory
) -> None:
    # Postfix and Exim say VERSION 1 0 and take any FAIL as a wrong password; a
    # closed connection is what makes them answer 454 / 435.
    server = await serve(closed_sqlite)
    peer = await client(server, minor=0)
    peer.send(auth(1, "PLAIN", resp=b"\0alice\0secret"))
    with pytest.raises(EOFError):
        await peer.line()


async def test_a_protocol_1_0_client_with_other_requests_in_flight_gets_temp_fail(
    serve: Serve, closed_sqlite: SQLiteDirectory
) -> None:
    server = await serve(closed_sqlite)
    peer = await client(server, minor=0)
    peer.send(auth(1, "LOGIN"))
    assert (await peer.line()).startswith("CONT\t1\t")
    peer.send(auth(2, "PLAIN", resp=b"\0alice\0secret"))
    assert await peer.line() == "FAIL\t2\tuser=alice\tcode=temp_fail"


class ExplodingDirectory(MemoryDirectory):
    """A directory with a bug: looking up "boom" raises something unexpected."""

    async def find(
        self,
        login: str,
        *,
        by: Sequence[LoginAttribute] = ALL_LOGIN_ATTRIBUTES,
        context: QueryContext | None = None,
    ) -> Account | None:
        if login == "boom":
            raise RuntimeError("a bug in a directory")
        return await super().find(login, by=by)


async def test_a_crashing_request_fails_alone_and_is_logged_once_with_its_id(
    serve: Serve, directory: MemoryDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    exploding = ExplodingDirectory()
    await exploding.create(Account(uid="bob", password="{PLAIN}bobpw"))
    server = await serve(exploding)
    peer = await client(server)
    with caplog.at_level(logging.ERROR, logger="mailwarden.dovecot"):
        assert await plain(peer, 7, "boom", b"x") == "FAIL\t7\tcode=temp_fail"
        assert await plain(peer, 8, "bob", b"bobpw") == "OK\t8\tuser=bob"
    [record] = [
        r for r in caplog.records if r.name == "mailwarden.dovecot" and r.levelno >= logging.ERROR
    ]
    assert "request 7" in record.getMessage()
    assert record.exc_info is not None


# --------------------------------------------------------------------------- concurrency


async def test_many_pipelined_requests_on_one_connection_are_each_answered_once(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    count = 100
    peer.send(
        *(
            auth(rid, "PLAIN", resp=b"\0bob\0" + (b"bobpw" if rid % 2 else b"wrong"))
            for rid in range(1, count + 1)
        )
    )
    replies = {}
    for line in await peer.lines(count):
        fields = line.split("\t")
        replies[int(fields[1])] = fields[0]
    assert replies == {rid: "OK" if rid % 2 else "FAIL" for rid in range(1, count + 1)}


async def test_a_delayed_failure_does_not_hold_back_later_requests(serve: Serve) -> None:
    server = await serve(failure_delay=0.5)
    peer = await client(server)
    started = time.monotonic()
    peer.send(auth(1, "PLAIN", resp=b"\0bob\0wrong"), auth(2, "PLAIN", resp=b"\0bob\0bobpw"))
    assert await peer.line() == "OK\t2\tuser=bob"
    assert await peer.line() == "FAIL\t1\tuser=bob"
    assert time.monotonic() - started >= 0.45


async def test_a_mechanism_failure_is_delayed_too(serve: Serve) -> None:
    server = await serve(failure_delay=0.5)
    peer = await client(server)
    started = time.monotonic()
    peer.send(auth(1, "PLAIN", resp=b"no-nuls-at-all"))
    assert await peer.line() == "FAIL\t1"
    assert time.monotonic() - started >= 0.45


async def test_a_temporary_failure_is_not_delayed(
    serve: Serve, closed_sqlite: SQLiteDirectory
) -> None:
    server = await serve(closed_sqlite, failure_delay=8)
    peer = await client(server)
    started = time.monotonic()
    assert await plain(peer, 1, "alice", b"secret") == "FAIL\t1\tuser=alice\tcode=temp_fail"
    assert time.monotonic() - started < 4


async def test_nodelay_skips_the_delay_only_once_the_password_is_proven(serve: Serve) -> None:
    server = await serve(failure_delay=1.0)
    peer = await client(server)
    started = time.monotonic()
    reply = await plain(peer, 1, "frank", b"frankpw")
    assert time.monotonic() - started < 0.9
    assert reply == "FAIL\t1\tuser=frank\tcode=user_disabled\treason=Account not enabled\tnodelay"
    started = time.monotonic()
    assert await plain(peer, 2, "frank", b"wrong") == "FAIL\t2\tuser=frank"
    assert time.monotonic() - started >= 0.9


async def test_a_request_left_waiting_for_the_client_times_out_silently(serve: Serve) -> None:
    server = await serve(request_timeout=0.3)
    peer = await client(server)
    peer.send(auth(1, "LOGIN"))
    assert await peer.line() == f"CONT\t1\t{b64(b'Username:')}"
    await asyncio.sleep(0.6)
    peer.send(f"CONT\t1\t{b64(b'bob')}")
    assert await peer.line() == "FAIL\t1\treason=Authentication request timed out"
    assert await plain(peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"


async def test_a_cancelled_request_gets_no_reply_and_its_id_can_be_reused(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    peer.send(auth(1, "LOGIN"))
    assert (await peer.line()).startswith("CONT\t1\t")
    peer.send("CANCEL\t1")
    assert await plain(peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"


# --------------------------------------------------------------------------- bad input


async def test_a_protocol_violation_closes_only_that_connection(
    server: DovecotServer, caplog: pytest.LogCaptureFixture
) -> None:
    bad, good = await client(server), await client(server)
    with caplog.at_level(logging.WARNING, logger="mailwarden.dovecot"):
        bad.send("HELLO\tthere")
        await bad.wait_closed_by_server()
    assert await plain(good, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"
    warnings = [r for r in caplog.records if "protocol error" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_protocol_violation_drops_the_other_requests_of_that_connection(
    serve: Serve,
) -> None:
    server = await serve(failure_delay=0.5)
    peer = await client(server)
    peer.send(auth(1, "PLAIN", resp=b"\0bob\0wrong"), auth(1, "PLAIN", resp=b"\0bob\0wrong"))
    assert await peer.wait_closed_by_server() == b""  # not even the first one's FAIL


async def test_a_huge_line_closes_the_connection_before_it_ends(serve: Serve) -> None:
    server = await serve(max_line_length=1024)
    bad, good = await client(server), await client(server)
    bad.writer.write(b"AUTH\t1\tPLAIN\tservice=smtp\tresp=" + b"QUFB" * 4096)
    await bad.wait_closed_by_server()
    assert await plain(good, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"


async def test_bad_base64_fails_the_request_and_keeps_the_connection(
    server: DovecotServer,
) -> None:
    peer = await client(server)
    peer.send("AUTH\t1\tPLAIN\tservice=smtp\tresp=!!!!")
    assert await peer.line() == (
        "FAIL\t1\tcode=invalid_base64\treason=Invalid base64 data in initial response"
    )
    assert await plain(peer, 2, "bob", b"bobpw") == "OK\t2\tuser=bob"


async def test_a_client_on_the_master_socket_is_disconnected(server: DovecotServer) -> None:
    peer = await Peer.connect(server.address(Role.MASTER))
    peer.send("VERSION\t1\t0", f"CPID\t{os.getpid()}")
    await peer.wait_closed_by_server()


# --------------------------------------------------------------------------- master and userdb


async def test_user_returns_the_userdb_fields(server: DovecotServer) -> None:
    peer = await Peer.master(server.address(Role.USERDB))
    peer.send("USER\t1\tbob\tservice=doveadm", "USER\t2\tnobody\tservice=doveadm")
    assert await peer.lines(2) == [
        f"USER\t1\tbob\thome={BOB_HOME}\tuid=5001\tgid=5001",
        "NOTFOUND\t2",
    ]


async def test_pass_returns_the_passdb_fields_without_the_password(server: DovecotServer) -> None:
    peer = await Peer.master(server.address(Role.USERDB))
    peer.send("PASS\t1\talice\tservice=doveadm", "PASS\t2\tnobody\tservice=doveadm")
    assert await peer.lines(2) == ["PASS\t1\tuser=alice\tnologin\treason=moved", "NOTFOUND\t2"]


async def test_list_streams_the_users_matching_the_mask(server: DovecotServer) -> None:
    peer = await Peer.master(server.address(Role.USERDB))
    peer.send("LIST\t1\tuser=a*\tservice=doveadm", "LIST\t2\tservice=doveadm")
    first = await peer.lines(4)
    assert first == ["LIST\t1\tadmin", "LIST\t1\talice", "LIST\t1\tanonymous", "DONE\t1\t"]
    everyone = await peer.lines(9)
    assert everyone[-1] == "DONE\t2\t"
    assert [line.split("\t")[2] for line in everyone[:-1]] == sorted(
        ["admin", "alice", "anonymous", "bob", "carol", "dave", "eve", "frank"]
    )


async def test_a_list_mask_treats_only_star_and_question_mark_as_wildcards(
    server: DovecotServer,
) -> None:
    peer = await Peer.master(server.address(Role.USERDB))
    peer.send("LIST\t1\tuser=[ab]*", "LIST\t2\tuser=?ob")
    assert await peer.lines(3) == ["DONE\t1\t", "LIST\t2\tbob", "DONE\t2\t"]


async def test_lookups_fail_temporarily_when_the_directory_is_down(
    serve: Serve, closed_sqlite: SQLiteDirectory
) -> None:
    server = await serve(closed_sqlite)
    peer = await Peer.master(server.address(Role.MASTER))
    peer.send("USER\t1\tbob\tservice=x", "PASS\t2\tbob\tservice=x")
    assert sorted(await peer.lines(2)) == ["FAIL\t1", "FAIL\t2"]
    peer.send("LIST\t3")
    assert await peer.line() == "DONE\t3\tfail"


async def test_cache_flush_answers_with_the_number_flushed(server: DovecotServer) -> None:
    peer = await Peer.master(server.address(Role.MASTER))
    peer.send("CACHE-FLUSH\t1\tbob")
    assert await peer.line() == "OK\t1\t0"


async def test_the_userdb_socket_refuses_master_only_commands(server: DovecotServer) -> None:
    peer = await Peer.master(server.address(Role.USERDB))
    peer.send("CACHE-FLUSH\t1")
    await peer.wait_closed_by_server()


async def test_request_hands_the_master_the_userdb_reply_of_a_finished_login(
    serve: Serve,
) -> None:
    server = await serve()
    login_peer = await Peer.client(server.address(Role.LOGIN), cpid=4242)
    login_peer.send(auth(7, "PLAIN", resp=b"\0bob\0bobpw"))
    assert await login_peer.line() == "OK\t7\tuser=bob"
    master_peer = await Peer.master(server.address(Role.MASTER))
    cookie = login_peer.value("COOKIE")
    master_peer.send(f"REQUEST\t100\t4242\t7\t{cookie}\tsession_pid={os.getpid()}")
    assert await master_peer.line() == (
        f"USER\t100\tbob\thome={BOB_HOME}\tuid=5001\tgid=5001\tauth_mech=PLAIN"
    )
    master_peer.send(f"REQUEST\t101\t4242\t7\t{cookie}")
    assert await master_peer.line() == "FAIL\t101"


async def test_request_of_a_master_login_names_the_master_user(server: DovecotServer) -> None:
    login_peer = await Peer.client(server.address(Role.LOGIN), cpid=4343)
    login_peer.send(auth(3, "PLAIN", resp=b"bob\0admin\0masterpw"))
    assert (await login_peer.line()).startswith("OK\t3\tuser=bob")
    master_peer = await Peer.master(server.address(Role.MASTER))
    master_peer.send(f"REQUEST\t1\t4343\t3\t{login_peer.value('COOKIE')}")
    assert (await master_peer.line()).endswith(
        "\tmaster_user=admin\tauth_mech=PLAIN\tauth_user=admin"
    )


@pytest.mark.parametrize(
    "request_line",
    [
        "REQUEST\t1\t4444\t7\t00000000000000000000000000000000",  # wrong cookie
        "REQUEST\t1\t4445\t7\t{cookie}",  # another client pid
        "REQUEST\t1\t4444\t8\t{cookie}",  # another request id
        "REQUEST\t1\t4444\t7\t{cookie}\tsession_pid=1",  # not the peer's pid
    ],
)
async def test_request_fails_unless_pid_id_cookie_and_session_match(
    server: DovecotServer, request_line: str
) -> None:
    login_peer = await Peer.client(server.address(Role.LOGIN), cpid=4444)
    login_peer.send(auth(7, "PLAIN", resp=b"\0bob\0bobpw"))
    assert await login_peer.line() == "OK\t7\tuser=bob"
    master_peer = await Peer.master(server.address(Role.MASTER))
    master_peer.send(request_line.format(cookie=login_peer.value("COOKIE")))
    assert await master_peer.line() == "FAIL\t1"


async def test_a_nologin_login_is_not_kept_for_the_master(server: DovecotServer) -> None:
    login_peer = await Peer.client(server.address(Role.LOGIN), cpid=4546)
    assert (await plain(login_peer, 7, "alice", b"secret")).startswith("OK\t7\tuser=alice")
    master_peer = await Peer.master(server.address(Role.MASTER))
    master_peer.send(f"REQUEST\t1\t4546\t7\t{login_peer.value('COOKIE')}")
    assert await master_peer.line() == "FAIL\t1"


async def test_a_plain_client_socket_keeps_nothing_for_the_master(server: DovecotServer) -> None:
    peer = await client(server, cpid=4747)
    assert await plain(peer, 7, "bob", b"bobpw") == "OK\t7\tuser=bob"
    master_peer = await Peer.master(server.address(Role.MASTER))
    master_peer.send(f"REQUEST\t1\t4747\t7\t{peer.value('COOKIE')}")
    assert await master_peer.line() == "FAIL\t1"


async def test_a_login_connection_may_not_take_a_live_connections_pid(
    server: DovecotServer,
) -> None:
    first = await Peer.client(server.address(Role.LOGIN), cpid=4848)
    assert await plain(first, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"
    second = await Peer.client(server.address(Role.LOGIN), cpid=4848)
    await second.wait_closed_by_server()
    assert await plain(first, 2, "bob", b"bobpw") == "OK\t2\tuser=bob"


# --------------------------------------------------------------------------- listeners


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_sockets_get_their_modes_and_the_master_socket_is_private(
    server: DovecotServer,
) -> None:
    assert mode_of(server.address(Role.CLIENT)) == 0o666
    assert mode_of(server.address(Role.USERDB)) == 0o600
    assert mode_of(server.address(Role.MASTER)) == 0o600
    assert mode_of(server.address(Role.LOGIN)) == 0o600


async def test_configured_modes_apply(serve: Serve) -> None:
    server = await serve(client_socket_mode=0o660, master_socket_mode=0o640)
    assert mode_of(server.address(Role.CLIENT)) == 0o660
    assert mode_of(server.address(Role.MASTER)) == 0o640


async def test_close_removes_the_socket_files(serve: Serve) -> None:
    server = await serve()
    paths = [Path(listener.address) for listener in server.listeners]
    assert all(path.exists() for path in paths)
    await server.close()
    assert not any(path.exists() for path in paths)


async def test_close_ends_open_connections(serve: Serve) -> None:
    server = await serve()
    peer = await client(server)
    peer.send(auth(1, "LOGIN"))
    assert (await peer.line()).startswith("CONT")
    await server.close()
    await peer.wait_closed_by_server()


async def test_a_stale_socket_file_is_replaced(make_engine: EngineFactory, tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "auth-client"))
    stale.close()
    config = config_with(login_socket="", master_socket="", userdb_socket="")
    server = await start_dovecot(
        make_engine(config), config.dovecot, resolve=lambda p: tmp_path / p
    )
    try:
        peer = await client(server)
        assert await plain(peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"
    finally:
        await server.close()


async def test_a_socket_in_use_is_left_alone(serve: Serve, tmp_path: Path) -> None:
    first = await serve()
    config = config_with(login_socket="", master_socket="", userdb_socket="")
    with pytest.raises(ConfigError, match="in use"):
        await start_dovecot(
            first.state.engine,
            config.dovecot,
            resolve=lambda p: Path(first.address(Role.CLIENT)).parent / p,
        )
    peer = await client(first)
    assert await plain(peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"


async def test_a_file_that_is_not_a_socket_is_never_removed(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    (tmp_path / "auth-client").write_text("precious")
    config = config_with(login_socket="", master_socket="", userdb_socket="")
    with pytest.raises(ConfigError, match="not a socket"):
        await start_dovecot(make_engine(config), config.dovecot, resolve=lambda p: tmp_path / p)
    assert (tmp_path / "auth-client").read_text() == "precious"


async def test_a_failed_start_closes_the_listeners_already_started(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    (tmp_path / "auth-master").write_text("in the way")
    config = config_with(userdb_socket="")
    with pytest.raises(ConfigError, match=r"dovecot\.master_socket"):
        await start_dovecot(make_engine(config), config.dovecot, resolve=lambda p: tmp_path / p)
    assert not (tmp_path / "auth-client").exists()
    assert not (tmp_path / "auth-login").exists()


async def test_an_unknown_socket_owner_is_a_config_error(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    config = config_with(userdb_socket_user="no-such-user-here")
    with pytest.raises(ConfigError, match=r"dovecot\.userdb_socket_user"):
        await start_dovecot(make_engine(config), config.dovecot, resolve=lambda p: tmp_path / p)


async def test_the_client_protocol_is_served_on_tcp_too(serve: Serve) -> None:
    server = await serve(tcp_listen=("127.0.0.1:0",))
    [tcp] = [x for x in server.listeners if x.path is None]
    assert tcp.address.startswith("127.0.0.1:")
    peer = await Peer.client(tcp.address)
    assert await plain(peer, 1, "bob", b"bobpw") == "OK\t1\tuser=bob"
