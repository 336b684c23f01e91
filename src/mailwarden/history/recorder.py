"""The login history's writer: a bounded queue in memory, emptied in batches by a
background task.

The rules, and why:

* **A login never waits for the history.** :meth:`HistoryRecorder.note` appends to
  a list and returns; it never awaits, never blocks and never raises. When the
  queue holds ``queue_limit`` entries, a new one is dropped and counted
  (:attr:`dropped`): an attack that outruns the store costs entries, not logins.
* **Batches.** A background task writes what is queued every ``flush_interval_ms``,
  or as soon as ``batch_size`` entries wait, in batches of at most ``batch_size``
  (one pipelined round trip to Redis, one transaction in SQLite). The task exists
  only while entries wait, so an idle process runs nothing.
* **A store outage costs entries, never a login.** A failed batch is dropped and
  counted (:attr:`failures`, :attr:`lost`) and logged at a bounded rate
  (lograte.py); the next batch tries again.
* **Blocked logins** carry a login name (base.py says why); the recorder asks
  ``resolve`` for the account, at most :data:`RESOLVE_PER_BATCH` per batch, the rest
  dropped and counted.
* **Repeats are one entry.** A mail client logs in again and again, the same way,
  from the same address (a phone checking every few minutes, IDLE reconnections):
  an *accepted* login identical to one this process recorded less than
  ``repeat_seconds`` ago (same account, front end, service, client address and
  credential) is counted in :attr:`repeated`, not written. The history then shows
  each way in once per ``repeat_seconds`` instead of burying the one that matters,
  and the store writes a fraction of the rows (issue #20's bench: the mix lost 8 %
  of its logins per second with every login written). Refused logins are always
  written. Each process remembers its own (at most :data:`REPEATS_LIMIT`, then
  forgotten all at once), so with N workers or nodes a repeat may be written N times.
* **Pruning** by age and to ``max_per_account`` runs at most once per
  :data:`PRUNE_EVERY` seconds, after a write (memory and Redis cut each account as
  they write, and Redis expires unused lists; the SQL stores do it here, so that a
  batch is one cheap statement). A read never returns more than ``max_per_account``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from mailwarden.config import HistoryConfig
from mailwarden.errors import TemporaryFailure
from mailwarden.history.base import (
    HistoryStore,
    LoginEvent,
    LoginResult,
    Trail,
    Unresolved,
    event_of,
)
from mailwarden.lograte import RateLimitedLog
from mailwarden.model import AuthAttempt, AuthOutcome

log = logging.getLogger("mailwarden.history")

#: Names of blocked logins looked up per batch, at most.
RESOLVE_PER_BATCH = 50
#: Accepted logins remembered to skip repeats (then forgotten all at once).
REPEATS_LIMIT = 50_000
#: Seconds between two prunings by age.
PRUNE_EVERY = 3600.0

ACCEPTED = LoginResult.ACCEPTED

Resolver = Callable[[str], Awaitable[str | None]]


class HistoryRecorder:
    """Queues entries and writes them to ``store`` in batches (module docstring)."""

    def __init__(
        self,
        store: HistoryStore,
        config: HistoryConfig,
        *,
        resolve: Resolver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.resolve = resolve
        self.clock = clock
        self._queue: list[LoginEvent | Unresolved] = []
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pruned = float("-inf")  # the first write prunes at once
        self._errors = RateLimitedLog(log)
        self._failing = False
        self.written = 0
        self.dropped = 0  # the queue was full
        self.lost = 0  # in a batch the store refused, or a name not looked up
        self.repeated = 0  # accepted logins not written: a repeat (module docstring)
        self._recent: dict[tuple[object, ...], float] = {}
        self.failures = 0  # batches the store refused
        self.configure(config)

    def configure(self, config: HistoryConfig) -> None:
        """The limits of a new configuration (at start and on SIGHUP)."""
        self.config = config
        self.keep = config.max_per_account
        self.ttl = config.days * 86400.0
        self.interval = config.flush_interval_ms / 1000.0
        self.repeat = float(config.repeat_seconds)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def note(self, attempt: AuthAttempt, outcome: AuthOutcome, trail: Trail) -> None:
        """Queue the entry of one decided login, if it makes one (base.event_of)."""
        event = event_of(attempt, outcome, trail, self.clock())
        if event is None:
            return
        if self.repeat > 0 and isinstance(event, LoginEvent) and event.result is ACCEPTED:
            way = (
                event.uid,
                event.frontend,
                event.service,
                event.remote_ip,
                event.credential,
                event.app_password,
            )
            recent = self._recent
            last = recent.get(way)
            if last is not None and event.at - last < self.repeat:
                self.repeated += 1
                return
            if len(recent) >= REPEATS_LIMIT:
                recent.clear()
            recent[way] = event.at
        self.add(event)

    def add(self, event: LoginEvent | Unresolved) -> None:
        """Queue ``event``; never blocks or raises (a full queue drops it)."""
        queue = self._queue
        if len(queue) >= self.config.queue_limit:
            self.dropped += 1
            return
        queue.append(event)
        if self._task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): written at flush()
                return
            self._task = loop.create_task(self._run())
        elif len(queue) >= self.config.batch_size:
            self._full.set()

    async def _run(self) -> None:
        try:
            # Ends when the queue is empty; each turn waits at most ``interval`` and
            # writes what was queued when it woke (what comes meanwhile waits its turn).
            while self._queue:
                if len(self._queue) < self.config.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self.interval)
                self._full.clear()
                await self._write_queued(len(self._queue))
        finally:
            self._task = None

    async def flush(self) -> None:
        """Write everything queued now (at shutdown, and by tests). The task is woken,
        not cancelled: a batch it is writing is finished, never cut off."""
        task = self._task
        if task is not None:
            self._full.set()
            await task  # it writes what waits and ends with the queue
        await self._write_queued(len(self._queue))

    async def _write_queued(self, count: int) -> None:
        """Write the first ``count`` entries of the queue, a batch at a time."""
        while count > 0 and self._queue:
            size = min(count, self.config.batch_size)
            batch, self._queue = self._queue[:size], self._queue[size:]
            count -= size
            await self._write(await self._resolved(batch))
        await self._prune()

    async def _resolved(self, batch: list[LoginEvent | Unresolved]) -> list[LoginEvent]:
        events: list[LoginEvent] = []
        looked_up = 0
        for item in batch:
            if isinstance(item, LoginEvent):
                events.append(item)
                continue
            if self.resolve is None or looked_up >= RESOLVE_PER_BATCH:
                self.lost += 1
                continue
            looked_up += 1
            try:
                uid = await self.resolve(item.login)
            except TemporaryFailure:
                uid = None
            if uid is not None:
                events.append(dataclasses.replace(item.event, uid=uid))
        return events

    async def _write(self, events: list[LoginEvent]) -> None:
        if not events:
            return
        try:
            await self.store.add_logins(events, keep=self.keep, ttl=self.ttl)
        except (TemporaryFailure, OSError) as exc:
            self.failures += 1
            self.lost += len(events)
            self._failing = True
            self._errors.warning(
                "write", "login history: %d entries not written: %s", len(events), exc
            )
            return
        if self._failing:  # the end of an outage: said once
            self._failing = False
            left_out = self._errors.clear("write")
            log.info("login history: written again (%d failure lines left out)", left_out)
        self.written += len(events)

    async def _prune(self) -> None:
        now = self.clock()
        if now - self._pruned < PRUNE_EVERY:
            return
        self._pruned = now
        try:
            await self.store.prune_logins(now - self.ttl, keep=self.keep)
        except (TemporaryFailure, OSError) as exc:
            self._errors.warning("prune", "login history: pruning failed: %s", exc)

    async def recent(self, uid: str, *, limit: int) -> list[LoginEvent]:
        """``uid``'s entries of the last ``days``, newest first (what is still queued
        is not among them). TemporaryFailure when the store cannot answer."""
        # A store that cuts to max_per_account hourly may hold more meanwhile.
        limit = min(limit, self.keep)
        return await self.store.logins(uid, limit=limit, since=self.clock() - self.ttl)
