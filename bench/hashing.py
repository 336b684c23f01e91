"""How password verification scales over threads: 1 thread against one per core.

For SHA512-CRYPT (libxcrypt through ctypes), BLF-CRYPT (the bcrypt package) and
ARGON2ID (argon2-cffi), with their default costs, this runs ``schemes.verify`` on a
ThreadPoolExecutor — first with one worker, then with ``os.cpu_count()`` — and
prints verifications per second and the speed-up. Each worker repeats the
verification until a shared deadline or a shared count is reached, so every
measurement is bounded in both time and work.

Threads scale only because these libraries release the GIL during the hash
(docs/schemes.md, "libxcrypt and the GIL"). Target: SHA512-CRYPT at least 1.8x
faster with 2 threads on 2 idle cores. Other processes on the machine lower the
figure; ``--check`` turns a missed target into exit status 1.

Usage: ``python bench/hashing.py [--seconds 2] [--max-count 4000] [--threads N]
[--scheme SHA512-CRYPT ...] [--check]``
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailwarden import schemes
from mailwarden.schemes import StoredHash

DEFAULT_SCHEMES = ("SHA512-CRYPT", "BLF-CRYPT", "ARGON2ID")
TARGET_SCHEME = "SHA512-CRYPT"
TARGET_SPEEDUP = 1.8
PASSWORD = b"correct horse battery staple"


@dataclass(frozen=True)
class Rate:
    threads: int
    count: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


class _Budget:
    """A shared deadline and verification count; workers stop when either runs out."""

    def __init__(self, seconds: float, max_count: int) -> None:
        self.deadline = time.perf_counter() + seconds
        self.remaining = max_count
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.remaining <= 0 or time.perf_counter() >= self.deadline:
                return False
            self.remaining -= 1
            return True


def _worker(stored: StoredHash, budget: _Budget) -> int:
    done = 0
    while budget.take():
        if not schemes.verify(PASSWORD, stored):
            raise AssertionError("the benchmark hash did not verify")
        done += 1
    return done


def measure(stored: StoredHash, threads: int, seconds: float, max_count: int) -> Rate:
    """Verifications of ``stored`` completed by ``threads`` workers within the budget."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        budget = _Budget(seconds, max_count)
        futures = [pool.submit(_worker, stored, budget) for _ in range(threads)]
        count = sum(future.result() for future in futures)
        elapsed = time.perf_counter() - start
    return Rate(threads=threads, count=count, seconds=elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--max-count", type=int, default=4000, help="verifications per measurement")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (N)")
    parser.add_argument(
        "--scheme", action="append", dest="schemes", help="scheme to measure (repeatable)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    names: list[str] = args.schemes or list(DEFAULT_SCHEMES)
    threads: int = args.threads

    print(f"{os.cpu_count()} CPUs; {threads} threads; at most {args.seconds:g} s and")
    print(f"{args.max_count} verifications per measurement; default costs (HashPolicy())")
    print()
    print(f"{'scheme':<14} {'threads':>7} {'verifications':>13} {'seconds':>8} {'per second':>11}")
    speedups: dict[str, float] = {}
    for name in names:
        stored = schemes.parse(schemes.generate(PASSWORD, name))
        schemes.verify(PASSWORD, stored)  # warm-up: loads libcrypt, first allocations
        rates = [measure(stored, n, args.seconds, args.max_count) for n in (1, threads)]
        for rate in rates:
            print(
                f"{name:<14} {rate.threads:>7} {rate.count:>13} {rate.seconds:>8.2f}"
                f" {rate.per_second:>11.1f}"
            )
        speedups[name] = rates[1].per_second / rates[0].per_second
    print()
    for name, speedup in speedups.items():
        print(f"{name:<14} speed-up with {threads} threads: {speedup:.2f}x")
    target = speedups.get(TARGET_SCHEME)
    if target is None or threads < 2:
        return 0
    met = target >= TARGET_SPEEDUP
    verdict = "met" if met else "MISSED"
    print(f"target: {TARGET_SCHEME} >= {TARGET_SPEEDUP}x with 2+ threads on idle cores: {verdict}")
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
