"""Socket activation: ``mailwarden serve`` on sockets systemd bound (sd_listen_fds).

systemd's side is ``systemd-socket-activate``, systemd's own tool for this: it
binds the sockets, waits for the first connection, then execs the daemon with
``LISTEN_FDS``/``LISTEN_PID`` set, as a ``.socket`` unit would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailwarden import activation
from tests.classic.conftest import fill, write_config
from tests.peers.conftest import (
    connectable,
    doveadm_auth,
    free_port,
    private_dir,
    stop_process,
    wait_until,
)

ACTIVATE = shutil.which("systemd-socket-activate")


def test_sockets_passed_to_another_process_are_not_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert activation.listen_fds() == []
    # Gone, so that no child process takes them for its own.
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ


def test_without_systemd_there_are_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_PID", raising=False)
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    assert activation.listen_fds() == []


CONFIG = (
    '[server]\npid_file = "mw.pid"\ncontrol_socket = "run/control"\n'
    '[dovecot]\nclient_socket = "run/auth-client"\nmaster_socket = ""\n'
    'userdb_socket = "run/auth-userdb"\nfailure_delay = 0\ntcp_listen = ["127.0.0.1:{port}"]\n'
)


@pytest.fixture
def site() -> Iterator[Path]:
    with private_dir("activation") as root:
        (root / "run").mkdir()
        (root / "min.conf").write_text("ssl = no\n")
        asyncio.run(fill(root / "data" / "mw.db"))
        yield root


def activate(root: Path, cfg: Path, *listen: str) -> subprocess.Popen[bytes]:
    """The daemon as a socket-activated service of ``listen`` (paths or host:port)."""
    args = [arg for address in listen for arg in ("-l", address)]
    daemon = [sys.executable, "-m", "mailwarden", "-c", str(cfg), "serve"]
    return subprocess.Popen(
        [ACTIVATE or "", *args, "-E", "PATH", *daemon],
        stdout=(root / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_serve_takes_the_sockets_systemd_passed_and_binds_the_rest(site: Path) -> None:
    port = free_port()
    cfg = write_config(site / "mw.toml", CONFIG.format(port=port))
    client = str(site / "run" / "auth-client")
    proc = activate(site, cfg, client, f"127.0.0.1:{port}")
    try:
        wait_until(lambda: connectable(client), "systemd-socket-activate")
        # The first connection starts the daemon; it waits in the backlog meanwhile.
        assert doveadm_auth(site / "min.conf", client, "alice", "secret") == 0
        wait_until((site / "mw.pid").exists, "the pid file")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as tcp:
            assert tcp.recv(64).startswith(b"VERSION\t1\t2\n")
        log = (site / "serve.log").read_text()
        assert f"dovecot.client_socket: using the socket systemd passed for {client}" in log
        # Not passed: bound by the daemon, with the configured mode.
        assert os.stat(site / "run" / "auth-userdb").st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (site / "serve.log").read_text()
        # The daemon removes the files it made, never systemd's.
        assert os.path.exists(client)
        assert not (site / "run" / "auth-userdb").exists()
    finally:
        stop_process(proc)


@pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")
def test_a_passed_socket_no_listener_uses_is_a_config_error(site: Path) -> None:
    cfg = write_config(site / "mw.toml", CONFIG.format(port=free_port()))
    stray = str(site / "run" / "stray")
    proc = activate(site, cfg, str(site / "run" / "auth-client"), stray)
    try:
        wait_until(lambda: connectable(stray), "systemd-socket-activate")
        assert proc.wait(30) == 78
        assert "no listener of the configuration uses" in (site / "serve.log").read_text()
    finally:
        stop_process(proc)
