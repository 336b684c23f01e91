"""The guard over a Sentinel-managed primary that dies under load (issue 17).

A real primary, its replica (``replicaof``) and three real Sentinels (quorum 2, a
master is down after 0.5 s), each on a free loopback port with a directory of its
own; two workers (engines with their own stores, as two nodes) find the primary
through the Sentinels. Logins run on both while the primary is killed (SIGKILL)
and the Sentinels promote the replica.

What docs/guard.md ("When Redis is unreachable", "Sentinel") promises, and so what
is asserted, on both workers, all along:

* every login is answered and a Redis failure never decides one: the right password
  from a clean source is accepted, a wrong password refused as wrong, never
  ``Unavailable``;
* the shared state is never answered wrongly: a source banned before the failure
  (the ban on the replica before the kill) is refused by every ban check answered
  from Redis. Only a check answered from the local state (the guard degraded,
  or its own store call failing) may miss it: bans in Redis are not seen meanwhile;
* after the promotion each worker returns to the shared state on its own: a ban
  made through one worker is refused by the other within 5 s of the Sentinels
  naming the new primary (measured and printed; 5 s is the bound the issue sets,
  not a benchmark), and cache flushes travel between them again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from mailwarden.app import check_backends, running_app
from mailwarden.auth.engine import Engine
from mailwarden.config import RedisConfig
from mailwarden.guard.stores.redis import RedisStore
from mailwarden.model import Accepted, Denied, DenyReason
from tests.helpers import attempt, make_config
from tests.redisserver import SENTINEL_MASTER, FailoverGroup, RedisSentinel, RedisServer, ask
from tests.stores.conftest import WorkersFactory

PREFIX = "failover:"
ATTACKER = "192.0.2.66"  # banned before the primary dies
OWNER = "198.51.100.10"  # never banned
#: Bounds of every loop here (seconds): generous for a loaded 2-core machine.
PROMOTION_LIMIT = 30.0
RECOVERY_BOUND = 5.0
LOAD_LIMIT = 90.0
LOAD_ROUNDS = 5000


@dataclass
class Tally:
    """What the load saw: ban checks answered from Redis and from local state."""

    rounds: int = 0
    from_redis: int = 0
    from_local: int = 0
    let_in_while_local: int = 0
    fresh: itertools.count[int] = field(default_factory=itertools.count)

    def fresh_address(self) -> str:
        """An address no one used before (10.0.0.0/8): its first wrong password."""
        n = next(self.fresh) + 1
        return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


async def ban_check(engine: Engine, ip: str) -> tuple[str | None, bool]:
    """The guard's ban check for ``ip`` and whether Redis answered it: the guard was
    not degraded before it, and no store call failed during it (nothing else runs
    on this worker's guard meanwhile, so a failure counted was this one's)."""
    guard = engine.guard
    source = guard.source(ip)
    assert source is not None
    local_before, errors = guard.degraded, guard.store_errors
    banned = await guard.blocked(source)
    return banned, not local_before and guard.store_errors == errors


async def one_round(engine: Engine, tally: Tally) -> None:
    banned, from_redis = await ban_check(engine, ATTACKER)
    if from_redis:
        tally.from_redis += 1
        assert banned == f"{ATTACKER}/32", "a ban in Redis was missed by an answer from Redis"
    else:
        tally.from_local += 1
        assert banned in (f"{ATTACKER}/32", None)
    guard = engine.guard
    local_before, errors = guard.degraded, guard.store_errors
    outcome = await engine.authenticate(attempt("alice", "secret", remote_ip=ATTACKER))
    if isinstance(outcome, Accepted):
        # Only local state may let the banned source in (documented): the guard was
        # degraded when the login began, or a store call of it (or of another login
        # meanwhile) failed. The probe may have ended the episode by now.
        assert local_before or guard.store_errors > errors, "a banned source let in"
        tally.let_in_while_local += 1
    else:
        assert isinstance(outcome, Denied) and outcome.reason is DenyReason.BLOCKED, outcome
    right, wrong = await asyncio.gather(
        engine.authenticate(attempt("alice", "secret", remote_ip=OWNER)),
        engine.authenticate(attempt("alice", "not-it", remote_ip=tally.fresh_address())),
    )
    assert isinstance(right, Accepted), right
    assert isinstance(wrong, Denied) and wrong.reason is DenyReason.CREDENTIALS, wrong


async def load(engines: tuple[Engine, Engine], tally: Tally, stop: asyncio.Event) -> None:
    """Rounds of logins on both workers until ``stop`` (bounded in count and time)."""
    deadline = time.monotonic() + LOAD_LIMIT
    while not stop.is_set() and tally.rounds < LOAD_ROUNDS and time.monotonic() < deadline:
        await asyncio.gather(*(one_round(e, tally) for e in engines))
        tally.rounds += 1
        await asyncio.sleep(0.01)


async def wait_for(
    condition: object, what: str, limit: float, load_task: asyncio.Task[None]
) -> float:
    """Poll ``condition`` (a callable, maybe async) every 20 ms up to ``limit``
    seconds; the moment it held. A failure of the load surfaces at once."""
    deadline = time.monotonic() + limit
    while True:
        if load_task.done():
            await load_task
            raise AssertionError(f"the load ended before {what}")
        result = condition()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_killing_the_primary_under_load_costs_only_local_state_and_comes_back_in_5_s(
    failover_group: FailoverGroup, workers: WorkersFactory
) -> None:
    group = failover_group
    config = RedisConfig(
        url="redis://ignored/0",
        sentinels=group.addresses,
        sentinel_master=SENTINEL_MASTER,
        key_prefix=PREFIX,
    )  # timeout and retry_interval as shipped (0.5 s, 5 s)
    w = await workers(config)
    engines = (w.a, w.b)
    for i in range(3):
        await w.a.authenticate(attempt("alice", f"guess{i}", remote_ip=ATTACKER))
    ban_key = f"{PREFIX}ban:{ATTACKER}/32"
    # The ban reached the replica: a failover cannot lose it (see docs/guard.md on
    # what asynchronous replication may lose in the last moment).
    deadline = time.monotonic() + 10
    while ask(group.replica.port, lambda c: c.get(ban_key)) is None:
        assert time.monotonic() < deadline, "the ban never reached the replica"
        await asyncio.sleep(0.02)
    for engine in engines:
        assert await ban_check(engine, ATTACKER) == (f"{ATTACKER}/32", True)
        store = engine.guard.store
        assert isinstance(store, RedisStore)
        await store.subscribe_flush(lambda users: None)
        assert store.subscribed.is_set()

    tally = Tally()
    stop = asyncio.Event()
    load_task = asyncio.create_task(load(engines, tally, stop))
    try:
        await wait_for(lambda: tally.rounds >= 20, "the load to run", 30, load_task)
        group.primary.kill()
        killed = time.monotonic()
        await wait_for(
            lambda: all(e.guard.degraded for e in engines), "both to notice", 10, load_task
        )
        for engine in engines:  # what /readyz logs (app.check_backends)
            assert engine.guard.store_problem.startswith(f"redis sentinel master {'mw'!r}")

        async def promoted() -> bool:
            return await asyncio.to_thread(group.master_port) == group.replica.port

        named = await wait_for(promoted, "the Sentinels to name the replica", 30, load_task)
        # From now on: a ban made through a that b answers from Redis. (Each try is a
        # new password: the same ones from the same /24 would count only once.)
        recovered = None
        for n in range(200):
            target = f"203.0.113.{n + 1}"
            a_errors = w.a.guard.store_errors
            clean = not w.a.guard.degraded
            for i in range(3):
                await w.a.authenticate(attempt("bob", f"try{n}.{i}", remote_ip=target))
            if not (clean and w.a.guard.store_errors == a_errors and not w.a.guard.degraded):
                # a used its local state: the ban stayed local. Try again.
                assert time.monotonic() - named < 3 * RECOVERY_BOUND, "a never came back"
                await asyncio.sleep(0.05)
                continue

            async def seen_by_b(ip: str = target) -> bool:
                banned, from_redis = await ban_check(w.b, ip)
                assert banned == f"{ip}/32" or not from_redis, "b's Redis lacks a's ban"
                return from_redis

            recovered = await wait_for(seen_by_b, "b to answer from Redis", 15, load_task)
            break
        assert recovered is not None
        took = recovered - named
        print(  # the measurement the issue asks for (pytest -s shows it)
            f"\nfailover: the Sentinels named the new primary {named - killed:.2f} s after the "
            f"kill; shared state again {took:.2f} s later ({tally.rounds} rounds of load, "
            f"{tally.from_redis} ban checks from Redis, {tally.from_local} from local state, "
            f"{tally.let_in_while_local} banned logins let in while local)"
        )
        assert took < RECOVERY_BOUND, f"shared state back {took:.2f} s after the promotion"
        assert ask(group.replica.port, lambda c: c.exists(f"{PREFIX}ban:{target}/32")) == 1
        # The gap was really crossed: answers came from local state, then from Redis.
        assert tally.from_local > 0
        before = tally.from_redis
        await wait_for(lambda: tally.from_redis > before + 4, "checks from Redis", 15, load_task)
    finally:
        stop.set()
        await load_task
    # The ban made before the kill survived it, on both workers.
    for engine in engines:
        assert not engine.guard.degraded
        assert await ban_check(engine, ATTACKER) == (f"{ATTACKER}/32", True)
    # Flushes travel again (the subscription waits retry_interval, then longer).
    for engine in engines:
        store = engine.guard.store
        assert isinstance(store, RedisStore)
        await asyncio.wait_for(store.subscribed.wait(), 40)
    assert isinstance(await w.b.authenticate(attempt("bob", "bobpw", remote_ip=OWNER)), Accepted)
    cached = len(w.b.cache)
    await w.a.flush_cache(["bob"])
    deadline = time.monotonic() + 10
    while len(w.b.cache) != cached - 1:
        assert time.monotonic() < deadline, "a's flush did not reach b"
        await asyncio.sleep(0.02)


async def test_readyz_names_the_sentinel_master_while_it_has_no_primary(
    sentinel: RedisSentinel, redis_server: RedisServer, tmp_path: Path
) -> None:
    redis = RedisConfig(
        url="redis://ignored/0",
        sentinels=(f"127.0.0.1:{sentinel.port}",),
        sentinel_master=SENTINEL_MASTER,
        key_prefix=PREFIX,
        timeout=1.0,
    )
    config = make_config(
        directory={"path": str(tmp_path / "accounts.db")}, guard={"store": "redis", "redis": redis}
    )
    async with running_app(config, create=True) as app:
        assert await check_backends(app) == {"directory": "ok", "guard_store": "ok"}
        # No login comes: readiness itself notices that the primary is gone.
        redis_server.kill()
        state = (await check_backends(app))["guard_store"]
        assert state.startswith(f"degraded: using local state (redis sentinel master {'mw'!r}: ")
        assert app.engine.guard.degraded
        redis_server.start()  # the Sentinel sees it back (a master with no replica)
        deadline = time.monotonic() + 20
        while (await check_backends(app))["guard_store"] != "ok":
            assert time.monotonic() < deadline, "readiness never came back"
            await asyncio.sleep(0.1)
