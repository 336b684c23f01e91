"""Runs password verification and hashing without blocking the event loop.

Cheap schemes (plain text, single digests) run inline: handing them to a thread
would cost more than the hash. Heavy ones (the crypt family, bcrypt, argon2,
PBKDF2, SCRAM) run on a thread pool with one worker per core. That is enough to
use every core because every heavy scheme's C code runs without the GIL: libxcrypt
is called through ctypes (which drops the GIL for the call), and bcrypt,
argon2-cffi and hashlib's PBKDF2 release it themselves. bench/hashing.py shows the
scaling; docs/architecture.md records why this beats a process pool here (no
pickling, no per-call IPC, one shared dummy hash).

The number of verifications waiting for a worker is bounded (``queue_limit``):
past it a request fails at once with HashingUnavailable, which the engine turns
into a temporary failure, instead of queueing minutes of work under a flood.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mailwarden import schemes
from mailwarden.errors import HashingUnavailable
from mailwarden.schemes.base import HashPolicy, StoredHash

T = TypeVar("T")


class Hasher:
    """Verifies and generates password hashes for asyncio callers."""

    def __init__(self, *, workers: int = 0, queue_limit: int = 1024) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.queue_limit = queue_limit
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hash")
        self._pending = 0
        self._closed = False
        self.verifications = 0  # every verify() call, cheap or heavy (a metric)

    @property
    def pending(self) -> int:
        """Heavy operations submitted and not finished (the queue-depth metric)."""
        return self._pending

    async def verify(self, password: bytes, stored: StoredHash, *, user: str = "") -> bool:
        """True when ``password`` matches; SchemeError when ``stored`` is unusable."""
        self.verifications += 1
        if not schemes.is_heavy(stored):
            return schemes.verify(password, stored, user=user)
        return await self._run(lambda: schemes.verify(password, stored, user=user))

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
        if self._closed:
            raise HashingUnavailable("hashing pool is shut down")
        if self._pending >= self.queue_limit:
            raise HashingUnavailable(f"hashing queue full ({self.queue_limit} waiting)")
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._pool, fn)
            except RuntimeError as exc:  # executor shut down under us
                raise HashingUnavailable(str(exc)) from exc
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
