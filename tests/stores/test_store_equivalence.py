"""Random operation sequences give the same answers from MemoryStore and RedisStore.

Hypothesis draws a sequence of store calls (hits, counts, bans, ban checks and
listings, unbans, set adds and lookups) with ``now`` moving forward by up to 40 s
between calls (starting within the last hour), runs it against both stores and
compares every answer. The TTLs drawn are at least 30 s, so Redis's own expiry (real
seconds, garbage collection only) never acts while an example runs: what is compared
is the logic driven by ``now``. Unban's *count* is not compared: the in-memory
store may count a ban that expired by ``now`` but was not swept yet; the state
afterwards is compared.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwarden.guard.stores.base import GuardStore
from mailwarden.guard.stores.memory import MemoryStore
from mailwarden.guard.stores.redis import RedisStore
from tests.redisserver import RedisServer
from tests.stores.conftest import redis_config

TARGETS = ("192.0.2.0/24", "192.0.2.9/32", "account:alice")
PERIODS = {"ip": 60.0, "net": 600.0}
MEMBERS = ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24", "2001:db8::/64")

counter = st.builds(
    lambda rule, target: (f"{rule}|{target}", PERIODS[rule]),
    st.sampled_from(sorted(PERIODS)),
    st.sampled_from(TARGETS),
)
step = st.floats(min_value=0.0, max_value=40.0)
op = st.one_of(
    st.tuples(st.just("hit"), st.lists(counter, min_size=1, max_size=3)),
    st.tuples(st.just("counts"), st.lists(counter, min_size=1, max_size=3)),
    st.tuples(
        st.just("ban"),
        st.sampled_from(TARGETS),
        st.sampled_from(["ip", "net", "account"]),
        st.floats(min_value=30.0, max_value=600.0),
    ),
    st.tuples(st.just("banned"), st.lists(st.sampled_from(TARGETS), max_size=3)),
    st.tuples(st.just("bans")),
    st.tuples(st.just("unban"), st.one_of(st.none(), st.sampled_from(TARGETS))),
    st.tuples(
        st.just("add"), st.sampled_from(["known|alice", "known|bob"]), st.sampled_from(MEMBERS)
    ),
    st.tuples(
        st.just("has"), st.sampled_from(["known|alice", "known|bob"]), st.sampled_from(MEMBERS)
    ),
)


async def play(
    store: GuardStore, ops: list[tuple[float, tuple[Any, ...]]], start: float
) -> list[Any]:
    now = start
    answers: list[Any] = []
    for delta, (name, *args) in ops:
        now += delta
        if name == "hit":
            answers.append(await store.hit(args[0], now))
        elif name == "counts":
            answers.append(await store.counts(args[0], now))
        elif name == "ban":
            await store.ban(args[0], args[1], args[2], now)
            answers.append(await store.banned([args[0]], now))
        elif name == "banned":
            answers.append(await store.banned(args[0], now))
        elif name == "bans":
            answers.append(await store.bans(now))
        elif name == "unban":
            await store.unban(args[0])
            answers.append(
                (
                    await store.bans(now),
                    await store.counts(
                        [(f"{r}|{t}", p) for r, p in PERIODS.items() for t in TARGETS], now
                    ),
                )
            )
        elif name == "add":
            answers.append(await store.add_member(args[0], args[1], 100.0, 2, now))
        else:
            answers.append(await store.has_member(args[0], args[1], now))
    return answers


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    offset=st.floats(min_value=0.0, max_value=3600.0),
    ops=st.lists(st.tuples(step, op), min_size=1, max_size=40),
)
def test_both_stores_answer_every_sequence_alike(
    redis_session: RedisServer, offset: float, ops: list[tuple[float, tuple[Any, ...]]]
) -> None:
    # Reproducible (Hypothesis replays failures): windows start at the last full hour.
    start = math.floor(time.time() / 3600) * 3600 + offset

    async def run() -> tuple[list[Any], list[Any]]:
        memory = MemoryStore()
        redis = await RedisStore.open(redis_config(redis_session))
        try:
            return await play(memory, ops, start), await play(redis, ops, start)
        finally:
            await redis.close()

    expected, got = asyncio.run(run())
    assert got == expected
