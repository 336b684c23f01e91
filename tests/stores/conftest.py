"""Fixtures for store tests: one real redis-server per session, a private one per test
that takes Redis away, a fresh key prefix per test (so tests never share keys), a
Sentinel-managed primary with its replica, and two "workers" (engines) sharing one
Redis and one SQLite file."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.auth.engine import Engine
from mailwarden.config import Config, GuardConfig, GuardRule, RedisConfig
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.guard.policy import Guard
from mailwarden.guard.stores.redis import RedisStore
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from tests.helpers import FAST, hashed
from tests.redisserver import (
    FailoverGroup,
    RedisSentinel,
    RedisServer,
    have_redis,
    running_failover_group,
    running_redis,
)

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


@pytest.fixture
def sentinel(redis_server: RedisServer, tmp_path: Path) -> Iterator[RedisSentinel]:
    """One Sentinel watching ``redis_server`` (quorum 1)."""
    (tmp_path / "sentinel").mkdir()
    watcher = RedisSentinel(tmp_path / "sentinel", redis_server.port)
    watcher.start()
    try:
        yield watcher
    finally:
        watcher.stop()


@pytest.fixture
def failover_group(tmp_path: Path) -> Iterator[FailoverGroup]:
    """A primary, its replica and three Sentinels, which the test may fail over."""
    need_redis()
    with running_failover_group(tmp_path / "failover") as group:
        yield group


#: The guard of :func:`workers`: three failures from one address ban it.
WORKERS_GUARD = GuardConfig(
    store="redis",
    allow_networks=(),
    rules=(GuardRule(name="ip", period=60.0, threshold=3),),
    account_threshold=0,
)


@dataclasses.dataclass
class Workers:
    a: Engine
    b: Engine
    directory: SQLiteDirectory  # a's directory: where the tests change accounts


#: Starts two workers on a Redis server (a fresh key prefix) or a given config.
WorkersFactory = Callable[[RedisServer | RedisConfig], Awaitable[Workers]]


@pytest_asyncio.fixture
async def workers(tmp_path: Path) -> AsyncIterator[WorkersFactory]:
    """Two engines as two processes of ``serve --workers 2`` (or two nodes) would be:
    each with its own Guard over its own RedisStore, its own caches and hashing
    pool, and its own SQLiteDirectory on one shared file (accounts alice/secret and
    bob/bobpw, SHA512-CRYPT)."""
    opened: list[Engine] = []
    hashers: list[Hasher] = []
    db = tmp_path / "accounts.db"

    async def start(server: RedisServer | RedisConfig) -> Workers:
        setup = await SQLiteDirectory.open(db, create=True)
        await setup.create(Account(uid="alice", password=hashed("secret")))
        await setup.create(Account(uid="bob", password=hashed("bobpw")))
        await setup.close()
        redis = redis_config(server) if isinstance(server, RedisServer) else server
        guard = dataclasses.replace(WORKERS_GUARD, redis=redis)
        config: Config = dataclasses.replace(FAST, guard=guard)
        for _ in range(2):
            hasher = Hasher(workers=1)
            hashers.append(hasher)
            store = await RedisStore.open(redis)
            engine = Engine(
                directory=await SQLiteDirectory.open(db, create=False),
                hasher=hasher,
                config=config,
                guard=Guard(config.guard, store),
            )
            await engine.start()
            opened.append(engine)
        directory = opened[-2].directory
        assert isinstance(directory, SQLiteDirectory)
        return Workers(opened[-2], opened[-1], directory)

    yield start
    for engine in opened:
        await engine.guard.close()
        await engine.directory.close()
    for hasher in hashers:
        hasher.close()
