"""The pipelined Dovecot-auth load generator shared by bench/dovecot_load.py and bench/compare.py.

Each generator process opens ``conns`` connections to a Dovecot auth *client*
socket (a UNIX path, or ``inet:HOST:PORT``), does the handshake and keeps
``inflight`` ``AUTH PLAIN`` requests in flight on each until ``seconds`` have
passed or its share of ``requests`` is spent. What each request asks is decided
by a :class:`Workload` (picklable, so it crosses into generator processes):

* ``single`` — one user and password, again and again;
* ``cold``   — ``user<i>``/``pw<i>`` walking through the accounts, every login a
  different user (no cache can help), each process from its own offset;
* ``mix``    — the realistic mix of the guard issue: users drawn from a Zipf
  distribution (s = 1.1); 90 % log in with the right password from their own
  network, 5 % retry a stale wrong password, 5 % are password spraying from four
  attacker addresses (random existing users and made-up names, random passwords).

Every request carries ``no-penalty`` (Dovecot: skip the per-IP penalty) and a
``rip``; the servers must run without failure delay. :func:`echo_server` answers
every AUTH at once without any work: the generator's own ceiling.

Generator processes and the echo server start with the ``forkserver`` method
(bench/children.py says why), and :func:`run` never waits longer than the load's
time plus :data:`MARGIN`: a stuck run raises :class:`children.Stuck`.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import multiprocessing.synchronize
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import children

READ_TIMEOUT = 30.0
"""A reply that takes longer than this ends the run with an error (server stuck)."""

MARGIN = READ_TIMEOUT + 15.0
"""How much longer than its ``seconds`` a run may take before it counts as stuck."""

ZIPF_S = 1.1
ATTACKERS = ("203.0.113.7", "203.0.113.8", "198.51.100.77", "198.51.100.78")


@dataclass(frozen=True)
class Workload:
    kind: str = "single"  # single | cold | mix
    user: str = "alice"
    password: str = "secret"
    accounts: int = 1  # cold / mix: user0 .. user<accounts-1>, password pw<i>
    prefix: str = "user"


@dataclass
class Totals:
    """What one process saw: replies by kind and every latency, in seconds."""

    replies: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    sent_by_kind: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Load:
    address: str
    workload: Workload
    conns: int = 8
    inflight: int = 32
    seconds: float = 10.0
    requests: int = 1_000_000
    procs: int = 1


Request = tuple[str, str, str, str]  # user, password, rip, kind


def planner(workload: Workload, seed: int) -> Callable[[], Request]:
    """A function returning the next request's (user, password, rip, kind)."""
    rng = random.Random(seed)
    w = workload
    if w.kind == "single":
        return lambda: (w.user, w.password, "10.0.0.1", "right")
    if w.kind == "cold":
        counter = [rng.randrange(w.accounts)]

        def cold() -> Request:
            i = counter[0] % w.accounts
            counter[0] += 1
            return f"{w.prefix}{i}", f"pw{i}", _home(i), "right"

        return cold
    if w.kind == "mix":
        weights = [1.0 / (rank**ZIPF_S) for rank in range(1, w.accounts + 1)]
        cumulative = []
        total = 0.0
        for weight in weights:
            total += weight
            cumulative.append(total)
        # Ranks are shuffled onto user numbers so that popular users are not user0..9.
        order = list(range(w.accounts))
        random.Random(42).shuffle(order)

        def zipf_user() -> int:
            return order[bisect.bisect_left(cumulative, rng.random() * total)]

        def mix() -> Request:
            roll = rng.random()
            if roll < 0.90:
                i = zipf_user()
                return f"{w.prefix}{i}", f"pw{i}", _home(i), "right"
            if roll < 0.95:
                i = zipf_user()
                return f"{w.prefix}{i}", f"old-pw{i}", _home(i), "stale"
            attacker = ATTACKERS[rng.randrange(len(ATTACKERS))]
            if rng.random() < 0.5:
                user = f"{w.prefix}{rng.randrange(w.accounts)}"
            else:
                user = f"guess{rng.randrange(10**9)}"
            return user, f"spray{rng.randrange(10**9)}", attacker, "spray"

        return mix
    raise ValueError(f"unknown workload {w.kind!r}")


def _home(i: int) -> str:
    """A user's own network (stable per user, outside every allow-list)."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}"


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("inet:"):
        host, _, port = address[5:].rpartition(":")
        return await asyncio.open_connection(host, int(port), limit=1 << 20)
    return await asyncio.open_unix_connection(address, limit=1 << 20)


async def _connection(
    load: Load, number: int, budget: list[int], totals: Totals, deadline: float
) -> None:
    """One connection: handshake, then keep ``inflight`` requests going."""
    reader, writer = await connect(load.address)
    writer.write(b"VERSION\t1\t2\nCPID\t%d\n" % (os.getpid() * 1000 + number))
    while (await asyncio.wait_for(reader.readline(), READ_TIMEOUT)).rstrip(b"\n") != b"DONE":
        pass
    plan = planner(load.workload, os.getpid() * 1000 + number)
    sent: dict[int, float] = {}
    next_id = 0

    def send() -> None:
        nonlocal next_id
        if budget[0] <= 0 or time.monotonic() >= deadline:
            return
        budget[0] -= 1
        next_id += 1
        user, password, rip, kind = plan()
        totals.sent_by_kind[kind] += 1
        resp = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        sent[next_id] = time.monotonic()
        writer.write(
            b"AUTH\t%d\tPLAIN\tservice=imap\trip=%s\tno-penalty\tresp=%s\n"
            % (next_id, rip.encode(), resp)
        )

    for _ in range(load.inflight):
        send()
    while sent:
        line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
        if not line:
            raise ConnectionError("the server closed the connection")
        fields = line.rstrip(b"\n").split(b"\t")
        kind = fields[0].decode()
        totals.replies[kind if kind in ("OK", "FAIL") else "other"] += 1
        started = sent.pop(int(fields[1]), None) if len(fields) > 1 else None
        if started is not None:
            totals.latencies.append(time.monotonic() - started)
        send()
    writer.close()


async def _run(load: Load, share: int) -> Totals:
    totals = Totals()
    budget = [share]
    started = time.monotonic()
    deadline = started + load.seconds
    await asyncio.gather(
        *(_connection(load, n, budget, totals, deadline) for n in range(load.conns))
    )
    totals.elapsed = time.monotonic() - started
    return totals


def _run_process(args: tuple[Load, int]) -> Totals:
    load, share = args
    return asyncio.run(asyncio.wait_for(_run(load, share), load.seconds + MARGIN))


@dataclass(frozen=True)
class Result:
    replies: Counter[str]
    sent_by_kind: Counter[str]
    count: int
    elapsed: float
    rate: float
    p50: float
    p99: float

    def line(self) -> str:
        kinds = " ".join(f"{k}={self.replies[k]}" for k in ("OK", "FAIL", "other"))
        return (
            f"{kinds} in {self.elapsed:.1f} s: {self.rate:.0f} auths/s, "
            f"p50 {self.p50 * 1000:.1f} ms, p99 {self.p99 * 1000:.1f} ms"
        )


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def run(load: Load) -> Result:
    """Run the load (in ``load.procs`` processes) and summarise it."""
    shares = [
        load.requests // load.procs + (i < load.requests % load.procs) for i in range(load.procs)
    ]
    started = time.monotonic()
    try:
        if load.procs == 1:
            results = [_run_process((load, shares[0]))]
        else:
            results = children.map_bounded(
                _run_process,
                [(load, share) for share in shares],
                processes=load.procs,
                # the workers' own wait_for ends them first; this covers a hung worker
                timeout=load.seconds + MARGIN + 10.0,
                what=f"load on {load.address}",
            )
    except TimeoutError as exc:  # a reply over READ_TIMEOUT, or the whole run over
        raise children.Stuck(f"load on {load.address}", time.monotonic() - started) from exc
    replies: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    latencies: list[float] = []
    for totals in results:
        replies.update(totals.replies)
        sent.update(totals.sent_by_kind)
        latencies.extend(totals.latencies)
    latencies.sort()
    elapsed = max(totals.elapsed for totals in results)
    count = sum(replies.values())
    return Result(
        replies=replies,
        sent_by_kind=sent,
        count=count,
        elapsed=elapsed,
        rate=count / elapsed if elapsed else 0.0,
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
    )


# --------------------------------------------------------------------------- echo server


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\nCOOKIE\t0\nDONE\n")
    try:
        while line := await reader.readline():
            if line.startswith(b"AUTH\t"):
                request_id = line.split(b"\t", 2)[1]
                writer.write(b"OK\t%s\tuser=x\n" % request_id)
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _echo_main(path: str, ready: multiprocessing.synchronize.Event) -> None:
    server = await asyncio.start_unix_server(_echo, path)
    ready.set()
    async with server:
        await server.serve_forever()


def _echo_process(path: str, ready: multiprocessing.synchronize.Event) -> None:
    asyncio.run(_echo_main(path, ready))


def echo_server(path: str) -> multiprocessing.process.BaseProcess:
    """Start a process answering every AUTH on ``path`` with OK, doing nothing else.
    The caller ends it with :func:`children.reap` after ``kill()``."""
    ready = children.MP.Event()
    proc = children.MP.Process(target=_echo_process, args=(path, ready), daemon=True)
    proc.start()
    if not ready.wait(30):
        proc.kill()
        children.reap(proc)
        raise RuntimeError("the echo server did not start")
    return proc
