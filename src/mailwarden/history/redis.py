"""The login history in the guard's Redis (``guard.store = "redis"``): every node of
a site writes to and reads the same lists.

One list per account, ``<key_prefix>logins:<uid>``, newest batch first (a read sorts
what it took by time: nodes write their batches a little apart), each entry the
JSON of base.event_to_json. A batch is one pipelined round trip: per account an
``LPUSH`` of its new entries, an ``LTRIM`` to ``max_per_account`` and an
``EXPIRE`` of ``days`` (an account nobody logs in to any more is forgotten whole);
entries older than ``days`` in a list still in use are skipped when read. The
guard store's connection pool and timeout are used; any Redis, OS or timeout error
is a :class:`~mailwarden.errors.StoreUnavailable`, which the recorder counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from mailwarden.errors import StoreUnavailable
from mailwarden.history.base import MAX_ROWS, LoginEvent, dumps, loads

_ERRORS = (RedisError, OSError, TimeoutError)


class RedisHistory:
    """:class:`~mailwarden.history.base.HistoryStore` in Redis lists (module docstring)."""

    def __init__(self, client: aioredis.Redis, *, key_prefix: str, timeout: float) -> None:
        self.client = client
        self.prefix = key_prefix
        self.timeout = timeout

    def key(self, uid: str) -> str:
        return f"{self.prefix}logins:{uid}"

    async def add_logins(self, events: Sequence[LoginEvent], *, keep: int, ttl: float) -> None:
        by_uid: dict[str, list[str]] = {}
        for event in events:
            by_uid.setdefault(event.uid, []).append(dumps(event))
        pipe = self.client.pipeline(transaction=False)
        for uid, entries in by_uid.items():
            key = self.key(uid)
            pipe.lpush(key, *entries)
            pipe.ltrim(key, 0, keep - 1)
            pipe.expire(key, max(1, math.ceil(ttl)))
        try:
            await asyncio.wait_for(pipe.execute(), self.timeout)
        except _ERRORS as exc:
            raise await self._failed(exc) from exc

    async def logins(self, uid: str, *, limit: int, since: float) -> list[LoginEvent]:
        count = max(0, min(limit, MAX_ROWS))
        if not count:
            return []
        try:
            raw = await asyncio.wait_for(
                # The whole list (trimmed to max_per_account when written): the
                # newest by time may sit behind a batch another node wrote later.
                self.client.lrange(self.key(uid), 0, MAX_ROWS - 1),
                self.timeout,
            )
        except _ERRORS as exc:
            raise await self._failed(exc) from exc
        found = []
        for text in raw:
            event = loads(text if isinstance(text, str) else text.decode("utf-8", "replace"))
            if event is not None and event.at >= since:
                found.append(event)
        # A list is in the order batches arrived; nodes write theirs a little apart.
        found.sort(key=lambda e: e.at, reverse=True)
        return found[:count]

    async def _failed(self, exc: BaseException) -> StoreUnavailable:
        # As the guard's store does: a dead connection means the idle ones to that
        # server are likely dead too (Redis restarted); the next call opens new ones.
        with contextlib.suppress(*_ERRORS):
            await self.client.connection_pool.disconnect(inuse_connections=False)
        return StoreUnavailable(f"redis: login history: {exc or type(exc).__name__}")

    async def prune_logins(self, before: float, *, keep: int) -> int:
        """Nothing to do: lists are trimmed when written and expire when unused."""
        return 0
