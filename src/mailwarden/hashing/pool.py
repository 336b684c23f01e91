"""Runs password verification and hashing without blocking the event loop.

Cheap schemes (plain text, single digests) run inline: handing them away would
cost more than the hash. Heavy ones (the crypt family, bcrypt, argon2, PBKDF2,
SCRAM) run elsewhere, one worker per core:

* in the daemon (``processes=True``), verifications go to worker processes
  (:class:`ProcessPool`, :mod:`mailwarden.hashing.worker`), each fed through a pipe,
  the frames of one turn of the event loop written together; the workers start
  with :meth:`Hasher.start` or with the first verification that needs them;
* otherwise (one-shot commands, tests) and for everything that is not a stored-hash
  verification (new hashes, SCRAM proofs), to a thread pool: every heavy scheme's C
  code runs without the GIL (libxcrypt through ctypes, bcrypt, argon2-cffi,
  hashlib's PBKDF2).

Why processes in the daemon: between two hashes a thread needs the GIL back, and
an event loop busy with other logins holds it, so hashing threads wait on the
loop and on each other (the GIL convoy). docs/architecture.md has the figures.

The number of verifications waiting for a worker is bounded (``queue_limit``):
past it a request fails at once with HashingUnavailable, which the engine turns
into a temporary failure, instead of queueing minutes of work under a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import mailwarden
from mailwarden import schemes
from mailwarden.errors import (
    HashingUnavailable,
    MalformedHash,
    ProtocolError,
    SchemeError,
    UnknownScheme,
)
from mailwarden.hashing.frames import AnswerReader, Request, encode_frame
from mailwarden.schemes.base import HashPolicy, StoredHash

log = logging.getLogger("mailwarden.hashing")

T = TypeVar("T")


class Hasher:
    """Verifies and generates password hashes for asyncio callers."""

    def __init__(
        self, *, workers: int = 0, queue_limit: int = 1024, processes: bool = False
    ) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.queue_limit = queue_limit
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hash")
        self._processes = ProcessPool(self.workers) if processes else None
        self._pending = 0
        self._closed = False
        self.verifications = 0  # every verify() call, cheap or heavy (a metric)

    async def start(self) -> None:
        """Start the worker processes now (with ``processes=True``; else nothing to
        do). Without this call they start with the first heavy verification."""
        if self._processes is not None:
            await self._processes.start()

    @property
    def pending(self) -> int:
        """Heavy operations submitted and not finished (the queue-depth metric)."""
        return self._pending

    async def verify(
        self, password: bytes, stored: StoredHash, *, user: str = "", heavy: bool | None = None
    ) -> bool:
        """True when ``password`` matches; SchemeError when ``stored`` is unusable.

        ``heavy``: what :func:`schemes.is_heavy` says of ``stored``, if the caller knows.
        """
        self.verifications += 1
        if not (schemes.is_heavy(stored) if heavy is None else heavy):
            return schemes.verify(password, stored, user=user)
        processes = self._processes
        if processes is None:
            return await self._run(lambda: schemes.verify(password, stored, user=user))
        return await self._admitted(processes.verify(password, stored, user=user))

    async def generate(
        self,
        password: bytes,
        scheme: str,
        *,
        user: str = "",
        policy: HashPolicy | None = None,
        rounds: int | None = None,
    ) -> str:
        """A new ``{SCHEME}data`` value for ``password``."""
        return await self._run(
            lambda: schemes.generate(password, scheme, user=user, policy=policy, rounds=rounds)
        )

    async def run(self, fn: Callable[[], T]) -> T:
        """Run other expensive work on the pool, under the same queue limit.

        For CPU-bound checks that are not a stored-hash verification, such as a SCRAM
        proof over a plaintext password (PBKDF2). HashingUnavailable when the queue
        is full or the pool is shut down.
        """
        return await self._run(fn)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await self._admitted(self._in_thread(fn))

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        except RuntimeError as exc:  # executor shut down under us
            raise HashingUnavailable(str(exc)) from exc

    async def _admitted(self, work: Coroutine[Any, Any, T]) -> T:
        """``work`` under the queue limit (threads and processes alike); refused at
        once, unstarted, when the pool is shut down or the queue is full."""
        if self._closed or self._pending >= self.queue_limit:
            work.close()
            if self._closed:
                raise HashingUnavailable("hashing pool is shut down")
            raise HashingUnavailable(f"hashing queue full ({self.queue_limit} waiting)")
        self._pending += 1
        try:
            return await work
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.close()

    async def wait_closed(self) -> None:
        """After :meth:`close`: until the worker processes have exited."""
        if self._processes is not None:
            await self._processes.wait_closed()


# --------------------------------------------------------------------------- processes

_ERRORS: dict[str, type[SchemeError]] = {
    "SchemeError": SchemeError,
    "UnknownScheme": UnknownScheme,
    "MalformedHash": MalformedHash,
}

#: Seconds between restarts of a worker that keeps dying (no fork storm).
RESTART_DELAY = 1.0


class _Worker(asyncio.SubprocessProtocol):
    """One worker process: its pipes, and the verifications it has not answered."""

    def __init__(self, pool: ProcessPool) -> None:
        self.pool = pool
        self.transport: asyncio.SubprocessTransport | None = None
        self.pending: dict[int, asyncio.Future[bool]] = {}
        self.alive = True
        self.exited = asyncio.get_running_loop().create_future()
        self._reader = AnswerReader()
        self._out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's process transport does not subclass asyncio's, but has its methods.
        self.transport = cast(asyncio.SubprocessTransport, transport)

    def send(self, request: Request, future: asyncio.Future[bool]) -> None:
        self.pending[request[0]] = future
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(encode_frame(request))

    def _flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        if self.alive and self.transport is not None:
            stdin = cast(asyncio.WriteTransport, self.transport.get_pipe_transport(0))
            stdin.write(data)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        self._reader.receive_data(data)
        try:
            while (answer := self._reader.next_event()) is not None:
                request_id, verdict, error, message = answer
                future = self.pending.pop(request_id, None)
                if future is None or future.done():  # its login gave up meanwhile
                    continue
                if verdict is not None:
                    future.set_result(verdict)
                elif error in _ERRORS:
                    future.set_exception(_ERRORS[error](message))
                else:
                    future.set_exception(RuntimeError(f"hashing worker: {message}"))
        except ProtocolError as exc:
            log.error("hashing worker sent garbage (%s); replacing it", exc)
            self.stop()

    def process_exited(self) -> None:
        self.stop()
        if not self.exited.done():
            self.exited.set_result(None)
        self.pool.exited(self)

    def stop(self) -> None:
        """Fail what is in flight (a temporary failure, never a wrong password)."""
        self.alive = False
        pending = list(self.pending.values())
        self.pending.clear()
        for future in pending:
            if not future.done():
                future.set_exception(HashingUnavailable("hashing worker exited"))
        if self.transport is not None:
            self.transport.close()  # kills the process if it still runs


#: The folder that holds the mailwarden package. A worker is told where it is: the
#: command ``make install`` writes runs the system Python with the packages in a
#: folder of their own, which is not on the interpreter's default path.
_PACKAGE_ROOT = str(Path(mailwarden.__file__).resolve().parent.parent)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return env


class ProcessPool:
    """``size`` hashing worker processes, each given the next verification when it
    has the fewest in flight; one that dies is replaced (its logins in flight get
    HashingUnavailable)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._starting: asyncio.Task[None] | None = None
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._closed = False
        self._restarts: set[asyncio.Task[None]] = set()
        self._stopping: list[_Worker] = []

    async def start(self) -> None:
        """Start the workers now (:meth:`verify` starts them when first needed, as
        Dovecot starts its auth workers: a site whose passwords are all cheap never
        runs one). HashingUnavailable if they cannot start; the next call retries."""
        if self._closed:
            raise HashingUnavailable("hashing pool is shut down")
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self._start_all())
        try:
            await asyncio.shield(self._starting)
        except OSError as exc:
            self._starting = None
            log.error("cannot start the hashing workers: %s", exc)
            raise HashingUnavailable(f"cannot start the hashing workers: {exc}") from exc

    async def _start_all(self) -> None:
        while len(self._workers) < self.size and not self._closed:
            await self._spawn()

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        _, worker = await loop.subprocess_exec(
            lambda: _Worker(self),
            sys.executable,
            "-m",
            "mailwarden.hashing.worker",
            env=_worker_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        if self._closed:  # closed while this one started
            worker.stop()
            self._stopping.append(worker)
            return
        self._workers.append(worker)

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for status and tests)."""
        return [w.transport.get_pid() for w in self._workers if w.alive and w.transport is not None]

    async def verify(self, password: bytes, stored: StoredHash, *, user: str) -> bool:
        """The verdict of a worker (SchemeError for an unusable value)."""
        starting = self._starting
        if starting is None or not starting.done():
            await self.start()
        alive = [w for w in self._workers if w.alive]
        if self._closed or not alive:
            raise HashingUnavailable("no hashing worker is running")
        worker = min(alive, key=lambda w: len(w.pending))
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        request = (
            next(self._ids),
            password,
            stored.scheme,
            stored.encoding or "",
            stored.data,
            user,
        )
        worker.send(request, future)
        return await future

    def exited(self, worker: _Worker) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        if self._closed:
            return
        log.warning("hashing worker exited; starting another in %.0f s", RESTART_DELAY)
        task = asyncio.get_running_loop().create_task(self._replace())
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _replace(self) -> None:
        await asyncio.sleep(RESTART_DELAY)
        if self._closed or len(self._workers) >= self.size:  # a start filled the place
            return
        try:
            await self._spawn()
        except OSError as exc:
            log.error("cannot start a hashing worker: %s", exc)

    def close(self) -> None:
        self._closed = True
        for task in list(self._restarts):
            task.cancel()
        for worker in list(self._workers):
            worker.stop()
        self._stopping.extend(self._workers)
        self._workers.clear()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """After :meth:`close`: until the worker processes have exited."""
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(OSError):
                await asyncio.wait_for(asyncio.shield(self._starting), timeout)
        waiting = [w.exited for w in self._stopping if not w.exited.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        self._stopping.clear()
