"""The guard and the verified-login cache over a real Redis, with two "workers".

Each worker is an Engine of its own (its own Guard over its own RedisStore, its own
LoginCache and hashing pool, its own SQLiteDirectory on one shared database file),
as two processes of ``serve --workers 2`` or two nodes would be. The clock is the
real one: Redis TTLs are real seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from mailwarden.auth.engine import Engine
from mailwarden.guard.stores.redis import RedisStore
from mailwarden.model import Accepted, Denied, DenyReason
from tests.helpers import attempt, hashed
from tests.redisserver import RedisServer
from tests.stores.conftest import WorkersFactory as Factory

ATTACKER = "192.0.2.66"
SPRAYER = "203.0.113.7"
OWNER = "198.51.100.10"


async def login(engine: Engine, user: str, password: str, ip: str) -> object:
    return await engine.authenticate(attempt(user, password, remote_ip=ip))


def degraded(engine: Engine) -> bool:
    return engine.guard.degraded


def denied(outcome: object, reason: DenyReason) -> bool:
    return isinstance(outcome, Denied) and outcome.reason is reason


async def poll(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_ban_made_through_one_worker_holds_on_the_other(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    for i in range(3):
        assert denied(await login(w.a, "alice", f"guess{i}", ATTACKER), DenyReason.CREDENTIALS)
    before = w.b.hasher.verifications
    assert denied(await login(w.b, "alice", "secret", ATTACKER), DenyReason.BLOCKED)
    assert w.b.hasher.verifications == before  # no password check for a banned source
    assert isinstance(await login(w.b, "alice", "secret", OWNER), Accepted)
    assert [b["target"] for b in await w.b.guard.describe_bans()] == [f"{ATTACKER}/32"]
    # Lifted through b: a lets the owner of that address in again.
    assert await w.b.guard.unblock(ATTACKER) == 1
    assert isinstance(await login(w.a, "alice", "secret", ATTACKER), Accepted)
    assert not w.a.guard.degraded and w.a.guard.store_errors == 0


async def test_failures_on_both_workers_add_up(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    assert denied(await login(w.a, "bob", "one", ATTACKER), DenyReason.CREDENTIALS)
    assert denied(await login(w.b, "bob", "two", ATTACKER), DenyReason.CREDENTIALS)
    assert denied(await login(w.a, "bob", "three", ATTACKER), DenyReason.CREDENTIALS)
    assert denied(await login(w.b, "bob", "bobpw", ATTACKER), DenyReason.BLOCKED)


async def test_a_flush_on_one_worker_empties_the_others_cache(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    for engine in (w.a, w.b):
        assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
        assert isinstance(await login(engine, "bob", "bobpw", OWNER), Accepted)
        assert len(engine.cache) == 2
    await w.a.flush_cache(["alice"])
    await poll(lambda: len(w.b.cache) == 1, "the flush to reach worker b")
    assert len(w.a.cache) == 1
    # b verifies alice again (a miss), bob still comes from its cache.
    before = w.b.hasher.verifications
    assert isinstance(await login(w.b, "bob", "bobpw", OWNER), Accepted)
    assert w.b.hasher.verifications == before
    assert isinstance(await login(w.b, "alice", "secret", OWNER), Accepted)
    assert w.b.hasher.verifications == before + 1


async def test_a_password_change_is_seen_by_both_workers_at_once(
    workers: Factory, redis_session: RedisServer
) -> None:
    w = await workers(redis_session)
    for engine in (w.a, w.b):
        assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
        assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
        assert engine.cache.hits == 1
    # Written straight into the shared database: no flush, no message to anyone.
    await w.directory.set_password("alice", hashed("changed"))
    for engine in (w.a, w.b):
        assert denied(await login(engine, "alice", "secret", OWNER), DenyReason.CREDENTIALS)
        assert isinstance(await login(engine, "alice", "changed", OWNER), Accepted)


async def test_redis_killed_mid_run_keeps_logins_answered_and_recovers(
    workers: Factory, redis_server: RedisServer
) -> None:
    w = await workers(redis_server)
    assert isinstance(await login(w.a, "alice", "secret", OWNER), Accepted)
    redis_server.kill()
    started = time.monotonic()
    for engine in (w.a, w.b):
        for i in range(6):
            # Never a wrong accept; the right password always works from a clean source.
            outcome = await login(engine, "alice", f"wrong{i}", SPRAYER)
            assert denied(outcome, DenyReason.CREDENTIALS) or denied(outcome, DenyReason.BLOCKED)
            assert isinstance(await login(engine, "alice", "secret", OWNER), Accepted)
            assert isinstance(await login(engine, "bob", "bobpw", OWNER), Accepted)
        assert engine.guard.degraded
        assert engine.guard.store_errors > 0
        # Local state protects each worker on its own meanwhile.
        assert denied(await login(engine, "alice", "secret", SPRAYER), DenyReason.BLOCKED)
    assert time.monotonic() - started < 10

    redis_server.start()
    store = w.a.guard.store
    assert isinstance(store, RedisStore)
    await asyncio.sleep(0.25)  # > retry_interval (0.2 s)
    # Past retry_interval the guard uses Redis again: a new ban lands there and b sees it.
    for i in range(3):
        assert denied(await login(w.a, "alice", f"again{i}", ATTACKER), DenyReason.CREDENTIALS)
    assert not w.a.guard.degraded
    assert [b.target for b in await store.bans(time.time())] == [f"{ATTACKER}/32"]
    await asyncio.sleep(0.25)
    assert denied(await login(w.b, "alice", "secret", ATTACKER), DenyReason.BLOCKED)
    # The flush subscription came back too.
    await poll(store.subscribed.is_set, "the flush subscription to be restored")
    b_store = w.b.guard.store
    assert isinstance(b_store, RedisStore)
    await poll(b_store.subscribed.is_set, "b's flush subscription to be restored")
    # (Restoring it flushed b's whole cache: flushes sent meanwhile were lost.)
    assert len(w.b.cache) == 0
    assert isinstance(await login(w.b, "bob", "bobpw", OWNER), Accepted)
    assert len(w.b.cache) == 1
    await w.a.flush_cache(["bob"])
    await poll(lambda: len(w.b.cache) == 0, "a flush to reach b after the restart")


async def test_workers_start_and_answer_while_redis_is_down(
    workers: Factory, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path / "later")  # nothing listens on its port yet
    (tmp_path / "later").mkdir()
    w = await workers(server)
    try:
        assert isinstance(await login(w.a, "alice", "secret", OWNER), Accepted)
        assert denied(await login(w.b, "alice", "nope", OWNER), DenyReason.CREDENTIALS)
        assert degraded(w.a) and w.a.guard.store_errors > 0
        server.start()
        await asyncio.sleep(0.25)  # > retry_interval
        for i in range(3):
            await login(w.a, "bob", f"guess{i}", ATTACKER)
        assert not degraded(w.a)
        await asyncio.sleep(0.25)
        assert denied(await login(w.b, "bob", "bobpw", ATTACKER), DenyReason.BLOCKED)
    finally:
        server.stop()
