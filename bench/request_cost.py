"""The CPU cost of one request on the Dovecot client socket, without the sockets.

Issue #8's scenario (3) — {PLAIN} passwords, pipelined — measures protocol, engine
and event loop; on a 2-core machine its figure swings by ±30 % between runs because
the load generator shares the cores. This bench takes the kernel and the generator
out: one :class:`~mailwarden.frontends.dovecot_client.ClientConnection` runs on the
daemon's event loop (uvloop) with the daemon's engine (SQLite directory with its
login cache, guard on, metrics on, log level warning), its reader fed batches of
pipelined ``AUTH PLAIN`` lines and its writer counting the replies. It prints the
process CPU time per request: the best and the median of ``--rounds`` rounds
(the best is the steadiest figure on a shared machine).

``--profile FILE`` writes a cProfile of the measured rounds (read it with
``python -m pstats FILE``); ``--wrong`` sends wrong passwords instead.

``--cold-plain``: scenario (7)'s {PLAIN} logins at 100k accounts and more: the caches
as the daemon has them, but every request a user (and an address) not seen before,
so each pays a directory read, the guard's first sight of an address and a new
verified-login cache entry, and no hash.

``--history``: with the login history on (issue #20; ``--history-repeat SECONDS``
sets its ``repeat_seconds``, 0: every login written), to compare with it off.

``--cold``: the cost in the daemon's own process of a login no cache can help,
as in issue #8's scenario (1): SHA512-CRYPT accounts (1000 rounds: the hash runs
in the worker processes, whose CPU is not counted here), no directory cache, no
verified-login cache, every request a user and an address not seen before.

Usage: ``python bench/request_cost.py [--accounts N] [--batch B] [--requests R]
[--rounds K] [--wrong] [--profile FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from mailwarden import schemes
from mailwarden.app import running_app
from mailwarden.config import loads
from mailwarden.frontends.dovecot_client import ClientConnection
from mailwarden.frontends.dovecot_common import DovecotState
from mailwarden.loop import run_loop
from mailwarden.metrics import Metrics
from mailwarden.model import Account

CONFIG = """\
[directory]
path = "{root}/accounts.db"
cache_size = {directory_cache}

[cache]
enabled = {cache}

[passwords]
scheme = "{scheme}"
rehash = "never"

[log]
level = "warning"

[guard]
allow_networks = []
"""


class _Transport:
    def abort(self) -> None:
        pass


class CountingWriter:
    """The part of asyncio.StreamWriter a connection uses; counts reply lines."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.lines = 0
        self.wanted = 0
        self.done = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.lines += data.count(b"\n")
        if self.lines >= self.wanted:
            self.done.set()

    async def drain(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return None

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def accounts(count: int, *, cold: bool) -> Iterator[Account]:
    for i in range(count):
        if cold:
            stored = schemes.generate(f"pw{i}".encode(), "SHA512-CRYPT", rounds=1000)
        else:
            stored = f"{{PLAIN}}pw{i}"
        yield Account(uid=f"user{i}", password=stored)


def batch(first: int, count: int, accounts: int, *, wrong: bool) -> bytes:
    lines = []
    for n in range(first, first + count):
        i = n % accounts
        password = f"x{i}" if wrong else f"pw{i}"
        resp = base64.b64encode(f"\0user{i}\0{password}".encode()).decode()
        rip = f"10.{(i >> 8) & 255}.{i & 255}.1"
        lines.append(f"AUTH\t{n + 1}\tPLAIN\tservice=imap\trip={rip}\tno-penalty\tresp={resp}\n")
    return "".join(lines).encode()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold or args.cold_plain:
            args.accounts = args.requests * (args.rounds + 1)
        config = loads(
            CONFIG.format(
                root=tmp,
                directory_cache=0 if args.cold else 10000,
                cache="false" if args.cold else "true",
                scheme="SHA512-CRYPT" if args.cold else "PLAIN",
            )
            + (
                f"\n[history]\nenabled = true\nrepeat_seconds = {args.history_repeat}\n"
                if args.history
                else ""
            )
        )
        async with running_app(config, create=True, daemon=args.cold) as app:
            await app.directory.bulk_upsert(accounts(args.accounts, cold=args.cold), replace=False)
            app.engine.metrics = Metrics()
            state = DovecotState(app.engine, config.dovecot)
            reader = asyncio.StreamReader(limit=1 << 24)
            writer = CountingWriter()
            conn = ClientConnection(
                state,
                reader,
                writer,  # type: ignore[arg-type]
                login=False,
                label="bench",
                cookie=b"\0" * 16,
            )
            task = asyncio.get_running_loop().create_task(conn.run())
            reader.feed_data(b"VERSION\t1\t2\nCPID\t1\n")
            sent = 0

            async def round_(requests: int) -> float:
                nonlocal sent
                started = time.process_time()
                end = sent + requests
                while sent < end:
                    count = min(args.batch, end - sent)
                    writer.wanted = writer.lines + count
                    writer.done.clear()
                    reader.feed_data(batch(sent, count, args.accounts, wrong=args.wrong))
                    sent += count
                    await writer.done.wait()
                return (time.process_time() - started) / requests

            # Warm-up: every account once (cold: one round of users never seen again).
            await round_(args.requests if args.cold or args.cold_plain else args.accounts)
            profile = cProfile.Profile() if args.profile else None
            if profile is not None:
                profile.enable()
            costs = [await round_(args.requests) for _ in range(args.rounds)]
            if profile is not None:
                profile.disable()
                profile.dump_stats(args.profile)
            reader.feed_eof()
            await task
    print(
        f"{'wrong' if args.wrong else 'right'} "
        f"{'SHA512-CRYPT, cold' if args.cold else '{PLAIN}'}"
        f"{', every user new' if args.cold_plain else ''} passwords, batches of {args.batch}"
        f"{f', history on (repeat {args.history_repeat} s)' if args.history else ''}: "
        f"{min(costs) * 1e6:.1f} µs CPU per request at best, "
        f"{statistics.median(costs) * 1e6:.1f} µs median "
        f"(rounds: {', '.join(f'{c * 1e6:.1f}' for c in costs)})"
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--wrong", action="store_true")
    parser.add_argument("--cold", action="store_true")
    parser.add_argument("--cold-plain", action="store_true")
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--history", action="store_true")
    parser.add_argument("--history-repeat", type=int, default=300, metavar="SECONDS")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_loop(main(parse_args(sys.argv[1:])))
