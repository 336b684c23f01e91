"""The guard and the verified-login cache under a realistic mix (issue #7).

``--users`` accounts with SHA512-CRYPT passwords, picked Zipf-distributed
(exponent ``--zipf``: a few very busy mailboxes, a long tail), each user with a
home address of its own. The mix:

* 90% repeat logins with the right password from the user's home address
  (each user in a /24 of its own, or ``--users-per-net`` users per /24: an office);
* 5% stale wrong passwords (one fixed wrong password per user, from home: a phone
  that still has the old password);
* 5% password spraying from a few /24 networks, random hosts, random passwords,
  against Zipf-picked users.

The engine runs in-process (``Engine.authenticate`` with ``remote_ip`` set, the
default guard rules, nothing allow-listed, ``account_delay`` 0 so the account
protection's deliberate slowing does not stand in for throughput) with the cache
on, then off. ``--store redis --redis-url URL`` keeps the guard's state in that
Redis (under a key prefix of its own, deleted afterwards) instead of memory.

Bounded: each run stops after ``--count`` logins or ``--seconds`` seconds.

Usage: ``python bench/guard_mix.py [--users N] [--seconds S] [--count N]
[--concurrency C] [--store memory|redis] [--redis-url URL]``
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import functools
import itertools
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers import make_config

from mailwarden import schemes
from mailwarden.auth.engine import Engine
from mailwarden.config import GuardConfig, RedisConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.guard.policy import Guard
from mailwarden.guard.stores.base import GuardStore
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Accepted, Account, AuthAttempt, Denied, Password

SPRAY_NETWORKS = ("203.0.113", "192.0.2", "198.51.100")


@dataclasses.dataclass
class Mix:
    users: int
    per_net: int
    cum_weights: list[float]
    rng: random.Random

    def user(self) -> int:
        x = self.rng.random() * self.cum_weights[-1]
        return bisect.bisect_left(self.cum_weights, x)

    def next(self) -> tuple[str, str, str, str]:
        """(kind, user, password, remote ip)"""
        r = self.rng.random()
        i = self.user()
        if r < 0.90:
            return "good", f"user{i}", f"pw{i}", home(i, self.per_net)
        if r < 0.95:
            return "stale", f"user{i}", f"old{i}", home(i, self.per_net)
        net = self.rng.choice(SPRAY_NETWORKS)
        ip = f"{net}.{self.rng.randrange(1, 255)}"
        return "spray", f"user{i}", secrets.token_hex(6), ip


def home(i: int, per_net: int) -> str:
    """User ``i``'s address: ``per_net`` users share each /24 (1: every user its own)."""
    net, host = divmod(i, per_net)
    return f"100.{64 + net // 256}.{net % 256}.{host + 1}"


async def populate(users: int) -> MemoryDirectory:
    directory = MemoryDirectory()
    hasher = Hasher(workers=2)
    stored: list[str] = []
    try:
        for start in range(0, users, 256):  # within the pool's queue limit
            stored += await asyncio.gather(
                *(
                    hasher.run(
                        functools.partial(schemes.generate, f"pw{i}".encode(), "SHA512-CRYPT")
                    )
                    for i in range(start, min(users, start + 256))
                )
            )
    finally:
        hasher.close()
    for i, value in enumerate(stored):
        await directory.create(Account(uid=f"user{i}", password=value))
    return directory


async def open_store(args: argparse.Namespace) -> GuardStore | None:
    if args.store != "redis":
        return None
    from mailwarden.guard.stores.redis import RedisStore  # noqa: PLC0415 - only with --store redis

    prefix = f"bench-{secrets.token_hex(4)}:"
    return await RedisStore.open(RedisConfig(url=args.redis_url, key_prefix=prefix, timeout=2.0))


async def drop_keys(store: GuardStore) -> None:
    from mailwarden.guard.stores.redis import RedisStore  # noqa: PLC0415

    if isinstance(store, RedisStore):
        keys = [k async for k in store.client.scan_iter(match=f"{store.prefix}*", count=1000)]
        for at in range(0, len(keys), 500):
            await store.client.delete(*keys[at : at + 500])


async def run(args: argparse.Namespace, directory: MemoryDirectory, cache: bool) -> None:
    guard_config = GuardConfig(allow_networks=(), account_delay=0.0, store=args.store)
    config = make_config(
        passwords={"scheme": "SHA512-CRYPT", "rehash": "never"},
        cache={"enabled": cache},
    )
    config = dataclasses.replace(config, guard=guard_config)
    hasher = Hasher(workers=args.workers)
    store = await open_store(args)
    guard = Guard(guard_config, store)
    engine = Engine(directory=directory, hasher=hasher, config=config, guard=guard)
    await engine.start()
    weights = [1.0 / (rank**args.zipf) for rank in range(1, args.users + 1)]
    mix = Mix(
        args.users,
        args.users_per_net,
        list(itertools.accumulate(weights)),
        random.Random(args.seed),
    )
    outcomes: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {"good": [], "stale": [], "spray": []}
    deadline = time.monotonic() + args.seconds
    remaining = args.count

    async def client() -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            kind, user, password, ip = mix.next()
            attempt = AuthAttempt(
                username=user,
                credentials=Password(password.encode()),
                service="imap",
                remote_ip=ip,
            )
            t0 = time.perf_counter()
            outcome = await engine.authenticate(attempt)
            latencies[kind].append(time.perf_counter() - t0)
            if isinstance(outcome, Accepted):
                outcomes[f"{kind}: accepted"] += 1
                assert kind == "good", f"a wrong password was accepted: {attempt}"
            elif isinstance(outcome, Denied):
                outcomes[f"{kind}: {outcome.reason.name.lower()}"] += 1
            else:
                outcomes[f"{kind}: {type(outcome).__name__.lower()}"] += 1

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    bans = await guard.bans()
    everything = sorted(x for v in latencies.values() for x in v)
    good = sorted(latencies["good"])
    lookups = engine.cache.hits + engine.cache.misses
    mode = "on " if cache else "off"
    print(f"cache {mode} store={args.store}: {len(everything)} logins in {elapsed:.1f} s")
    print(f"  auths/s      {len(everything) / elapsed:10.0f}")
    print(f"  p50 / p99    {pct(everything, 50):7.2f} / {pct(everything, 99):.2f} ms (all)")
    print(f"  p50 / p99    {pct(good, 50):7.2f} / {pct(good, 99):.2f} ms (right password)")
    rate = engine.cache.hits / lookups if lookups else 0.0
    print(f"  cache hits   {rate:10.1%} ({engine.cache.hits} of {lookups} cached-scheme checks)")
    print(f"  hashes       {engine.hasher.verifications:10d}")
    print(f"  bans         {len(bans):10d} ({', '.join(sorted(b.target for b in bans)[:6])})")
    print(f"  store errors {guard.store_errors:10d}")
    for key in sorted(outcomes):
        print(f"    {key:24s} {outcomes[key]:8d}")
    if store is not None:
        await drop_keys(store)
    await guard.close()
    hasher.close()


def pct(values: list[float], p: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100)[p - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per run")
    parser.add_argument("--count", type=int, default=100_000, help="logins per run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="hashing processes")
    parser.add_argument(
        "--users-per-net", type=int, default=1, help="users sharing one /24 (an office NAT)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--no-off", action="store_true", help="skip the cache-off run")
    args = parser.parse_args()

    async def go() -> None:
        t0 = time.monotonic()
        directory = await populate(args.users)
        print(f"{args.users} SHA512-CRYPT accounts made in {time.monotonic() - t0:.1f} s")
        await run(args, directory, cache=True)
        if not args.no_off:
            await run(args, directory, cache=False)

    asyncio.run(go())


if __name__ == "__main__":
    main()
