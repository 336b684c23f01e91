"""The hashing worker processes of a running ``mailwarden serve``, seen from outside:
doveadm logs in with a SHA512-CRYPT password, a worker is killed and replaced, and
none is left behind when the daemon stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.peers.conftest import doveadm_auth, private_dir, running_serve
from tests.peers.test_doveadm import populate

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]

CONFIG = """\
[directory]
path = "mailwarden.db"

[passwords]
rehash = "never"

[server]
control_socket = "run/control"

[dovecot]
client_socket = "run/auth-client"
master_socket = "run/auth-master"
userdb_socket = "run/auth-userdb"
failure_delay = 0

[hashing]
workers = 2

[guard]
allow_networks = []
"""


def hash_workers(pid: int) -> list[int]:
    """The daemon's children that are hashing workers."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"mailwarden.hashworker" in cmdline:
                found.append(int(child))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_hash_worker_is_replaced_and_none_outlives_the_daemon() -> None:
    with private_dir("hashworkers") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        config = root / "mailwarden.toml"
        config.write_text(CONFIG)
        (root / "min.conf").write_text("ssl = no\n")
        socket_path = str(root / "run" / "auth-client")
        with running_serve(config, ready=(str(root / "run" / "control"),)) as serve:
            # Started with the daemon: new passwords get an expensive scheme (the
            # default policy), so nearly every login will need them.
            workers = hash_workers(serve.pid)
            assert len(workers) == 2
            assert doveadm_auth(root / "min.conf", socket_path, "bob", "bobpw") == 0
            os.kill(workers[0], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                now = hash_workers(serve.pid)
                if len(now) == 2 and workers[0] not in now:
                    break
                time.sleep(0.1)
            assert len(now) == 2 and workers[0] not in now
            for _ in range(3):  # both workers answer, the new one included
                assert doveadm_auth(root / "min.conf", socket_path, "bob", "bobpw") == 0
                assert doveadm_auth(root / "min.conf", socket_path, "bob", "wrong") == 77
            log = (root / "serve.log").read_text()
            assert "hashing worker exited" in log
        for pid in now:
            assert not alive(pid)


def test_with_a_cheap_policy_workers_start_with_the_first_expensive_hash() -> None:
    with private_dir("hashworkers") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        config = root / "mailwarden.toml"
        config.write_text(CONFIG.replace('rehash = "never"', 'rehash = "never"\nscheme = "PLAIN"'))
        (root / "min.conf").write_text("ssl = no\n")
        socket_path = str(root / "run" / "auth-client")
        with running_serve(config, ready=(str(root / "run" / "control"),)) as serve:
            assert doveadm_auth(root / "min.conf", socket_path, "alice", "secret") == 0
            assert hash_workers(serve.pid) == []  # alice's password is {PLAIN}
            assert doveadm_auth(root / "min.conf", socket_path, "bob", "bobpw") == 0
            assert len(hash_workers(serve.pid)) == 2


def test_hash_workers_end_when_the_daemon_is_killed() -> None:
    """SIGKILL gives the daemon no chance to stop them: their stdin ends instead."""
    with private_dir("hashworkers") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        config = root / "mailwarden.toml"
        config.write_text(CONFIG)
        (root / "min.conf").write_text("ssl = no\n")
        socket_path = str(root / "run" / "auth-client")
        with running_serve(config, ready=(str(root / "run" / "control"),)) as serve:
            assert doveadm_auth(root / "min.conf", socket_path, "bob", "bobpw") == 0
            workers = hash_workers(serve.pid)
            assert len(workers) == 2
            serve.kill()
            serve.wait(10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(alive(pid) for pid in workers):
                time.sleep(0.1)
            assert not any(alive(pid) for pid in workers)
