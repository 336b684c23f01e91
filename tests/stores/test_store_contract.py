"""The GuardStore contract: MemoryStore (the reference) and RedisStore pass every test.

Time: every method takes ``now`` and the logic follows it (window indexes, ban and
member expiry), so most tests move ``now`` forward instead of sleeping. ``now``
stays close to the real clock, because Redis also expires its keys after the same
durations in real seconds (garbage collection); the tests marked "real time" use
TTLs of a few tenths of a second and really wait, and must hold for both stores.
A Redis-only behaviour belongs in test_redis_store.py, not here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mailwarden.guard.stores.base import Ban, GuardStore
from mailwarden.guard.stores.memory import MemoryStore
from mailwarden.guard.stores.redis import RedisStore
from tests.redisserver import RedisServer
from tests.stores.conftest import redis_config

MINUTE = 60.0
NET = "192.0.2.0/24"
IP = "192.0.2.9/32"


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[GuardStore]:
    backend: GuardStore
    if request.param == "memory":
        backend = MemoryStore()
    else:
        server: RedisServer = request.getfixturevalue("redis_session")
        backend = await RedisStore.open(redis_config(server))
    yield backend
    await backend.close()


def half_past() -> float:
    """Half-way through the current minute (and hour-aligned windows stay aligned)."""
    return math.floor(time.time() / 3600) * 3600 + 30.0


async def wait_for(condition: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- windows


async def test_hits_are_counted_in_a_sliding_window(store: GuardStore) -> None:
    t = half_past()
    counter = [(f"ip|{IP}", MINUTE)]
    assert [await store.hit(counter, t) for _ in range(3)] == [[1.0], [2.0], [3.0]]
    assert await store.counts(counter, t) == [3.0]
    # Half-way through the next window, the previous one weighs half.
    assert await store.counts(counter, t + 60) == [1.5]
    assert await store.hit(counter, t + 60) == [2.5]
    assert await store.counts(counter, t + 120) == [0.5]
    assert await store.counts(counter, t + 150) == [0.0]


async def test_a_window_is_forgotten_after_two_periods(store: GuardStore) -> None:
    t = half_past()
    counter = [(f"ip|{IP}", MINUTE)]
    await store.hit(counter, t)
    await store.hit(counter, t)
    assert await store.counts(counter, t + 120) == [0.0]
    assert await store.hit(counter, t + 120) == [1.0]


async def test_one_hit_counts_in_every_window_given_and_counts_does_not_count(
    store: GuardStore,
) -> None:
    t = half_past()
    counters = [(f"ip|{IP}", MINUTE), (f"net|{NET}", 3600.0), ("account|account:alice", 600.0)]
    assert await store.hit(counters, t) == [1.0, 1.0, 1.0]
    assert await store.hit(counters[1:], t) == [2.0, 2.0]
    assert await store.counts(counters, t) == [1.0, 2.0, 2.0]
    assert await store.counts(counters, t) == [1.0, 2.0, 2.0]
    assert await store.counts([("ip|198.51.100.1/32", MINUTE)], t) == [0.0]
    assert await store.hit([], t) == []


async def test_windows_expire_in_real_time(store: GuardStore) -> None:
    counter = [(f"ip|{IP}", 0.2)]
    await store.hit(counter, time.time())
    await store.hit(counter, time.time())
    await asyncio.sleep(0.45)
    assert await store.counts(counter, time.time()) == [0.0]
    assert await store.hit(counter, time.time()) == [1.0]


# --------------------------------------------------------------------------- bans


async def test_a_ban_holds_until_it_expires(store: GuardStore) -> None:
    t = time.time()
    await store.ban(NET, "net", 600.0, t)
    assert await store.banned([IP, NET], t) == NET
    assert await store.banned([IP], t) is None
    assert await store.banned([], t) is None
    assert await store.banned([IP, NET], t + 599) == NET
    assert await store.banned([IP, NET], t + 600) is None


async def test_bans_are_listed_with_rule_and_expiry(store: GuardStore) -> None:
    t = time.time()
    await store.ban(NET, "net", 600.0, t)
    await store.ban(IP, "ip", 60.0, t)
    await store.ban("account:alice", "account", 3600.0, t)
    assert await store.bans(t) == [
        Ban(target=NET, rule="net", expires=t + 600.0),
        Ban(target=IP, rule="ip", expires=t + 60.0),
        Ban(target="account:alice", rule="account", expires=t + 3600.0),
    ]
    assert [b.target for b in await store.bans(t + 120)] == [NET, "account:alice"]


async def test_a_longer_ban_is_kept_and_a_shorter_one_extended(store: GuardStore) -> None:
    t = time.time()
    await store.ban(NET, "net", 600.0, t)
    await store.ban(NET, "ip", 60.0, t)
    assert await store.bans(t) == [Ban(target=NET, rule="net", expires=t + 600.0)]
    await store.ban(NET, "ip", 600.0, t + 100)
    assert await store.bans(t) == [Ban(target=NET, rule="ip", expires=t + 700.0)]
    assert await store.banned([NET], t + 650) == NET


async def test_bans_expire_in_real_time(store: GuardStore) -> None:
    t = time.time()
    await store.ban(IP, "ip", 1.0, t)
    assert await store.banned([IP], t) == IP
    await asyncio.sleep(1.1)
    assert await store.banned([IP], time.time()) is None
    assert await store.bans(time.time()) == []


async def test_unban_lifts_the_ban_and_resets_only_that_targets_counters(
    store: GuardStore,
) -> None:
    t = half_past()
    mine = [(f"ip|{IP}", MINUTE), (f"other|{IP}", 3600.0)]
    others = [(f"net|{NET}", 3600.0), ("ip|192.0.2.99/32", MINUTE), (f"ip|{IP}x", MINUTE)]
    await store.hit(mine + others, t)
    await store.ban(IP, "ip", 600.0, t)
    await store.ban(NET, "net", 600.0, t)
    assert await store.unban(IP) == 1
    assert await store.banned([IP], t) is None
    assert await store.banned([NET], t) == NET
    assert await store.counts(mine, t) == [0.0, 0.0]
    assert await store.counts(others, t) == [1.0, 1.0, 1.0]
    assert await store.unban(IP) == 0
    # Counters are reset even when there is no ban.
    await store.hit(mine, t)
    assert await store.unban(IP) == 0
    assert await store.counts(mine, t) == [0.0, 0.0]


async def test_a_two_part_target_resets_exactly_the_counter_ending_in_it(
    store: GuardStore,
) -> None:
    """The guard forgives an owner's typos with ``unban("<network>|<uid>")``: the
    one counter ``known-net|<network>|<uid>`` is reset, nothing else."""
    t = half_past()
    typos = [(f"known-net|{NET}|bob", 3600.0)]
    others = [
        (f"known-net|{NET}|rebob", 3600.0),
        ("known-net|192.0.3.0/24|bob", 3600.0),
        ("account|account:bob", 3600.0),
        (f"net|{NET}", 3600.0),
    ]
    await store.hit(typos + others, t)
    assert await store.unban(f"{NET}|bob") == 0
    assert await store.counts(typos, t) == [0.0]
    assert await store.counts(others, t) == [1.0] * 4


async def test_unban_everything(store: GuardStore) -> None:
    t = half_past()
    counters = [(f"ip|{IP}", MINUTE), (f"net|{NET}", 3600.0)]
    await store.hit(counters, t)
    await store.ban(IP, "ip", 600.0, t)
    await store.ban("account:bob", "account", 600.0, t)
    await store.add_member("known|bob", NET, 3600.0, 8, t)
    assert await store.unban(None) == 2
    assert await store.bans(t) == []
    assert await store.counts(counters, t) == [0.0, 0.0]
    # Known networks are not bans: they stay.
    assert await store.has_member("known|bob", NET, t)
    assert await store.unban(None) == 0


# --------------------------------------------------------------------------- sets


async def test_members_are_new_once_and_expire(store: GuardStore) -> None:
    t = time.time()
    assert await store.add_member("known|alice", NET, 100.0, 8, t) is True
    assert await store.add_member("known|alice", NET, 100.0, 8, t + 1) is False
    assert await store.has_member("known|alice", NET, t + 50)
    assert not await store.has_member("known|alice", "198.51.100.0/24", t)
    assert not await store.has_member("known|bob", NET, t)
    # Kept ``ttl`` after the last add.
    assert await store.has_member("known|alice", NET, t + 100.5)
    assert not await store.has_member("known|alice", NET, t + 101)
    assert await store.add_member("known|alice", NET, 100.0, 8, t + 101) is True


async def test_a_set_keeps_only_its_newest_members(store: GuardStore) -> None:
    t = time.time()
    for i in range(5):
        await store.add_member("history", f"m{i}", 100.0, 3, t + i)
    await store.add_member("history", "m2", 100.0, 3, t + 5)  # m2 becomes the newest
    await store.add_member("history", "m5", 100.0, 3, t + 6)
    present = [
        m
        for m in ("m0", "m1", "m2", "m3", "m4", "m5")
        if await store.has_member("history", m, t + 6)
    ]
    assert present == ["m2", "m4", "m5"]


async def test_members_expire_in_real_time(store: GuardStore) -> None:
    await store.add_member("known|alice", NET, 0.2, 8, time.time())
    await asyncio.sleep(0.35)
    assert not await store.has_member("known|alice", NET, time.time())
    assert await store.add_member("known|alice", NET, 0.2, 8, time.time()) is True


# --------------------------------------------------------------------------- flushes


async def test_a_flush_reaches_every_subscriber_including_the_publisher(
    store: GuardStore,
) -> None:
    first: list[list[str] | None] = []
    second: list[list[str] | None] = []
    await store.subscribe_flush(first.append)
    await store.subscribe_flush(second.append)
    await store.publish_flush(["alice", "alice@example.com"])
    await store.publish_flush(None)
    await wait_for(lambda: len(first) == 2 and len(second) == 2, "both flushes")
    assert first == second == [["alice", "alice@example.com"], None]


async def test_ping_answers(store: GuardStore) -> None:
    await store.ping()
