"""Two ``mailwarden serve`` nodes sharing one Redis and one directory file.

Node A listens on 127.0.0.2, node B on 127.0.0.3 (HTTP API, free ports); both use
``[guard] store = "redis"`` on one private redis-server and the same SQLite file
(WAL mode lets two processes share it). Nothing is allow-listed, so loopback
sources are guarded. A source banned through A is refused by B, even with the
right password, while B still serves other sources; an admin flush sent to one
node empties the other's verified-login cache.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.configs import GUARD_RULE_IP, daemon_toml
from tests.peers.conftest import connectable, private_dir, stop_process, wait_until
from tests.peers.test_doveadm import populate
from tests.redisserver import RedisServer, have_redis, running_redis
from tests.staffing import ADMIN_TOKEN, seed_tokens

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(not have_redis(), reason="redis-server is not installed"),
]

ATTACKER = "192.0.2.9"
OTHER = "198.51.100.1"
BASIC = "Basic " + base64.b64encode(b"dovecot:apisecret").decode()


def node_config(*, db: object, address: str, port: int, redis: str) -> str:
    return daemon_toml(
        directory={"path": str(db)},
        http={
            "enabled": True,
            "listen": [f"{address}:{port}"],
            "auth_username": "dovecot",
            "auth_password": "apisecret",
            "admin_token": "admintoken",
        },
        guard={
            "store": "redis",
            "allow_networks": [],
            "ban_time": 600.0,
            "account_threshold": 0,
            "redis": {"url": redis, "key_prefix": "nodes:", "retry_interval": 0.5},
            "rules": [GUARD_RULE_IP],
        },
    )


@dataclass(frozen=True)
class Node:
    root: Path
    config: Path
    address: str
    port: int


def start_node(
    root: Path, address: str, db: Path, redis: RedisServer
) -> tuple[subprocess.Popen[Any], Node]:
    root.mkdir()
    node = Node(root, root / "mailwarden.toml", address, free_port_on(address))
    node.config.write_text(node_config(db=db, address=address, port=node.port, redis=redis.url))
    if not (db.parent / "state.db").exists():  # the nodes share it, as they share db
        seed_tokens(db.parent / "state.db")
    return spawn(node), node


def spawn(node: Node) -> subprocess.Popen[Any]:
    """``mailwarden serve`` for ``node``, logging to its serve.log (appended)."""
    with (node.root / "serve.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mailwarden", "--config", str(node.config), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_serving(proc: subprocess.Popen[Any], node: Node) -> None:
    """Until ``node`` answers on its control socket and its HTTP port (or has exited,
    which fails with its log)."""
    wait_until(
        lambda: (
            proc.poll() is not None
            or (
                connectable(str(node.root / "run" / "control"))
                and connectable((node.address, node.port))
            )
        ),
        f"mailwarden serve on {node.address}",
    )
    assert proc.poll() is None, (node.root / "serve.log").read_text()


def free_port_on(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def nodes() -> Iterator[tuple[Node, Node]]:
    with private_dir("nodes") as root, running_redis() as redis:
        db = root / "mailwarden.db"
        asyncio.run(populate(db))
        procs: list[subprocess.Popen[Any]] = []
        made: list[Node] = []
        try:
            for name, address in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
                proc, node = start_node(root / name, address, db, redis)
                procs.append(proc)
                made.append(node)
            for proc, node in zip(procs, made, strict=True):
                wait_serving(proc, node)
            yield made[0], made[1]
        finally:
            for proc in procs:
                stop_process(proc)


def http(node: Node, method: str, path: str, data: Any, auth: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://{node.address}:{node.port}{path}",
        data=json.dumps(data).encode(),
        method=method,
        headers={"Authorization": auth, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            body = resp.read()
            return resp.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def json_auth(node: Node, user: str, password: str, ip: str) -> int:
    body = {"username": user, "password": password, "client_ip": ip, "service": "imap"}
    return http(node, "POST", "/api/v1/auth/json", body, BASIC)[0]


def status(node: Node) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "mailwarden", "--config", str(node.config), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_source_banned_on_one_node_is_refused_by_the_other(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    for i in range(3):
        assert json_auth(a, "alice", f"guess{i}", ATTACKER) == 403
    assert json_auth(b, "alice", "secret", ATTACKER) == 403
    assert json_auth(b, "alice", "secret", OTHER) == 200
    listed = [
        r["target"]
        for r in http(b, "GET", "/api/v1/bruteforce/list", None, "Bearer " + ADMIN_TOKEN)[1][
            "result"
        ]
    ]
    assert listed == [f"{ATTACKER}/32"]
    assert not status(b)["guard"]["degraded"]


def test_an_admin_flush_on_one_node_empties_the_others_cache(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    # bob's password is SHA512-CRYPT: verified logins are cached.
    for node in (a, b):
        assert json_auth(node, "bob", "bobpw", OTHER) == 200
        assert status(node)["cache"]["entries"] == 1
    code, reply = http(a, "DELETE", "/api/v1/cache/flush", {"user": "bob"}, "Bearer " + ADMIN_TOKEN)
    assert code == 200, reply
    deadline = time.monotonic() + 10
    while status(b)["cache"]["entries"] != 0:
        assert time.monotonic() < deadline, "the flush did not reach node b"
        time.sleep(0.1)
    assert status(a)["cache"]["entries"] == 0


def test_an_app_password_revoked_on_one_node_is_refused_by_the_other_at_once(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    path = "/api/v1/accounts/bob/app-passwords"
    code, made = http(
        a, "POST", path, {"name": "phone", "services": ["imap"]}, "Bearer " + ADMIN_TOKEN
    )
    assert code == 201, made
    value = made["value"]
    for _ in range(3):  # repeated logins: nothing of them may outlive the revocation
        assert json_auth(b, "bob", value, OTHER) == 200
        assert json_auth(a, "bob", value, OTHER) == 200
    assert json_auth(b, "bob", "bobpw", OTHER) == 200  # cached: the main password's entry
    code, _ = http(a, "DELETE", f"{path}/phone", None, "Bearer " + ADMIN_TOKEN)
    assert code == 204
    # The node that revoked it refuses the very next login; the other one as soon as
    # it sees the edit: its account cache rechecks the shared file's data_version
    # every 10 ms (docs/credentials.md, "Revocation on every node").
    assert json_auth(a, "bob", value, OTHER) == 403
    revoked = time.monotonic()
    while json_auth(b, "bob", value, OTHER) != 403:
        assert time.monotonic() - revoked < 1.0, "node b still accepts the revoked app password"
        time.sleep(0.005)
    assert json_auth(b, "bob", value, OTHER) == 403
    assert json_auth(b, "bob", "bobpw", OTHER) == 200
