"""A real ``redis-server`` on a private port, for tests and bench/ scripts.

:class:`RedisServer` runs ``redis-server`` in the foreground, in a process group
of its own, bound to 127.0.0.1 on a free port, with a private working directory
and no persistence (``--save '' --appendonly no``). :meth:`RedisServer.kill`
stops it abruptly (SIGKILL, like a crash) and :meth:`RedisServer.start` brings
it back on the same port, empty, so tests can take Redis away mid-run.

:class:`RedisSentinel` is the same process in Sentinel mode, watching one master;
:func:`running_failover_group` starts a primary, a replica of it and three Sentinels
(quorum 2, a master is down after half a second), each in a directory of its own,
for the failover tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import redis

T = TypeVar("T")

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

    def command(self) -> list[str]:
        """The command line (a subclass may put a config file first)."""
        return [REDIS_SERVER]

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        assert not self.running, "redis-server is already running"
        log = (self.root / "redis.log").open("ab")
        with log:
            self._proc = subprocess.Popen(
                [
                    *self.command(),
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


#: The master name the Sentinels of the failover tests watch.
SENTINEL_MASTER = "mw"


class RedisSentinel(RedisServer):
    """A private Sentinel (``redis-server CONFIG --sentinel``) watching the master
    :data:`SENTINEL_MASTER` at 127.0.0.1:``master_port``, agreed on by ``quorum``
    Sentinels; it writes what it learns into its config file under ``root``."""

    def __init__(
        self,
        root: Path,
        master_port: int,
        *,
        quorum: int = 1,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 3000,
        args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(root, args=args)
        self.master_port = master_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def command(self) -> list[str]:
        conf = self.root / "sentinel.conf"
        if not conf.exists():  # a restart keeps what the Sentinel learnt
            name = SENTINEL_MASTER
            conf.write_text(
                f"sentinel monitor {name} 127.0.0.1 {self.master_port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
            )
        return [REDIS_SERVER, str(conf), "--sentinel"]


@dataclasses.dataclass(frozen=True)
class FailoverGroup:
    """A primary, its replica and the Sentinels watching them (all started)."""

    primary: RedisServer
    replica: RedisServer
    sentinels: tuple[RedisSentinel, ...]

    @property
    def addresses(self) -> tuple[str, ...]:
        """The Sentinels as ``HOST:PORT`` (``guard.redis.sentinels``)."""
        return tuple(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers reports it."""
        for sentinel in self.sentinels:
            reply = ask(
                sentinel.port, lambda c: c.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
            )
            if reply:
                return int(reply[1])
        return None


def ask(port: int, question: Callable[[Any], T]) -> T | None:
    """``question`` asked of a redis-py client of the Redis (or Sentinel) on
    127.0.0.1:``port`` (decoded replies); None when it does not answer."""
    client = redis.Redis(port=port, socket_timeout=2.0, decode_responses=True)
    try:
        return question(client)
    except redis.RedisError:
        return None
    finally:
        client.close()


@contextlib.contextmanager
def running_failover_group(root: Path, *, sentinels: int = 3) -> Iterator[FailoverGroup]:
    """A primary, one replica (``replicaof``) and ``sentinels`` Sentinels (quorum: a
    majority) on free loopback ports, each in its own directory under ``root``;
    yielded once the replica is in sync and every Sentinel knows the replica and the
    other Sentinels (so a failover can happen); every process stopped afterwards."""
    servers: list[RedisServer] = []
    try:
        primary = RedisServer(_mkdir(root / "primary"))
        servers.append(primary)
        primary.start()
        replica = RedisServer(
            _mkdir(root / "replica"), args=("--replicaof", "127.0.0.1", str(primary.port))
        )
        servers.append(replica)
        replica.start()
        quorum = sentinels // 2 + 1
        group = FailoverGroup(
            primary,
            replica,
            tuple(
                RedisSentinel(_mkdir(root / f"sentinel{i}"), primary.port, quorum=quorum)
                for i in range(sentinels)
            ),
        )
        for sentinel in group.sentinels:
            servers.append(sentinel)
            sentinel.start()
        deadline = time.monotonic() + 30.0
        while not _settled(group):
            assert time.monotonic() < deadline, "the Sentinels did not find each other"
            time.sleep(0.1)
        yield group
    finally:
        for server in reversed(servers):
            server.stop()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _settled(group: FailoverGroup) -> bool:
    info = ask(group.replica.port, lambda c: c.info("replication"))
    if not info or info.get("master_link_status") != "up":
        return False
    others = len(group.sentinels) - 1
    for sentinel in group.sentinels:
        state = ask(sentinel.port, lambda c: c.sentinel_master(SENTINEL_MASTER))
        if not state:
            return False
        if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < others:
            return False
    return True
