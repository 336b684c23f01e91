"""``mailwarden serve --workers N``: one supervisor, N workers on the same sockets.

Real processes throughout: the daemon runs as ``python -m mailwarden``, the guard's
state lives in a real ``redis-server`` on a private port, logins go through
``doveadm auth test`` (the Dovecot client socket) and HTTP, and ``mailwarden status``
over the control socket tells which worker answered.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.conftest import free_port, private_dir, stop_process, wait_until

MAILWARDEN = [sys.executable, "-m", "mailwarden"]
REDIS = shutil.which("redis-server")
NO_DISK = ("--save", "", "--appendonly", "no")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence; stopped afterwards."""
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    if importlib.util.find_spec("mailwarden.guard.stores.redis") is None:
        pytest.skip("the Redis guard store is not part of this build yet")
    with private_dir("redis") as root:
        port = free_port()
        proc = subprocess.Popen(
            [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root), *NO_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(lambda: _redis_ping(port), "redis-server")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_process(proc)


def _redis_ping(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@dataclass
class Site:
    root: Path
    cfg: Path
    http_port: int

    @property
    def pid_file(self) -> Path:
        return self.root / "data" / "mw.pid"

    @property
    def sockets(self) -> list[Path]:
        return [self.root / "run" / "auth-client", self.root / "run" / "control"]

    def mailwarden(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*MAILWARDEN, "-c", str(self.cfg), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status_pid(self) -> int:
        done = self.mailwarden("status", "--json")
        assert done.returncode == 0, done.stderr
        pid: int = json.loads(done.stdout)["pid"]
        return pid

    def doveadm_login(self, user: str, password: str) -> subprocess.CompletedProcess[str]:
        conf = self.root / "doveadm.conf"
        return subprocess.run(
            [
                "doveadm",
                "-c",
                str(conf),
                "auth",
                "test",
                "-a",
                str(self.sockets[0]),
                user,
                password,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def http_login(self, user: str, password: str) -> dict[str, Any]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/v1/auth/json",
            data=json.dumps({"username": user, "password": password}).encode(),
            method="POST",
            headers={
                "Authorization": "Basic " + base64.b64encode(b"u:p").decode(),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            result: dict[str, Any] = json.loads(resp.read())
            return result


def make_site(root: Path, *, store: str, redis_url: str = "") -> Site:
    port = free_port()
    cfg = root / "mw.toml"
    guard = f'[guard]\nstore = "{store}"\n'
    if redis_url:
        guard += f'[guard.redis]\nurl = "{redis_url}"\n'
    cfg.write_text(
        '[directory]\npath = "data/mw.db"\n'
        '[dovecot]\nclient_socket = "run/auth-client"\nmaster_socket = ""\nuserdb_socket = ""\n'
        '[server]\npid_file = "data/mw.pid"\ncontrol_socket = "run/control"\n'
        "shutdown_timeout = 5.0\n"
        f'[http]\nenabled = true\nlisten = ["127.0.0.1:{port}"]\n'
        'auth_username = "u"\nauth_password = "p"\n' + guard
    )
    (root / "doveadm.conf").write_text("ssl = no\n")
    site = Site(root=root, cfg=cfg, http_port=port)
    assert site.mailwarden("init").returncode == 0
    added = site.mailwarden("user", "add", "alice", "--password-stdin", stdin="secret\n")
    assert added.returncode == 0, added.stderr
    return site


@contextlib.contextmanager
def serving(site: Site, *args: str) -> Iterator[subprocess.Popen[str]]:
    log = (site.root / "serve.log").open("w")
    proc = subprocess.Popen(
        [*MAILWARDEN, "-c", str(site.cfg), "serve", *args],
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: site.pid_file.exists() or proc.poll() is not None, "the pid file", timeout=30
        )
        assert proc.poll() is None, (site.root / "serve.log").read_text()
        yield proc
    finally:
        stop_process(proc)
        log.close()


def worker_pids(site: Site) -> set[int]:
    """The pids that logged that they serve (lines look like ``... [PID] INFO ...``)."""
    pids = set()
    for line in (site.root / "serve.log").read_text().splitlines():
        if "serving: directory=" in line:
            pids.add(int(line.split("[", 1)[1].split("]", 1)[0]))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("how", [["--workers", "2"], []], ids=["option", "config"])
def test_two_workers_with_the_memory_store_refuse_to_start_naming_guard_store(
    how: list[str],
) -> None:
    with private_dir("workers") as root:
        site = make_site(root, store="memory")
        if not how:
            site.cfg.write_text(
                site.cfg.read_text().replace("[server]\n", "[server]\nworkers = 2\n")
            )
        done = subprocess.run(
            [*MAILWARDEN, "-c", str(site.cfg), "serve", *how],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 78, done.stderr
        assert "guard.store" in done.stderr and "server.workers" in done.stderr
        assert not any(path.exists() for path in site.sockets)
        assert not site.pid_file.exists()


def test_workers_below_zero_are_a_config_error() -> None:
    with private_dir("workers") as root:
        site = make_site(root, store="memory")
        site.cfg.write_text(site.cfg.read_text().replace("[server]\n", "[server]\nworkers = -1\n"))
        done = site.mailwarden("check-config")
        assert done.returncode == 78
        assert "server.workers: expected an integer >= 0" in done.stderr


@pytest.fixture
def two_workers(redis_url: str) -> Iterator[tuple[Site, subprocess.Popen[str]]]:
    """``serve --workers 2`` with the Redis store; yields the site and the supervisor."""
    if shutil.which("doveadm") is None:
        pytest.skip("doveadm is not installed")
    with private_dir("workers") as root:
        site = make_site(root, store="redis", redis_url=redis_url)
        with serving(site, "--workers", "2") as proc:
            yield site, proc


def test_two_workers_share_the_sockets_and_both_answer(
    two_workers: tuple[Site, subprocess.Popen[str]],
) -> None:
    site, proc = two_workers
    assert site.pid_file.read_text().strip() == str(proc.pid)
    workers = worker_pids(site)
    assert len(workers) == 2 and proc.pid not in workers
    assert all(path.is_socket() for path in site.sockets)

    login = site.doveadm_login("alice", "secret")
    assert login.returncode == 0 and "auth succeeded" in login.stdout, login.stderr
    denied = site.doveadm_login("alice", "wrong")
    assert denied.returncode != 0
    assert site.http_login("alice", "secret")["ok"] is True

    # The kernel hands connections to either worker: both answer in the end.
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while seen != workers and time.monotonic() < deadline:
        seen.add(site.status_pid())
    assert seen == workers


def test_a_killed_worker_is_replaced_and_service_goes_on(
    two_workers: tuple[Site, subprocess.Popen[str]],
) -> None:
    site, proc = two_workers
    first = worker_pids(site)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(site) - first) == 1, "a replacement worker")
    wait_until(lambda: not alive(victim), "the supervisor to reap the killed worker")
    assert proc.poll() is None
    replacement = (worker_pids(site) - first).pop()
    login = site.doveadm_login("alice", "secret")
    assert login.returncode == 0, login.stderr
    assert site.http_login("alice", "secret")["ok"] is True
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while replacement not in seen and time.monotonic() < deadline:
        seen.add(site.status_pid())
    assert replacement in seen and victim not in seen
    assert "died (signal 9)" in (site.root / "serve.log").read_text()


def test_sigterm_stops_every_worker_and_removes_sockets_and_pid_file(
    two_workers: tuple[Site, subprocess.Popen[str]],
) -> None:
    site, proc = two_workers
    workers = worker_pids(site)
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    for pid in workers:
        assert not alive(pid), f"worker {pid} still running"
    assert not site.pid_file.exists()
    assert not any(path.exists() for path in site.sockets)
    log = (site.root / "serve.log").read_text()
    assert log.count("mailwarden: stopped") == 2


def test_workers_that_keep_dying_young_make_the_supervisor_give_up_and_clean_up(
    two_workers: tuple[Site, subprocess.Popen[str]],
) -> None:
    site, proc = two_workers
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in worker_pids(site) - killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    assert proc.wait(30) == 1
    assert len(killed) >= 5
    assert "giving up" in (site.root / "serve.log").read_text()
    assert not any(alive(pid) for pid in killed)
    assert not site.pid_file.exists()
    assert not any(path.exists() for path in site.sockets)


def test_check_config_refuses_several_workers_without_redis() -> None:
    with private_dir("workers") as root:
        site = make_site(root, store="memory")
        site.cfg.write_text(site.cfg.read_text().replace("[server]\n", "[server]\nworkers = 0\n"))
        done = site.mailwarden("check-config")
        assert done.returncode == 78
        assert "server.workers" in done.stderr and 'guard.store = "redis"' in done.stderr
