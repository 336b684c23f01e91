"""Fixtures for store tests: one real redis-server per session, a private one per test
that takes Redis away, and a fresh key prefix per test (so tests never share keys)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.config import RedisConfig
from mailwarden.guard.stores.redis import RedisStore
from tests.redisserver import RedisServer, have_redis, running_redis

_prefixes = itertools.count()


def need_redis() -> None:
    if not have_redis():
        pytest.skip("redis-server is not installed (scripts/bootstrap.sh installs it)")


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    """A redis-server shared by the tests that leave it running."""
    need_redis()
    with running_redis() as server:
        yield server


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, which it may kill and restart."""
    need_redis()
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_config(server: RedisServer, **kw: object) -> RedisConfig:
    """A config for ``server`` with a key prefix no other test uses."""
    settings: dict[str, object] = {
        "url": server.url,
        "key_prefix": f"test{next(_prefixes)}:",
        "timeout": 1.0,
        "retry_interval": 0.2,
    }
    settings.update(kw)
    return RedisConfig(**settings)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def redis_store(redis_session: RedisServer) -> AsyncIterator[RedisStore]:
    store = await RedisStore.open(redis_config(redis_session))
    yield store
    await store.close()
