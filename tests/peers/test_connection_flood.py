"""A flood of idle connections on one socket of a running ``mailwarden serve``.

The daemon runs under a small open file limit, as a systemd unit does with
``LimitNOFILE``. More idle connections than that limit arrive on the Dovecot client
socket: the socket admits ``dovecot.max_connections`` of them and closes the rest
at once, so the HTTP API and the saslauthd socket still answer (before the caps,
the flood used every file descriptor and every front end stopped accepting).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailwarden.protocols import saslauthd as sasl_proto
from tests.peers.configs import daemon_toml
from tests.peers.conftest import free_port, private_dir, running_serve
from tests.peers.test_doveadm import populate

pytestmark = pytest.mark.peer

OPEN_FILES = 300
FLOOD = 400  # more than the daemon may open
DOVECOT_CAP = 60


def daemon_config(port: int, cap: int) -> str:
    return daemon_toml(
        hashing={"workers": 1},
        dovecot={"max_connections": cap},
        saslauthd={
            "enabled": True,
            "socket": "run/mux",
            "failure_delay": 0,
            "max_connections": 20,
        },
        http={"enabled": True, "listen": [f"127.0.0.1:{port}"], "max_connections": 20},
    )


@dataclass(frozen=True)
class Node:
    root: Path
    port: int


@pytest.fixture
def node() -> Iterator[Node]:
    with private_dir("flood") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        port = free_port()
        config = root / "mailwarden.toml"
        config.write_text(daemon_config(port, DOVECOT_CAP))
        ready = (str(root / "run" / "control"), ("127.0.0.1", port))
        with running_serve(config, ready=ready, open_files=OPEN_FILES):
            yield Node(root, port)


def connect(sock: socket.socket, path: str) -> None:
    """Connect, waiting while the listen backlog is full (a UNIX socket then says EAGAIN)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            assert time.monotonic() < deadline, "the server stopped accepting"
            time.sleep(0.01)


def answered(sock: socket.socket) -> bool:
    """Whether the server sent its handshake (True) or closed the connection (False)."""
    try:
        return bool(sock.recv(4096))
    except ConnectionResetError:
        return False


def test_a_flood_on_one_socket_leaves_the_other_front_ends_answering(node: Node) -> None:
    with contextlib.ExitStack() as stack:
        flood = []
        for _ in range(FLOOD):
            sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.settimeout(20)
            connect(sock, str(node.root / "run" / "auth-client"))
            flood.append(sock)
        assert sum(answered(sock) for sock in flood) == DOVECOT_CAP

        # While the admitted ones stay open, the other front ends answer.
        url = f"http://127.0.0.1:{node.port}/ping"
        with urllib.request.urlopen(url, timeout=20) as resp:
            assert resp.status == 200
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sasl:
            sasl.settimeout(20)
            sasl.connect(str(node.root / "run" / "mux"))
            sasl.sendall(sasl_proto.encode_request(b"alice", b"secret", b"imap", b""))
            assert sasl.recv(4096).endswith(b"OK")
    assert "open file limit" in (node.root / "serve.log").read_text()
