"""What the real-peer tests share: accounts, private directories, servers, processes.

The peers (doveadm, Postfix, Exim, Dovecot's own auth) are real programs started on
loopback addresses and in private directories; nothing outside those directories
is touched. Daemons that drop privileges (Postfix's smtpd, Dovecot's auth process,
Exim) must reach our sockets and their own files, so :func:`private_dir` makes a
directory under the system temp dir that others may traverse but not list
(mode 0711); pytest's own temp dirs are 0700. Every process is started in a
session of its own and its whole process group is killed if it does not stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mailwarden import schemes
from mailwarden.app import build_engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.frontends.dovecot import DovecotServer, start_dovecot
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from tests.helpers import make_config

T = TypeVar("T")

START_TIMEOUT = 20.0


def accounts() -> tuple[Account, ...]:
    """The accounts every peer test knows (Dovecot's passwd-file mirrors them)."""
    return (
        Account(
            uid="alice",
            password="{PLAIN}secret",
            home="/var/mail/alice",
            mail_location="maildir:~/Maildir",
            uid_number=5000,
            gid_number=5000,
        ),
        Account(uid="bob", password=bob_hash()),
        Account(uid="admin", password="{PLAIN}masterpw", master=True),
    )


_BOB: list[str] = []


def bob_hash() -> str:
    """bob's password "bobpw" as SHA512-CRYPT, made once per test run."""
    if not _BOB:
        _BOB.append(schemes.generate(b"bobpw", "SHA512-CRYPT"))
    return _BOB[0]


@contextlib.contextmanager
def private_dir(prefix: str) -> Iterator[Path]:
    """A fresh directory that unprivileged peer daemons can traverse; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"mailwarden-{prefix}-"))
    try:
        path.chmod(0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(ready: Any, what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``ready()`` until it is true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def connectable(address: str | tuple[str, int]) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(address)
        except OSError:
            return False
        return True


def stop_process(proc: subprocess.Popen[Any], *, sig: int = signal.SIGTERM) -> None:
    """Stop a process started with ``start_new_session=True``, killing its group if needed."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of process group ``pgid`` (never our own group)."""
    if pgid <= 1 or pgid == os.getpgid(0):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


Address = str | tuple[str, int]


@contextlib.contextmanager
def running_serve(
    config: Path, *, ready: tuple[Address, ...], open_files: int | None = None
) -> Iterator[subprocess.Popen[Any]]:
    """``mailwarden serve`` with ``config`` until the block ends (log: ``serve.log`` beside
    it), in a session of its own; ready once every address in ``ready`` accepts.
    ``open_files``: its open file limit (soft and hard), as systemd's LimitNOFILE sets it."""
    log_path = config.parent / "serve.log"

    def limit_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailwarden", "--config", str(config), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=limit_files if open_files is not None else None,  # noqa: PLW1509
        )
    try:
        wait_until(
            lambda: proc.poll() is not None or all(connectable(a) for a in ready),
            "mailwarden serve",
        )
        assert proc.poll() is None, log_path.read_text()
        yield proc
    finally:
        stop_process(proc)


def doveadm_auth(conf: Path, socket_path: str, user: str, password: str, rip: str = "") -> int:
    """``doveadm auth test`` against a client socket (``conf``: a minimal doveadm
    config); its exit code: 0 ok, 77 refused."""
    extra = ["-x", f"rip={rip}"] if rip else []
    done = subprocess.run(
        ["doveadm", "-c", str(conf), "auth", "test", "-a", socket_path, *extra, user, password],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode


DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


@contextlib.contextmanager
def running_dovecot(
    conf: Path, root: Path, *, ready: str | tuple[str, int] | None = None
) -> Iterator[subprocess.Popen[Any]]:
    """Dovecot in the foreground with config ``conf`` (its base_dir ``root/run``).

    Ready once ``ready`` accepts connections (default: its auth-userdb socket); the
    log at ``root/dovecot.log`` is shown if it dies at start. Stopped, with its
    whole process group, on exit.
    """
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        address = ready if ready is not None else str(root / "run" / "auth-userdb")
        wait_until(lambda: proc.poll() is not None or connectable(address), "dovecot")
        assert proc.poll() is None, (root / "dovecot.log").read_text()
        yield proc
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- in-process server


class ThreadedFrontends:
    """Dovecot front ends on an event loop in a thread of their own.

    For tests that block (smtplib, subprocess): the front end keeps serving while
    the test waits. Each server gets a real Engine over a MemoryDirectory holding
    :func:`accounts`, or over a closed SQLiteDirectory (``directory_down``) whose
    every read fails as an unreachable backend does.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dovecot-frontends")
        self._thread.start()
        self._servers: list[DovecotServer] = []
        self._hashers: list[Hasher] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    def start(self, root: Path, *, directory_down: bool = False, **dovecot: Any) -> Path:
        """Serve the client protocol on ``root/auth-client``; returns that path."""
        root.mkdir(parents=True, exist_ok=True)
        self.run(self._start(root, directory_down, dovecot))
        return root / "auth-client"

    async def _start(self, root: Path, directory_down: bool, dovecot: dict[str, Any]) -> None:
        settings: dict[str, Any] = {
            "client_socket": "auth-client",
            "login_socket": "",
            "master_socket": "",
            "userdb_socket": "",
            "failure_delay": 0.0,
            "mechanisms": ("PLAIN", "LOGIN", "CRAM-MD5"),
        }
        settings.update(dovecot)
        # No rehash on login: the {PLAIN} accounts must keep serving CRAM-MD5.
        config = make_config(
            passwords={"scheme": "SHA512-CRYPT", "rehash": "never"}, dovecot=settings
        )
        directory: MemoryDirectory | SQLiteDirectory
        if directory_down:
            directory = await SQLiteDirectory.open(root / "down.db", create=True, readers=1)
            await directory.close()
        else:
            directory = MemoryDirectory()
            for account in accounts():
                await directory.create(account)
        hasher = Hasher(workers=2)
        self._hashers.append(hasher)
        engine = build_engine(config, directory=directory, hasher=hasher)
        self._servers.append(
            await start_dovecot(engine, config.dovecot, resolve=lambda p: root / p)
        )

    def close(self) -> None:
        for server in self._servers:
            self.run(server.close())
        for hasher in self._hashers:
            hasher.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
