"""The guard returns to the shared state soon after Redis does (issue 15, item 18).

A real redis-server, killed and started again on the same port while the pool holds
many connections: each of them is dead. With the default ``retry_interval`` (5 s),
the guard must be back on Redis within 5 s of Redis answering again, and stay there.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from mailwarden.config import GuardConfig, GuardRule
from mailwarden.guard.policy import Guard
from mailwarden.guard.stores.redis import RedisStore
from tests.redisserver import RedisServer
from tests.stores.conftest import redis_config

GUARD = GuardConfig(
    store="redis",
    allow_networks=(),
    rules=(GuardRule(name="ip", period=60.0, threshold=10**6),),
    account_threshold=0,
)


def on_redis(guard: Guard) -> bool:
    return not guard.degraded


async def test_the_guard_is_back_on_redis_within_5_s_of_a_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="mailwarden.guard")
    store = await RedisStore.open(redis_config(redis_server, retry_interval=5.0))
    guard = Guard(GUARD, store)
    try:
        source = guard.source("192.0.2.1")
        assert source is not None

        async def busy() -> None:  # one login's guard work
            await guard.blocked(source)
            await guard.failed(source, uid="alice", password=None)

        # A busy moment fills the pool with connections...
        await asyncio.gather(*(busy() for _ in range(48)))
        assert on_redis(guard)
        # ...which the restart leaves dead.
        redis_server.kill()
        redis_server.start()
        back = time.monotonic()
        # Steady traffic, as logins come: find when the guard is on Redis for good.
        on_redis_since: float | None = None
        while time.monotonic() - back < 12.0:
            await asyncio.gather(*(busy() for _ in range(4)))
            if not on_redis(guard):
                on_redis_since = None
            elif on_redis_since is None:
                on_redis_since = time.monotonic()
            if on_redis_since is not None and time.monotonic() - on_redis_since > 5.0:
                break
            await asyncio.sleep(0.05)
        assert on_redis_since is not None, "the guard never went back to Redis"
        assert on_redis_since - back < 5.0, f"back on Redis after {on_redis_since - back:.1f} s"
        # What it counts now lands in Redis (the new, empty server).
        counts = await store.counts([("ip|192.0.2.1/32", 60.0)], time.time())
        assert counts[0] > 0
        # One episode, one warning (not one per dead connection), and the return.
        lines = [r.getMessage() for r in caplog.records]
        assert len([m for m in lines if m.startswith("guard store unavailable")]) == 1
        assert len([m for m in lines if m.startswith("guard store is back")]) == 1
    finally:
        await guard.close()
