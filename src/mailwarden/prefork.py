"""``mailwarden serve --workers N``: a supervisor that binds once and forks N workers.

Why pre-fork with inherited sockets: parsing requests and hashing passwords is
CPU work, and one Python process uses one core for it (the hashing pool's
threads only help while a C hash releases the GIL). Several processes accepting
on the *same* listening sockets spread connections over the cores without a
proxy in front, and keep every socket path and port exactly as configured.

The supervisor (this module, the parent process) binds every listener with the
front ends' own code (permissions, owner, stale-socket rules), then forks. It
never runs an event loop nor starts a thread, so ``fork`` copies a
single-threaded process: the directory, the hashing pool and the guard's Redis
connection are created in each worker after the fork, never shared. It then
only supervises:

* the pid file (``server.pid_file``, holding the supervisor's pid) appears, and
  systemd is told ``READY=1`` (:mod:`mailwarden.sdnotify`), once every worker
  reported over a pipe that all its listeners accept;
* SIGHUP is forwarded to the workers, each of which reloads its config;
* SIGTERM/SIGINT are forwarded to the workers, which drain as a single process
  does; after ``server.shutdown_timeout`` the rest are killed (SIGKILL);
* a worker that dies unexpectedly is replaced, after a back-off when workers
  keep dying young; after :data:`MAX_QUICK_DEATHS` such deaths in a row the
  supervisor stops everything and exits 1. A worker that dies before the first
  start completed (a bad config, Redis unreachable) stops the start-up with the
  worker's exit code;
* at the end the supervisor removes the socket files it bound and the pid file.
  Workers never remove them (a front end given inherited sockets leaves the
  files alone), since the other workers still accept on them.

Brute-force counters and bans must be shared by all workers, so more than one
worker requires ``guard.store = "redis"`` (:func:`check_workers`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from mailwarden import sdnotify
from mailwarden.activation import Activated
from mailwarden.app import resolve_path, serve, write_pid_file
from mailwarden.config import Config
from mailwarden.errors import ConfigError, TemporaryFailure
from mailwarden.frontends.inherited import InheritedSockets, bind_tcp
from mailwarden.frontends.unixsock import bind_unix_socket, remove_own_socket
from mailwarden.loop import run_loop

__all__ = ["bind_all", "check_workers", "effective_workers", "serve_activated", "supervise"]

log = logging.getLogger("mailwarden.prefork")

# A worker that dies within this many seconds of its start died "young".
QUICK_DEATH = 5.0
# Young deaths in a row after which the supervisor gives up (exit 1).
MAX_QUICK_DEATHS = 5
# Back-off before replacing the n-th young death in a row: BACKOFF * 2**(n-1), capped.
BACKOFF = 0.5
BACKOFF_MAX = 8.0

# Exit codes of a worker (as the single-process ``serve``; see cli/daemon.py).
EX_OSERR = 71
EX_TEMPFAIL = 75
EX_CONFIG = 78

_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)


def effective_workers(config: Config, override: int | None = None) -> int:
    """How many workers to run: ``--workers`` if given, else ``server.workers``; 0 = one
    per CPU core."""
    n = config.server.workers if override is None else override
    if n < 0:
        raise ConfigError("expected an integer >= 0 (0 = one per CPU core)", key="server.workers")
    return n or os.cpu_count() or 1


def check_workers(config: Config, workers: int) -> None:
    """ConfigError unless ``workers`` processes can share the brute-force state."""
    if workers > 1 and config.guard.store != "redis":
        raise ConfigError(
            f'{workers} workers need guard.store = "redis" (it is '
            f'"{config.guard.store}"): each worker would count failures and bans on its '
            'own; set guard.store = "redis" or server.workers = 1',
            key="server.workers",
        )


@dataclass(frozen=True, slots=True)
class _Bound:
    """What the supervisor bound: the sockets, and the UNIX socket files it removes."""

    sockets: InheritedSockets
    files: tuple[tuple[Path, int], ...]


def bind_all(config: Config, activated: Activated | None = None) -> _Bound:
    """Bind every listener ``serve`` would open, with the front ends' own rules; a
    listener systemd bound (socket activation, ``activated``) takes that socket."""
    sockets = InheritedSockets()
    files: list[tuple[Path, int]] = []
    activated = activated if activated is not None else Activated([])

    def resolve(path: str) -> Path:
        return resolve_path(config, path)

    def tcp(key: str, address: str, bind: Callable[[], list[socket.socket]]) -> None:
        sockets.add(key, address, activated.take_tcp(address, key=key) or bind())

    def unix(key: str, path: str, mode: int, owner: tuple[int, int] = (-1, -1)) -> None:
        resolved = resolve(path)
        passed = activated.take_unix(str(resolved))
        if passed is not None:
            # systemd's file, with the owner and mode its .socket unit gives.
            log.info("%s: using the socket systemd passed for %s", key, resolved)
            sockets.add(key, path, [passed])
            return
        sock, inode = bind_unix_socket(resolved, mode=mode, key=key, owner=owner)
        files.append((resolved, inode))
        # Listening from here on: connections wait in the backlog until a worker
        # accepts, and another server probing the path sees it in use.
        sock.listen(128)
        sockets.add(key, path, [sock])

    try:
        if config.dovecot.enabled:
            from mailwarden.frontends.dovecot_sockets import unix_listeners  # noqa: PLC0415

            d = config.dovecot
            for spec in unix_listeners(d):
                unix(spec.key, spec.path, spec.mode, spec.owner)
            for address in d.tcp_listen:
                key = "dovecot.tcp_listen"
                tcp(key, address, partial(bind_tcp, address, key=key))
        if config.server.control_socket:
            from mailwarden.frontends.control import control_socket_owner  # noqa: PLC0415

            unix(
                "server.control_socket",
                config.server.control_socket,
                config.server.control_socket_mode,
                control_socket_owner(config.server),
            )
        if config.saslauthd.enabled:
            from mailwarden.frontends.saslauthd import saslauthd_socket_owner  # noqa: PLC0415

            s = config.saslauthd
            unix("saslauthd.socket", s.socket, s.socket_mode, saslauthd_socket_owner(s))
        if config.http.enabled:
            from mailwarden.frontends.http import bind_listener  # noqa: PLC0415 - lean start

            for address in config.http.listen:
                tcp("http.listen", address, partial(_one, bind_listener, address))
        activated.check_all_taken()
    except BaseException:
        sockets.close()
        for file, inode in files:
            remove_own_socket(file, inode)
        raise
    return _Bound(sockets, tuple(files))


def _one(bind: Callable[[str], socket.socket], address: str) -> list[socket.socket]:
    return [bind(address)]


@dataclass(slots=True)
class _Worker:
    pid: int
    started: float
    ready: bool = False


class _Supervisor:
    def __init__(self, config: Config, count: int, bound: _Bound) -> None:
        self.config = config
        self.count = count
        self.bound = bound
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.started = False  # every first worker reported ready, pid file written
        self.exit_code = 0
        self.quick_deaths = 0
        self.restart_at: list[float] = []  # when to start each replacement
        self.pid_file = (
            resolve_path(config, config.server.pid_file) if config.server.pid_file else None
        )
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)
        self._ready_buffer = b""

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        previous: dict[signal.Signals, Any] = {}
        for sig in _SIGNALS:
            previous[sig] = signal.signal(sig, self._on_signal)
        old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        try:
            for _ in range(self.count):
                self._spawn()
            while True:
                self._reap()
                if self.stopping:
                    break
                self._announce()
                now = time.monotonic()
                due = [t for t in self.restart_at if t <= now]
                for t in due:
                    self.restart_at.remove(t)
                    self._spawn()
                timeout = min([1.0, *(t - now for t in self.restart_at)])
                self._wait(max(timeout, 0.0))
        finally:
            sdnotify.notify("STOPPING=1")
            # Also when forking failed half-way: never leave a worker behind.
            self._shutdown()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.bound.sockets.close()
            for path, inode in self.bound.files:
                remove_own_socket(path, inode)
            if self.pid_file is not None and self.started:
                with contextlib.suppress(OSError):
                    self.pid_file.unlink()
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)
        log.info("stopped")
        return self.exit_code

    def _on_signal(self, sig: int, _frame: object) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        elif sig == signal.SIGHUP:
            # Every worker re-reads the config itself (app.reload).
            for pid in list(self.workers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
        # SIGCHLD only needs to wake the loop (the wakeup fd does).

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a readiness report or ``timeout``."""
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], timeout)
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 512)
            if self._ready_r in readable:
                self._read_ready()

    def _read_ready(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._ready_buffer += os.read(self._ready_r, 4096)
        *lines, self._ready_buffer = self._ready_buffer.split(b"\n")
        for line in lines:
            worker = self.workers.get(int(line))
            if worker is not None:
                worker.ready = True

    def _announce(self) -> None:
        """Write the pid file once every first worker accepts."""
        if self.started or len(self.workers) < self.count:
            return
        if not all(w.ready for w in self.workers.values()):
            return
        self.started = True
        if self.pid_file is not None:
            write_pid_file(self.pid_file)
        sdnotify.notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS={self.count} workers serving")
        log.info(
            "supervisor %d: %d workers serving (%s)",
            os.getpid(),
            self.count,
            ", ".join(str(p) for p in self.workers),
        )

    # ------------------------------------------------------------------ workers

    def _spawn(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    self._become_worker()
                finally:
                    os._exit(1)  # the child never returns into the supervisor's loop
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        self.workers[pid] = _Worker(pid=pid, started=time.monotonic())
        log.info("started worker %d", pid)

    def _become_worker(self) -> NoReturn:
        """In the child: drop the supervisor's signal handling and pipes, then serve."""
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.close(fd)
        ready_w = self._ready_w

        def ready() -> None:
            os.write(ready_w, f"{os.getpid()}\n".encode())

        _worker_main(self.config, self.bound.sockets, ready)

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._read_ready()
            self._died(worker, status)

    def _died(self, worker: _Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        how = f"exit code {code}" if code >= 0 else f"signal {-code}"
        if self.stopping:
            return
        if not self.started:
            log.error("worker %d failed to start (%s); stopping", worker.pid, how)
            self.exit_code = code if code > 0 else 1
            self.stopping = True
            return
        lived = time.monotonic() - worker.started
        self.quick_deaths = self.quick_deaths + 1 if lived < QUICK_DEATH else 0
        if self.quick_deaths >= MAX_QUICK_DEATHS:
            log.error(
                "worker %d died (%s); %d workers died within %.0f s of their start in a row: "
                "giving up",
                worker.pid,
                how,
                self.quick_deaths,
                QUICK_DEATH,
            )
            self.exit_code = 1
            self.stopping = True
            return
        delay = min(BACKOFF * 2 ** (self.quick_deaths - 1), BACKOFF_MAX) if self.quick_deaths else 0
        log.warning(
            "worker %d died (%s) after %.1f s; replacing it in %.1f s",
            worker.pid,
            how,
            lived,
            delay,
        )
        self.restart_at.append(time.monotonic() + delay)

    def _shutdown(self) -> None:
        """SIGTERM every worker, wait up to server.shutdown_timeout, then SIGKILL."""
        self.restart_at.clear()
        log.info("shutting down %d workers", len(self.workers))
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.server.shutdown_timeout
        while self.workers and time.monotonic() < deadline:
            self._reap()
            if self.workers:
                self._wait(min(0.5, max(deadline - time.monotonic(), 0.0)))
        for pid in list(self.workers):
            log.warning(
                "worker %d still running after %.1f s: killing it",
                pid,
                self.config.server.shutdown_timeout,
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.workers):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self.workers[pid]


def _worker_main(config: Config, sockets: InheritedSockets, ready: Callable[[], None]) -> NoReturn:
    """Run the normal serve loop on the inherited sockets; never returns."""
    code = 0
    try:
        run_loop(serve(config, inherited=sockets, ready=ready))
    except TemporaryFailure as exc:
        log.error("cannot start: temporary failure: %s", exc)
        code = EX_TEMPFAIL
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        code = EX_CONFIG
    except OSError as exc:
        log.error("cannot start: %s", exc)
        code = EX_OSERR
    except BaseException:
        log.exception("worker failed")
        code = 1
    finally:
        logging.shutdown()
    os._exit(code)


def supervise(config: Config, workers: int, activated: list[socket.socket] | None = None) -> int:
    """Bind (or take from systemd: ``activated``), fork ``workers`` workers and supervise
    them until SIGTERM/SIGINT; the exit code. ConfigError/OSError if the configuration
    or a listener is unusable."""
    check_workers(config, workers)
    bound = bind_all(config, Activated(activated or []))
    return _Supervisor(config, workers, bound).run()


def serve_activated(config: Config, activated: list[socket.socket]) -> None:
    """One process on the sockets systemd passed (mailwarden/activation.py); listeners
    it did not pass are bound here, as the supervisor binds them, and removed at exit."""
    bound = bind_all(config, Activated(activated))
    try:
        run_loop(serve(config, inherited=bound.sockets))
    finally:
        bound.sockets.close()
        for path, inode in bound.files:
            remove_own_socket(path, inode)
