"""What verifying an app password costs (docs/credentials.md, "Why a fast digest").

Two figures, each the best of ``--rounds`` rounds of ``--count`` calls:

* ``matching``: the password path's own work — recognise the prefix, one keyed
  digest, compare it with each of the account's app passwords — for an account
  with 1, 10 and 100 of them (the right one last);
* ``authenticate``: a whole :meth:`Engine.authenticate` with an app password on the
  in-memory directory (lookup, guard off, access policy, last-use note), beside the
  same login with a ``{PLAIN}`` main password.

Usage: ``python bench/app_passwords.py [--count N] [--rounds K]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable

from mailwarden.accounts.apppasswords import issue
from mailwarden.auth.apppasswords import matching
from mailwarden.auth.engine import Engine
from mailwarden.config import Config, GuardConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account, AuthAttempt, Password


def account_with(n: int) -> tuple[Account, str]:
    """An account with ``n`` app passwords, and the value of the last one."""
    made = [issue(name=f"device {i}", now=time.time()) for i in range(n)]
    apps = tuple(dataclasses.replace(m.app_password, created=i) for i, m in enumerate(made))
    account = Account(uid="alice", password="{PLAIN}secret", app_passwords=apps)
    return account, made[-1].value


def best_us(rounds: int, count: int, call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(count):
            call()
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1e6


async def engine_us(rounds: int, count: int, secret: str, account: Account) -> float:
    directory = MemoryDirectory([account])
    hasher = Hasher(workers=1)
    base = Config()
    # No rehash of the {PLAIN} main password: this measures logins, not the hashing pool.
    config = dataclasses.replace(
        base,
        guard=GuardConfig(enabled=False),
        passwords=dataclasses.replace(base.passwords, rehash="never"),
    )
    engine = Engine(directory=directory, hasher=hasher, config=config)
    attempt = AuthAttempt(username="alice", credentials=Password.from_text(secret), service="imap")
    try:
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(count):
                await engine.authenticate(attempt)
            best = min(best, (time.perf_counter() - start) / count)
        await engine.drain()
    finally:
        hasher.close()
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for n in (1, 10, 100):
        account, value = account_with(n)
        password = Password.from_text(value)
        us = best_us(
            args.rounds, args.count, functools.partial(matching, password, account, "imap", 0.0)
        )
        print(f"matching, {n:3d} app passwords: {us:7.2f} us")
    account, value = account_with(10)
    for what, secret in (("app password", value), ("{PLAIN} password", "secret")):
        us = asyncio.run(engine_us(args.rounds, args.count, secret, account))
        print(f"authenticate, {what}: {us:7.2f} us")


if __name__ == "__main__":
    main()
