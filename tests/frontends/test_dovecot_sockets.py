"""Who may use which Dovecot socket, tested as a local user would attack it.

The front end runs in the test's event loop over real UNIX sockets in a directory
others may traverse; the "local user" is a real process running as ``nobody``
(``setpriv`` drops root's uid, gid and groups), speaking the protocol with bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.config import loads
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ConfigError
from mailwarden.frontends.dovecot import DovecotServer, Role, start_dovecot
from mailwarden.model import Account
from tests.conftest import EngineFactory
from tests.helpers import make_config
from tests.peers.conftest import private_dir

NOBODY = pwd.getpwnam("nobody")
SETPRIV = "/usr/bin/setpriv"
PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SETPRIV),
    reason="running a peer as nobody needs root and setpriv",
)

# Runs as nobody: connect, send argv[2], print every line received until one matches
# argv[3] (or the server closes); a refused connection prints {"error": errno name}.
PEER = r"""
import errno, json, re, socket, sys
sock = socket.socket(socket.AF_UNIX)
sock.settimeout(10)
try:
    sock.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"error": errno.errorcode[exc.errno]})); sys.exit()
sock.sendall(sys.argv[2].encode())
data, lines = b"", []
while not any(re.match(sys.argv[3], l) for l in lines):
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
    *done, data = data.split(b"\n")
    lines += [l.decode() for l in done]
print(json.dumps({"lines": lines}))
"""


async def as_nobody(path: str, send: str, until: str) -> dict[str, Any]:
    """What a process running as nobody gets from ``path`` (see PEER)."""
    proc = await asyncio.create_subprocess_exec(
        SETPRIV,
        f"--reuid={NOBODY.pw_uid}",
        f"--regid={NOBODY.pw_gid}",
        "--clear-groups",
        PYTHON,  # the system one: nobody may not reach the virtualenv's
        "-I",
        "-c",
        PEER,
        path,
        send,
        until,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    result: dict[str, Any] = json.loads(out)
    return result


def accounts() -> tuple[Account, ...]:
    return (
        Account(uid="alice", password="{PLAIN}secret", home="/home/alice", uid_number=5000),
        Account(uid="bob", password="{PLAIN}bobpw", home="/home/bob", uid_number=5001),
        # An account whose mail files belong to nobody: nobody may look it up.
        Account(uid="nob", password="{PLAIN}x", home="/home/nob", uid_number=NOBODY.pw_uid),
    )


@pytest.fixture
def root() -> Iterator[Path]:
    with private_dir("sockets") as path:
        yield path


Serve = Callable[..., Awaitable[DovecotServer]]


@pytest_asyncio.fixture
async def serve(make_engine: EngineFactory, root: Path) -> AsyncIterator[Serve]:
    """``await serve(**dovecot settings)``: every socket on, under ``root``."""
    servers: list[DovecotServer] = []

    async def start(**dovecot: Any) -> DovecotServer:
        settings: dict[str, Any] = {
            "client_socket": "auth-client",
            "login_socket": "auth-login",
            "master_socket": "auth-master",
            "userdb_socket": "auth-userdb",
            "mechanisms": ["PLAIN", "EXTERNAL"],
            "failure_delay": 0.0,
            **dovecot,
        }
        config = make_config(passwords={"scheme": "SHA512-CRYPT"}, dovecot=settings)
        directory = MemoryDirectory()
        for account in accounts():
            await directory.create(account)
        server = await start_dovecot(
            make_engine(config, directory),
            config.dovecot,
            resolve=lambda p: root / f"s{len(servers)}" / p,
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


HELLO = "VERSION\t1\t2\nCPID\t4242\n"
MASTER_HELLO = "VERSION\t1\t0\n"


def external(rid: int, *params: str) -> str:
    return "\t".join(("AUTH", str(rid), "EXTERNAL", "service=imap", *params, "resp=")) + "\n"


def mode_and_owner(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


# --------------------------------------------------------------------------- permissions


async def test_every_socket_gets_its_own_owner_group_and_mode(serve: Serve) -> None:
    server = await serve(
        client_socket_user="postfix",
        client_socket_group="postfix",
        client_socket_mode=0o660,
        login_socket_user="dovenull",
        login_socket_mode=0o600,
        master_socket_mode=0o600,
        userdb_socket_group="dovecot",
        userdb_socket_mode=0o660,
    )
    postfix, dovenull = pwd.getpwnam("postfix"), pwd.getpwnam("dovenull")
    dovecot_gid = pwd.getpwnam("dovecot").pw_gid
    assert mode_and_owner(server.address(Role.CLIENT)) == (0o660, postfix.pw_uid, postfix.pw_gid)
    assert mode_and_owner(server.address(Role.LOGIN)) == (0o600, dovenull.pw_uid, os.getegid())
    assert mode_and_owner(server.address(Role.MASTER)) == (0o600, 0, os.getegid())
    assert mode_and_owner(server.address(Role.USERDB)) == (0o660, 0, dovecot_gid)


async def test_by_default_a_local_user_reaches_only_the_client_socket(serve: Serve) -> None:
    server = await serve()
    reply = await as_nobody(server.address(Role.CLIENT), HELLO, r"DONE")
    assert reply["lines"][-1] == "DONE"
    for role in (Role.LOGIN, Role.MASTER, Role.USERDB):
        assert await as_nobody(server.address(role), "", "") == {"error": "EACCES"}, role


async def test_the_client_socket_gives_no_userdb_data(serve: Serve) -> None:
    server = await serve()
    reply = await as_nobody(
        server.address(Role.CLIENT), HELLO + "LIST\t1\tuser=*\tservice=doveadm\n", r"LIST|USER"
    )
    assert not any(line.startswith(("LIST", "USER")) for line in reply["lines"])


# --------------------------------------------------------------------------- EXTERNAL


async def test_external_is_refused_on_a_socket_that_is_not_trusted(serve: Serve) -> None:
    server = await serve()
    reply = await as_nobody(
        server.address(Role.CLIENT),
        HELLO + external(1, "valid-client-cert", "cert_username=bob"),
        r"(OK|FAIL)\t1",
    )
    assert reply["lines"][-1] == "FAIL\t1"


async def test_external_is_accepted_on_a_trusted_socket(serve: Serve) -> None:
    server = await serve(client_socket_trusted=True, login_socket_mode=0o666)
    for role in (Role.CLIENT, Role.LOGIN):
        reply = await as_nobody(
            server.address(role),
            HELLO + external(1, "valid-client-cert", "cert_username=bob"),
            r"(OK|FAIL)\t1",
        )
        assert reply["lines"][-1] == "OK\t1\tuser=bob", role


async def test_tcp_listeners_are_never_trusted(serve: Serve) -> None:
    server = await serve(client_socket_trusted=True, tcp_listen=["127.0.0.1:0"])
    [tcp] = [listener.address for listener in server.listeners if listener.path is None]
    host, _, port = tcp.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write((HELLO + external(1, "valid-client-cert", "cert_username=bob")).encode())
        while (line := (await asyncio.wait_for(reader.readline(), 10)).decode()) and not (
            line.startswith(("OK", "FAIL"))
        ):
            pass
        assert line == "FAIL\t1\n"
    finally:
        writer.close()


# --------------------------------------------------------------------------- userdb peers


def userdb_commands() -> str:
    return (
        MASTER_HELLO
        + "LIST\t1\tuser=*\tservice=doveadm\n"
        + "USER\t2\talice\tservice=imap\n"
        + "USER\t3\tnosuchuser\tservice=imap\n"
        + "PASS\t4\tbob\tservice=imap\n"
        + "USER\t5\tnob\tservice=imap\n"
    )


def by_id(lines: list[str]) -> dict[str, list[str]]:
    replies: dict[str, list[str]] = {}
    for line in lines:
        fields = line.split("\t")
        if fields[0] in ("LIST", "DONE", "USER", "PASS", "FAIL", "NOTFOUND"):
            replies.setdefault(fields[1], []).append(line)
    return replies


async def test_a_world_writable_userdb_socket_lets_strangers_see_only_their_own_account(
    serve: Serve,
) -> None:
    # Dovecot's own default for auth-userdb is 0666 with exactly this restriction.
    server = await serve(userdb_socket_mode=0o666)
    reply = await as_nobody(server.address(Role.USERDB), userdb_commands(), r"(USER|FAIL)\t5")
    replies = by_id(reply["lines"])
    assert replies["1"] == ["DONE\t1\tfail"]  # no account listed
    assert replies["2"] == ["FAIL\t2"]
    assert replies["3"] == ["FAIL\t3"]  # the same as an existing account: no oracle
    assert replies["4"] == ["FAIL\t4"]
    assert replies["5"] == [f"USER\t5\tnob\thome=/home/nob\tuid={NOBODY.pw_uid}"]


async def test_trusted_userdb_peers_see_every_account(serve: Serve) -> None:
    for trust in ({"userdb_trusted_users": ["nobody"]}, {"userdb_trusted_groups": ["nogroup"]}):
        server = await serve(userdb_socket_mode=0o666, **trust)
        reply = await as_nobody(server.address(Role.USERDB), userdb_commands(), r"(USER|FAIL)\t5")
        replies = by_id(reply["lines"])
        assert replies["1"] == ["LIST\t1\talice", "LIST\t1\tbob", "LIST\t1\tnob", "DONE\t1\t"]
        assert replies["2"] == ["USER\t2\talice\thome=/home/alice\tuid=5000"]
        assert replies["3"] == ["NOTFOUND\t3"]
        assert replies["4"] == ["PASS\t4\tuser=bob"]


async def test_the_socket_group_has_full_access(serve: Serve) -> None:
    server = await serve(userdb_socket_mode=0o660, userdb_socket_group="nogroup")
    reply = await as_nobody(server.address(Role.USERDB), userdb_commands(), r"(USER|FAIL)\t5")
    assert by_id(reply["lines"])["1"][-1] == "DONE\t1\t"


async def test_an_unknown_trusted_user_is_a_config_error(serve: Serve) -> None:

    with pytest.raises(ConfigError, match=r"dovecot\.userdb_trusted_users\[0\]"):
        await serve(userdb_trusted_users=["no-such-user-here"])


def test_old_shared_socket_keys_say_what_replaces_them() -> None:

    with pytest.raises(ConfigError, match=r"dovecot\.socket_mode.*client_socket_mode"):
        loads("[dovecot]\nsocket_mode = 0o666\n")
