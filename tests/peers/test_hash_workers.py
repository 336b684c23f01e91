"""The hashing worker processes of a running ``mailwarden serve``, seen from outside:
doveadm logs in with a SHA512-CRYPT password, a worker is killed and replaced, and
none is left behind when the daemon stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.configs import Table, daemon_toml
from tests.peers.conftest import doveadm_auth, private_dir, running_serve, wait_until
from tests.peers.test_doveadm import populate

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(shutil.which("doveadm") is None, reason="doveadm is not installed"),
]

SECTIONS: dict[str, Table] = {"hashing": {"workers": 2}, "guard": {"allow_networks": []}}
CONFIG = daemon_toml(**SECTIONS)


def hash_workers(pid: int) -> list[int]:
    """The daemon's children that are hashing workers."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"mailwarden.hashing.worker" in cmdline:
                found.append(int(child))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass(frozen=True)
class Daemon:
    root: Path
    proc: subprocess.Popen[Any]

    def login(self, user: str, password: str) -> int:
        """doveadm's exit code for ``user``/``password``: 0 ok, 77 refused."""
        socket_path = str(self.root / "run" / "auth-client")
        return doveadm_auth(self.root / "min.conf", socket_path, user, password)


@contextlib.contextmanager
def served(config: str) -> Iterator[Daemon]:
    """``mailwarden serve`` with ``config`` and the peer tests' accounts."""
    with private_dir("hashworkers") as root:
        asyncio.run(populate(root / "mailwarden.db"))
        (root / "mailwarden.toml").write_text(config)
        (root / "min.conf").write_text("ssl = no\n")
        ready = (str(root / "run" / "control"),)
        with running_serve(root / "mailwarden.toml", ready=ready) as proc:
            yield Daemon(root, proc)


def test_a_killed_hash_worker_is_replaced_and_none_outlives_the_daemon() -> None:
    with served(CONFIG) as daemon:
        # Started with the daemon: new passwords get an expensive scheme (the
        # default policy), so nearly every login will need them.
        workers = hash_workers(daemon.proc.pid)
        assert len(workers) == 2
        assert daemon.login("bob", "bobpw") == 0
        os.kill(workers[0], signal.SIGKILL)

        def replaced() -> bool:
            now = hash_workers(daemon.proc.pid)
            return len(now) == 2 and workers[0] not in now

        wait_until(replaced, "a new hashing worker", timeout=10)
        now = hash_workers(daemon.proc.pid)
        for _ in range(3):  # both workers answer, the new one included
            assert daemon.login("bob", "bobpw") == 0
            assert daemon.login("bob", "wrong") == 77
        assert "hashing worker exited" in (daemon.root / "serve.log").read_text()
    for pid in now:
        assert not alive(pid)


def test_with_a_cheap_policy_workers_start_with_the_first_expensive_hash() -> None:
    with served(daemon_toml(**SECTIONS, passwords={"scheme": "PLAIN"})) as daemon:
        assert daemon.login("alice", "secret") == 0
        assert hash_workers(daemon.proc.pid) == []  # alice's password is {PLAIN}
        assert daemon.login("bob", "bobpw") == 0
        assert len(hash_workers(daemon.proc.pid)) == 2


def test_hash_workers_end_when_the_daemon_is_killed() -> None:
    """SIGKILL gives the daemon no chance to stop them: their stdin ends instead."""
    with served(CONFIG) as daemon:
        assert daemon.login("bob", "bobpw") == 0
        workers = hash_workers(daemon.proc.pid)
        assert len(workers) == 2
        daemon.proc.kill()
        daemon.proc.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to end", timeout=10)
