"""SIGHUP reloads without dropping anything; SIGTERM drains requests in flight."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers.configs import daemon_toml
from tests.peers.conftest import connectable, free_port, private_dir, stop_process, wait_until
from tests.peers.test_doveadm import populate


def daemon_config(*, port: int, password: str, delay: float, shutdown: float) -> str:
    return daemon_toml(
        server={"pid_file": "mw.pid", "shutdown_timeout": shutdown},
        dovecot={"failure_delay": delay},
        saslauthd={"enabled": True, "socket": "run/mux", "failure_delay": 0},
        http={
            "enabled": True,
            "listen": [f"127.0.0.1:{port}"],
            "auth_username": "dovecot",
            "auth_password": password,
        },
    )


@dataclass
class Node:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    def write(self, *, password: str = "one", delay: float = 0, shutdown: float = 10) -> None:
        text = daemon_config(port=self.port, password=password, delay=delay, shutdown=shutdown)
        (self.root / "mw.toml").write_text(text)

    def hup(self) -> None:
        os.kill(self.proc.pid, signal.SIGHUP)

    def log(self) -> str:
        return (self.root / "serve.log").read_text()


@pytest.fixture
def node() -> Iterator[Node]:
    with private_dir("reload") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        n = Node(root, free_port(), None)  # type: ignore[arg-type]
        n.write()
        with (root / "serve.log").open("wb") as log:
            n.proc = subprocess.Popen(
                [sys.executable, "-m", "mailwarden", "-c", str(root / "mw.toml"), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_until(lambda: n.proc.poll() is not None or (root / "mw.pid").exists(), "serve")
            assert n.proc.poll() is None, n.log()
            yield n
        finally:
            stop_process(n.proc)


def http_auth(node: Node, password: str) -> int:
    creds = base64.b64encode(f"dovecot:{password}".encode()).decode()
    body = json.dumps({"username": "alice", "password": "secret", "service": "imap"}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{node.port}/api/v1/auth/json",
        data=body,
        headers={"Authorization": "Basic " + creds, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


async def pipelined_load(socket_path: str, seconds: float, conns: int = 4) -> tuple[int, int]:
    """AUTH PLAIN requests kept in flight for ``seconds``: (sent, answered)."""
    sent = answered = 0
    resp = base64.b64encode(b"\0alice\0secret").decode()

    async def one(n: int) -> None:
        nonlocal sent, answered
        reader, writer = await asyncio.open_unix_connection(socket_path)
        writer.write(b"VERSION\t1\t2\nCPID\t%d\n" % (4000 + n))
        while (await asyncio.wait_for(reader.readline(), 10)).strip() != b"DONE":
            pass
        deadline = time.monotonic() + seconds
        next_id = 0
        pending = 0
        while time.monotonic() < deadline or pending:
            while pending < 8 and time.monotonic() < deadline:
                next_id += 1
                writer.write(f"AUTH\t{next_id}\tPLAIN\tservice=imap\tresp={resp}\n".encode())
                sent += 1
                pending += 1
            line = await asyncio.wait_for(reader.readline(), 10)
            assert line.startswith(b"OK\t"), line
            answered += 1
            pending -= 1
        writer.close()

    await asyncio.gather(*(one(n) for n in range(conns)))
    return sent, answered


def test_sighup_during_load_drops_nothing_and_applies_the_new_config(node: Node) -> None:
    assert http_auth(node, "one") == 200
    node.write(password="two")

    async def load_and_hup() -> tuple[int, int]:
        task = asyncio.ensure_future(pipelined_load(str(node.root / "run" / "auth-client"), 3.0))
        for _ in range(5):
            await asyncio.sleep(0.4)
            node.hup()
        return await task

    sent, answered = asyncio.run(load_and_hup())
    assert sent > 100 and answered == sent
    wait_until(lambda: "reloaded" in node.log(), "reload")
    assert http_auth(node, "two") == 200
    assert http_auth(node, "one") == 401
    assert node.proc.poll() is None


def test_a_broken_config_keeps_the_running_one(node: Node) -> None:
    (node.root / "mw.toml").write_text("[http\nthis is not toml")
    node.hup()
    wait_until(lambda: "keeping the running configuration" in node.log(), "reload error")
    assert http_auth(node, "one") == 200
    assert node.proc.poll() is None


def saslauthd_ok(path: str) -> bool:
    import socket

    fields = (b"alice", b"secret", b"imap", b"")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"".join(len(f).to_bytes(2, "big") + f for f in fields))
        return sock.recv(100)[2:4] == b"OK"


def test_moved_listeners_reopen_and_the_others_stay_open(node: Node) -> None:
    userdb = node.root / "run" / "auth-userdb"
    inode = userdb.stat().st_ino
    other = free_port()
    text = (node.root / "mw.toml").read_text().replace(str(node.port), str(other))
    text = text.replace('client_socket = "run/auth-client"', 'client_socket = "run/moved-client"')
    text = text.replace('socket = "run/mux"', 'socket = "run/moved-mux"')
    (node.root / "mw.toml").write_text(text)
    node.hup()
    wait_until(lambda: "reloaded" in node.log(), "reload")
    old_port, node.port = node.port, other
    assert http_auth(node, "one") == 200
    assert not connectable(("127.0.0.1", old_port))
    assert connectable(str(node.root / "run" / "moved-client"))
    assert not (node.root / "run" / "auth-client").exists()
    assert saslauthd_ok(str(node.root / "run" / "moved-mux"))
    assert not (node.root / "run" / "mux").exists()
    # The userdb socket did not change: the same socket, never closed.
    assert userdb.stat().st_ino == inode and connectable(str(userdb))
    assert "restart to apply" not in node.log()


def test_a_restart_only_change_is_logged_and_kept(node: Node) -> None:
    text = (node.root / "mw.toml").read_text().replace('path = "mailwarden.db"', 'path = "x.db"')
    (node.root / "mw.toml").write_text(text)
    node.hup()
    wait_until(lambda: "directory changed; restart to apply" in node.log(), "warning")
    assert http_auth(node, "one") == 200


def test_sigterm_answers_requests_in_flight_before_exiting(node: Node) -> None:
    # Wrong passwords with a 1.5 s failure delay: they are in flight when SIGTERM comes.
    node.write(delay=1.5)
    node.hup()
    wait_until(lambda: "reloaded" in node.log(), "reload")

    async def slow_requests() -> list[bytes]:
        reader, writer = await asyncio.open_unix_connection(str(node.root / "run" / "auth-client"))
        writer.write(b"VERSION\t1\t2\nCPID\t77\n")
        while (await asyncio.wait_for(reader.readline(), 10)).strip() != b"DONE":
            pass
        wrong = base64.b64encode(b"\0alice\0wrong").decode()
        for i in range(1, 4):
            writer.write(f"AUTH\t{i}\tPLAIN\tservice=imap\tresp={wrong}\n".encode())
        await writer.drain()
        await asyncio.sleep(0.3)
        node.proc.send_signal(signal.SIGTERM)
        replies = [await asyncio.wait_for(reader.readline(), 10) for _ in range(3)]
        writer.close()
        return replies

    replies = asyncio.run(slow_requests())
    assert all(r.startswith(b"FAIL\t") for r in replies), replies
    assert node.proc.wait(15) == 0


MAILWARDEN = (sys.executable, "-m", "mailwarden")


def test_a_reload_keeps_the_o_overrides_and_reads_secret_files_again() -> None:
    """``serve -o http.auth_password_file=pw``: after SIGHUP the override still holds
    (else the file's empty auth_password would refuse everyone) and the file is read
    again (a rotated secret applies)."""
    with private_dir("reload-o") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        node = Node(root, free_port(), None)  # type: ignore[arg-type]
        node.write(password="")
        (root / "pw").write_text("one\n")
        with (root / "serve.log").open("wb") as log:
            node.proc = subprocess.Popen(
                [
                    *MAILWARDEN,
                    "-c",
                    str(root / "mw.toml"),
                    "serve",
                    "-o",
                    "http.auth_password_file=pw",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_until(lambda: node.proc.poll() is not None or (root / "mw.pid").exists(), "serve")
            wait_until(lambda: connectable(("127.0.0.1", node.port)), "http")
            assert http_auth(node, "one") == 200, node.log()
            (root / "pw").write_text("two\n")
            node.hup()
            wait_until(lambda: "reloaded" in node.log(), "reload")
            assert http_auth(node, "two") == 200, node.log()
            assert http_auth(node, "one") == 401
        finally:
            stop_process(node.proc)
