"""Readiness for systemd (``Type=notify``): READY=1 only once every listener accepts.

systemd's side is played by a real AF_UNIX datagram socket named in
``$NOTIFY_SOCKET``, as systemd sets it up for the service it starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden import sdnotify
from tests.classic.conftest import fill, write_config
from tests.peers.conftest import connectable, private_dir, stop_process
from tests.redisserver import have_redis, running_redis
from tests.test_workers import make_site

WAIT = 60.0  # only reached when a message never comes


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket as systemd's notify socket, and its $NOTIFY_SOCKET value."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(WAIT)
    try:
        yield sock, str(path)
    finally:
        sock.close()


def messages(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_notify_sends_one_datagram_of_lines(
    systemd: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = systemd
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.notify("READY=1", "STATUS=serving")
    assert messages(sock) == {"READY": "1", "STATUS": "serving"}


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"mailwarden-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(WAIT)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert messages(sock) == {"READY": "1"}


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")


def test_a_vanished_notify_socket_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not sdnotify.notify("READY=1")
    assert "cannot notify systemd" in caplog.text


SOCKETS = (
    '[dovecot]\nclient_socket = "run/auth-client"\nlogin_socket = "run/auth-login"\n'
    'master_socket = "run/auth-master"\nuserdb_socket = "run/auth-userdb"\n'
    '[saslauthd]\nenabled = true\nsocket = "run/mux"\n'
    '[server]\ncontrol_socket = "run/control"\n'
)


def test_serve_says_ready_once_every_listener_accepts_then_reloading_and_stopping(
    tmp_path: Path, systemd: tuple[socket.socket, str]
) -> None:
    sock, path = systemd
    cfg = write_config(tmp_path / "mw.toml", SOCKETS)
    asyncio.run(fill(tmp_path / "data" / "mw.db"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailwarden", "-c", str(cfg), "serve"],
        env={**os.environ, "NOTIFY_SOCKET": path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready = messages(sock)
        # Checked right after READY: a peer started then finds every socket.
        names = ("auth-client", "auth-login", "auth-master", "auth-userdb", "mux", "control")
        listening = [str(tmp_path / "run" / name) for name in names]
        assert {p: connectable(p) for p in listening} == dict.fromkeys(listening, True)
        assert ready == {"READY": "1", "MAINPID": str(proc.pid), "STATUS": "serving"}
        proc.send_signal(signal.SIGHUP)
        assert messages(sock) == {"RELOADING": "1"}
        assert messages(sock) == {"READY": "1", "STATUS": "serving"}
        proc.send_signal(signal.SIGTERM)
        assert messages(sock) == {"STOPPING": "1"}
        assert proc.wait(WAIT) == 0
    finally:
        stop_process(proc)


@pytest.mark.skipif(not have_redis(), reason="workers need the Redis store: redis-server")
def test_with_workers_only_the_supervisor_says_ready_once_all_of_them_accept(
    systemd: tuple[socket.socket, str],
) -> None:
    sock, path = systemd
    with running_redis() as redis, private_dir("notify") as root:
        site = make_site(root, store="redis", redis_url=redis.url)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailwarden", "-c", str(site.cfg), "serve", "--workers", "2"],
            env={**os.environ, "NOTIFY_SOCKET": path},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            ready = messages(sock)
            assert ready == {"READY": "1", "MAINPID": str(proc.pid), "STATUS": "2 workers serving"}
            # The supervisor writes the pid file when every worker reported ready.
            assert site.pid_file.read_text().strip() == str(proc.pid)
            assert site.http_login("alice", "secret")["ok"] is True
            proc.send_signal(signal.SIGTERM)
            # No worker said anything: the next message is the supervisor's STOPPING.
            assert messages(sock) == {"STOPPING": "1"}
            assert proc.wait(WAIT) == 0
        finally:
            stop_process(proc)
