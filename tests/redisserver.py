"""A real ``redis-server`` on a private port, for tests and bench/ scripts.

:class:`RedisServer` runs ``redis-server`` in the foreground, in a process group
of its own, bound to 127.0.0.1 on a free port, with a private working directory
and no persistence (``--save '' --appendonly no``). :meth:`RedisServer.kill`
stops it abruptly (SIGKILL, like a crash) and :meth:`RedisServer.start` brings
it back on the same port, empty, so tests can take Redis away mid-run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
START_TIMEOUT = 20.0


def have_redis() -> bool:
    return Path(REDIS_SERVER).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    """Whether a Redis server on 127.0.0.1:``port`` replies to PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(16)
            return reply.startswith((b"+PONG", b"-NOAUTH"))  # up, with or without a password
    except OSError:
        return False


class RedisServer:
    """One private redis-server; :meth:`start` / :meth:`kill` as often as needed."""

    def __init__(self, root: Path, port: int | None = None, *, args: tuple[str, ...] = ()) -> None:
        self.root = root
        self.port = port if port is not None else free_port()
        self.args = args  # more options, e.g. ("--requirepass", "pw")
        self._proc: subprocess.Popen[Any] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        assert not self.running, "redis-server is already running"
        log = (self.root / "redis.log").open("ab")
        with log:
            self._proc = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.root),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.port):
            if self._proc.poll() is not None:
                raise AssertionError((self.root / "redis.log").read_text())
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError("redis-server did not answer in time")
            time.sleep(0.02)

    def kill(self) -> None:
        """Stop it at once (SIGKILL): clients see their connections reset."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
                os.killpg(proc.pid, signal.SIGCONT)  # in case it was frozen
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing (a hung Redis)."""
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop it politely (SIGTERM), killing it if it does not go."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self.kill()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A started :class:`RedisServer` in a fresh temp dir; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mailwarden-redis-"))
    server = RedisServer(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
