"""End to end against the real doveadm (Dovecot 2.3) on UNIX sockets in a temp dir.

The servers are threads running the codecs through sync_frontend.py; doveadm is the
real client binary, so handshake order, line formats and replies are checked by
Dovecot's own lib-auth. Skipped when doveadm is not installed.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

from mailwarden.protocols.dovecot_client import AuthRequest
from mailwarden.protocols.dovecot_master import MasterRequest, PassLookup, UserLookup
from tests.protocols.sync_frontend import SyncClientFrontend, SyncMasterFrontend, ToyEngine

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]


class Frontend(Protocol):
    greeting: bytes

    def feed(self, data: bytes) -> bytes: ...


@dataclass
class Servers:
    directory: Path
    engine: ToyEngine
    clients: dict[int, tuple[bytes, SyncClientFrontend]] = field(default_factory=dict)
    frontends: list[Frontend] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)

    def serve(self, name: str, make: Callable[[], Frontend]) -> None:
        path = self.directory / name
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        listener.listen()
        self.sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener, make), daemon=True).start()

    def _accept(self, listener: socket.socket, make: Callable[[], Frontend]) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn, make()), daemon=True).start()

    def _handle(self, conn: socket.socket, frontend: Frontend) -> None:
        self.frontends.append(frontend)
        with conn:
            conn.sendall(frontend.greeting)
            while True:
                data = conn.recv(4096)
                reply = frontend.feed(data)
                if isinstance(frontend, SyncClientFrontend) and frontend.conn.client_pid:
                    cookie = frontend.greeting.split(b"COOKIE\t")[1][:32]
                    self.clients[frontend.conn.client_pid] = (
                        bytes.fromhex(cookie.decode()),
                        frontend,
                    )
                if reply:
                    conn.sendall(reply)
                if not data:
                    return

    def doveadm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["doveadm", "-c", str(self.directory / "min.conf"), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def path(self, name: str) -> str:
        return str(self.directory / name)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    engine = ToyEngine(
        passwords={"alice": b"secret", "admin": b"masterpw"},
        masters=frozenset({"admin"}),
        userdb={
            "alice": {
                "uid": "1000",
                "gid": "1000",
                "home": "/home/alice",
                "mail": "maildir:~/Maildir",
            },
            "bob": {"uid": "1001"},
        },
    )
    s = Servers(directory=tmp_path, engine=engine)
    (tmp_path / "min.conf").write_text("ssl = no\n")
    s.serve("auth-client", lambda: SyncClientFrontend(engine, cookie=secrets.token_bytes(16)))
    s.serve("auth-login", lambda: SyncClientFrontend(engine, cookie=secrets.token_bytes(16)))
    s.serve("auth-userdb", lambda: SyncMasterFrontend(engine, userdb_only=True))
    s.serve("auth-master", lambda: SyncMasterFrontend(engine, clients=s.clients))
    yield s
    for listener in s.sockets:
        listener.close()


def test_doveadm_auth_test_succeeds_with_the_right_password(servers: Servers) -> None:
    result = servers.doveadm("auth", "test", "-a", servers.path("auth-client"), "alice", "secret")
    assert result.returncode == 0, result.stderr
    assert "passdb: alice auth succeeded" in result.stdout


def test_doveadm_auth_test_fails_with_a_wrong_password(servers: Servers) -> None:
    result = servers.doveadm("auth", "test", "-a", servers.path("auth-client"), "alice", "wrong")
    assert result.returncode == 77
    assert "auth failed" in result.stdout


def client_requests(servers: Servers) -> list[AuthRequest]:
    return [r for f in servers.frontends if isinstance(f, SyncClientFrontend) for r in f.requests]


def test_doveadm_x_parameters_arrive_as_request_fields(servers: Servers) -> None:
    result = servers.doveadm(
        "auth",
        "test",
        "-a",
        servers.path("auth-client"),
        "-x",
        "service=imap",
        "-x",
        "rip=192.0.2.9",
        "-x",
        "lport=143",
        "-x",
        "session=abc",
        "-x",
        "forward_k=v",
        "-x",
        "secured",
        "alice",
        "secret",
    )
    assert result.returncode == 0, result.stderr
    [request] = client_requests(servers)
    assert (request.service, request.rip, request.lport, request.session) == (
        "imap",
        "192.0.2.9",
        143,
        "abc",
    )
    assert request.forward_fields == (("k", "v"),)
    assert request.is_secured
    assert request.initial_response == b"alice\0alice\0secret"


def test_doveadm_auth_test_as_a_master_user(servers: Servers) -> None:
    result = servers.doveadm(
        "auth", "test", "-a", servers.path("auth-client"), "-M", "admin", "alice", "masterpw"
    )
    assert result.returncode == 0, result.stderr
    assert "auth_user=admin" in result.stdout


def test_doveadm_user_prints_the_userdb_fields(servers: Servers) -> None:
    result = servers.doveadm("user", "-u", "-a", servers.path("auth-userdb"), "alice")
    assert result.returncode == 0, result.stderr
    assert "home      : /home/alice" in result.stdout
    assert "mail      : maildir:~/Maildir" in result.stdout


def test_doveadm_user_of_an_unknown_user_exits_67(servers: Servers) -> None:
    result = servers.doveadm("user", "-u", "-a", servers.path("auth-userdb"), "nobody")
    assert result.returncode == 67


def test_doveadm_user_with_a_wildcard_lists_users(servers: Servers) -> None:
    result = servers.doveadm("user", "-a", servers.path("auth-userdb"), "*")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["alice", "bob"]


def test_doveadm_auth_lookup_reads_passdb_fields(servers: Servers) -> None:
    result = servers.doveadm("auth", "lookup", "-a", servers.path("auth-userdb"), "alice")
    assert result.returncode == 0, result.stderr
    assert "user      : alice" in result.stdout
    lookups = [
        e
        for f in servers.frontends
        if isinstance(f, SyncMasterFrontend)
        for e in f.seen
        if isinstance(e, PassLookup | UserLookup)
    ]
    assert lookups == [PassLookup(id=1, user="alice", service="doveadm")]


def test_doveadm_auth_cache_flush_gets_its_count(servers: Servers) -> None:
    result = servers.doveadm("auth", "cache", "flush", "-a", servers.path("auth-master"), "alice")
    assert result.returncode == 0, result.stderr
    assert "1 cache entries flushed" in result.stdout


def test_doveadm_auth_login_authenticates_then_fetches_the_userdb_reply(servers: Servers) -> None:
    result = servers.doveadm(
        "auth",
        "login",
        "-a",
        servers.path("auth-login"),
        "-m",
        servers.path("auth-master"),
        "alice",
        "secret",
    )
    assert result.returncode == 0, result.stderr
    assert "/home/alice" in result.stdout
    requests = [
        e
        for f in servers.frontends
        if isinstance(f, SyncMasterFrontend)
        for e in f.seen
        if isinstance(e, MasterRequest)
    ]
    assert len(requests) == 1
    cookie, client = servers.clients[requests[0].client_pid]
    assert requests[0].cookie == cookie
    assert requests[0].auth_id == client.requests[0].id
