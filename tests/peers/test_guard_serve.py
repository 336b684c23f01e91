"""The guard in a running ``mailwarden serve``: one ban, every protocol, and the admin tools.

A source that fails too often through one front end is refused through all of
them (doveadm on the Dovecot socket, the HTTP JSON endpoint, nginx's auth_http
endpoint), while the same account logs in from another network; the ban is
listed and lifted with the CLI (over the control socket) and with the admin API.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.configs import GUARD_RULE_IP, daemon_toml
from tests.peers.conftest import doveadm_auth as peer_doveadm_auth
from tests.peers.conftest import free_port, private_dir, running_serve
from tests.peers.test_doveadm import populate
from tests.staffing import ADMIN_TOKEN, seed_tokens

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]

ATTACKER = "192.0.2.9"
OWNER = "198.51.100.1"
BASIC = "Basic " + base64.b64encode(b"dovecot:apisecret").decode()


def daemon_config(port: int) -> str:
    return daemon_toml(
        http={
            "enabled": True,
            "listen": [f"127.0.0.1:{port}"],
            "auth_username": "dovecot",
            "auth_password": "apisecret",
            "admin_token": "admintoken",
            "nginx_backends": {"": {"imap": "127.0.0.1:1143"}},
        },
        guard={
            "allow_networks": [],
            "ban_time": 600.0,
            "account_threshold": 4,
            "account_delay": 0.2,
            "rules": [GUARD_RULE_IP],
        },
    )


@dataclass(frozen=True)
class Node:
    root: Path
    config: Path
    port: int

    @property
    def client_socket(self) -> str:
        return str(self.root / "run" / "auth-client")


@pytest.fixture
def node() -> Iterator[Node]:
    with private_dir("guard") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        port = free_port()
        config = root / "mailwarden.toml"
        config.write_text(daemon_config(port))
        seed_tokens(root / "state.db")
        (root / "min.conf").write_text("ssl = no\n")
        ready = (str(root / "run" / "control"), ("127.0.0.1", port))
        with running_serve(config, ready=ready):
            yield Node(root, config, port)


def doveadm_auth(node: Node, user: str, password: str, rip: str) -> int:
    return peer_doveadm_auth(node.root / "min.conf", node.client_socket, user, password, rip)


def http(
    node: Node, method: str, path: str, data: Any = None, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{node.port}{path}",
        data=None if data is None else json.dumps(data).encode(),
        method=method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def json_auth(node: Node, user: str, password: str, ip: str) -> int:
    body = {"username": user, "password": password, "client_ip": ip, "service": "imap"}
    status, _, _ = http(
        node,
        "POST",
        "/api/v1/auth/json",
        body,
        Authorization=BASIC,
        **{"Content-Type": "application/json"},
    )
    return status


def nginx_auth(node: Node, user: str, password: str, ip: str) -> dict[str, str]:
    _, headers, _ = http(
        node,
        "GET",
        "/api/v1/auth/nginx",
        None,
        Authorization=BASIC,
        **{
            "Auth-Method": "plain",
            "Auth-User": user,
            "Auth-Pass": password,
            "Auth-Protocol": "imap",
            "Auth-Login-Attempt": "1",
            "Client-IP": ip,
        },
    )
    return headers


def cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwarden", "--config", str(node.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def admin(node: Node, method: str, path: str, data: Any = None) -> tuple[int, Any]:
    status, _, body = http(
        node,
        method,
        path,
        data,
        Authorization="Bearer " + ADMIN_TOKEN,
        **{"Content-Type": "application/json"},
    )
    return status, json.loads(body) if body else None


def test_a_ban_made_through_dovecot_holds_on_every_protocol_and_is_lifted(node: Node) -> None:
    for i in range(3):
        assert doveadm_auth(node, "alice", f"guess{i}", ATTACKER) == 77
    # The right password from the banned address: refused everywhere, like a wrong one.
    assert doveadm_auth(node, "alice", "secret", ATTACKER) == 77
    assert json_auth(node, "alice", "secret", ATTACKER) == 403
    refused = nginx_auth(node, "alice", "secret", ATTACKER)
    assert refused["auth-status"] == "Invalid login or password"
    assert "auth-wait" in refused
    # The owner, from elsewhere, is not affected.
    assert doveadm_auth(node, "alice", "secret", OWNER) == 0
    assert json_auth(node, "alice", "secret", OWNER) == 200
    assert nginx_auth(node, "alice", "secret", OWNER)["auth-status"] == "OK"

    listed = cli(node, "guard", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    bans = json.loads(listed.stdout)
    assert [(b["target"], b["rule"], b["kind"]) for b in bans] == [
        (f"{ATTACKER}/32", "ip", "network")
    ]
    assert 0 < bans[0]["ttl"] <= 600
    status, listing = admin(node, "GET", "/api/v1/bruteforce/list")
    assert (status == 200 and listing["result"] == bans) or listing["result"][0]["target"] == bans[
        0
    ]["target"]

    lifted = cli(node, "guard", "unblock", ATTACKER)
    assert lifted.returncode == 0 and "lifted 1" in lifted.stdout
    assert doveadm_auth(node, "alice", "secret", ATTACKER) == 0


def test_the_admin_api_lifts_a_ban_made_through_http(node: Node) -> None:
    for i in range(3):
        assert json_auth(node, "bob", f"guess{i}", ATTACKER) == 403
    assert doveadm_auth(node, "bob", "bobpw", ATTACKER) == 77
    status, result = admin(
        node, "DELETE", "/api/v1/bruteforce/flush", {"ip_address": ATTACKER, "rule_name": "*"}
    )
    assert status == 200 and result["result"]["lifted"] == 1
    assert doveadm_auth(node, "bob", "bobpw", ATTACKER) == 0
    status, listing = admin(node, "GET", "/api/v1/bruteforce/list")
    assert listing["result"] == []


def test_a_stale_password_repeated_on_every_protocol_bans_nobody(node: Node) -> None:
    for _ in range(4):
        assert doveadm_auth(node, "alice", "old-password", ATTACKER) == 77
        assert json_auth(node, "alice", "old-password", ATTACKER) == 403
    assert doveadm_auth(node, "alice", "secret", ATTACKER) == 0
    assert json.loads(cli(node, "guard", "list", "--json").stdout) == []


def test_status_and_cache_flush_over_the_control_socket(node: Node) -> None:
    assert doveadm_auth(node, "bob", "bobpw", OWNER) == 0
    status = cli(node, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["directory"]["state"] == "ok"
    assert data["guard"] == {
        "enabled": True,
        "store": "memory",
        "degraded": False,
        "store_errors": 0,
        "bans": 0,
    }
    assert data["cache"]["entries"] == 1  # bob's SHA512-CRYPT login
    assert data["decisions"]["accepted"] >= 1
    kinds = {line.split()[0] + " " + line.split()[1] for line in data["listeners"]}
    assert {"dovecot client", "dovecot userdb", "dovecot master"} <= kinds
    assert any(line.startswith("http 127.0.0.1:") for line in data["listeners"])
    assert any(line.startswith("control ") for line in data["listeners"])
    flushed = cli(node, "cache", "flush", "bob")
    assert flushed.returncode == 0 and "flushed 1" in flushed.stdout
    assert json.loads(cli(node, "status", "--json").stdout)["cache"]["entries"] == 0


def test_doveadm_cache_flush_empties_the_cache_and_lifts_account_protection(node: Node) -> None:
    assert doveadm_auth(node, "bob", "bobpw", OWNER) == 0
    for i in range(4):  # one guess each from four networks: bob's account is protected
        assert doveadm_auth(node, "bob", f"guess{i}", f"203.0.113.{i + 1}") == 77
    bans = json.loads(cli(node, "guard", "list", "--json").stdout)
    assert [(b["target"], b["kind"]) for b in bans] == [("account:bob", "account")]
    done = subprocess.run(
        [
            "doveadm",
            "-c",
            str(node.root / "min.conf"),
            "auth",
            "cache",
            "flush",
            "-a",
            str(node.root / "run" / "auth-master"),
            "bob",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 cache entries flushed" in done.stdout
    assert json.loads(cli(node, "status", "--json").stdout)["cache"]["entries"] == 0
    assert json.loads(cli(node, "guard", "list", "--json").stdout) == []


def test_the_cli_says_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    config = tmp_path / "mw.toml"
    config.write_text(f'[server]\ncontrol_socket = "{tmp_path}/nothing"\n')
    done = subprocess.run(
        [sys.executable, "-m", "mailwarden", "--config", str(config), "guard", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 75
    assert "not running" in done.stderr


TO_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execvp(sys.argv[2], sys.argv[2:])"
CHALLENGE = b"<1896.697170952@dbc.mtview.ca.us>"


def apop_checkpassword(node: Node, password: bytes, ip: str) -> int:
    """qmail-popup's APOP login through checkpassword: always decided in-process."""
    digest = hashlib.md5(CHALLENGE + password).hexdigest().encode()  # noqa: S324 - APOP is MD5
    r, w = os.pipe()
    os.write(w, b"alice\0" + digest + b"\0" + CHALLENGE + b"\0")
    os.close(w)
    try:
        cmd = [sys.executable, "-m", "mailwarden", "-c", str(node.config), "checkpassword", "true"]
        done = subprocess.run(
            [sys.executable, "-c", TO_FD3, str(r), *cmd],
            env={**os.environ, "TCPREMOTEIP": ip},
            capture_output=True,
            timeout=60,
            check=False,
            pass_fds=(r,),
        )
    finally:
        os.close(r)
    return done.returncode


def pam(node: Node, password: str, ip: str) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "mailwarden", "-c", str(node.config), "pam"],
        input=password.encode() + b"\0",
        env={**os.environ, "PAM_TYPE": "auth", "PAM_USER": "alice", "PAM_RHOST": ip},
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def auth_test(node: Node, password: str, ip: str) -> int:
    return cli(node, "auth", "test", "--rip", ip, "alice", password).returncode


def test_one_shot_commands_are_held_by_the_daemons_bans(node: Node) -> None:
    """checkpassword (APOP, decided in-process), pam and auth test borrow the daemon's
    brute-force state over the control socket, although the store is in memory."""
    for i in range(3):
        assert doveadm_auth(node, "alice", f"guess{i}", ATTACKER) == 77
    assert apop_checkpassword(node, b"secret", ATTACKER) == 1
    assert pam(node, "secret", ATTACKER) == 7  # PAM_AUTH_ERR
    assert auth_test(node, "secret", ATTACKER) == 77
    assert apop_checkpassword(node, b"secret", OWNER) == 0
    assert pam(node, "secret", OWNER) == 0
    assert auth_test(node, "secret", OWNER) == 0


def test_one_shot_failures_count_towards_the_daemons_bans(node: Node) -> None:
    source = "203.0.113.50"
    assert apop_checkpassword(node, b"wrong1", source) == 1
    assert pam(node, "wrong2", source) == 7
    assert auth_test(node, "wrong3", source) == 77
    assert doveadm_auth(node, "alice", "secret", source) == 77  # banned in the daemon
    bans = json.loads(cli(node, "guard", "list", "--json").stdout)
    assert [b["target"] for b in bans] == [f"{source}/32"]
