"""MemoryStore's sweep: expired windows, sets and bans leave memory, live ones stay,
and the work of a sweep follows what expired, not how much is held.

White-box on purpose: what is tested is the store's memory, which no method shows.
"""

from __future__ import annotations

import asyncio

from mailwarden.guard.stores.memory import MemoryStore

MINUTE = 60.0


def held(store: MemoryStore) -> tuple[int, int, int]:
    return len(store._windows), len(store._sets), len(store._bans)


def test_expired_entries_are_swept_and_live_ones_kept() -> None:
    async def go() -> None:
        store = MemoryStore()
        now = 1_000_000.0
        for i in range(500):
            await store.add_member(f"known|{i}", "net", MINUTE, 8, now)
            await store.hit([(f"rule|{i}", MINUTE)], now)
            await store.ban(f"10.0.{i // 256}.{i % 256}/32", "rule", MINUTE, now)
        # One of each is written again later: its later expiry must keep it.
        later = now + 30
        await store.add_member("known|7", "other", MINUTE, 8, later)
        await store.hit([("rule|7", MINUTE)], later)
        await store.ban("10.0.0.7/32", "rule", MINUTE, later)
        assert held(store) == (500, 500, 500)
        # Past the sets' and bans' first expiry: only the rewritten ones stay.
        t = now + MINUTE + 1
        await store.add_member("fresh", "net", MINUTE, 8, t)
        assert held(store) == (500, 2, 1)
        assert await store.has_member("known|7", "other", t)
        assert await store.banned(["10.0.0.7/32"], t) == "10.0.0.7/32"
        # Windows live two periods: past that, only the one hit again stays.
        t = now + 2 * MINUTE + 1
        await store.add_member("fresh", "net", MINUTE, 8, t)
        assert held(store) == (1, 1, 0)
        assert await store.counts([("rule|7", MINUTE)], t) != [0.0]
        # And the survivor goes in its turn.
        await store.add_member("fresh", "net", MINUTE, 8, later + 2 * MINUTE + 1)
        assert held(store) == (0, 1, 0)

    asyncio.run(go())


def test_the_sweep_heap_stays_bounded_by_what_is_held() -> None:
    async def go() -> None:
        store = MemoryStore()
        now = 1_000_000.0
        # One key refreshed many times: one entry held, the heap must not grow
        # with the writes.
        for i in range(20_000):
            await store.add_member("known|alice", "net", 30 * 86400.0, 8, now + i * 0.001)
        assert held(store) == (0, 1, 0)
        assert len(store._expiries) <= 2 * 1 + 1024 + 1

    asyncio.run(go())
