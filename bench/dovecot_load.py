"""Load generator for a Dovecot auth client socket: pipelined AUTH PLAIN.

Opens ``--conns`` connections (per process) to a client socket - a UNIX path, or
``inet:HOST:PORT`` - and keeps ``--inflight`` requests in flight on each until
``--seconds`` have passed or ``--requests`` have been sent in total, whichever
comes first. Every request is ``AUTH <id> PLAIN service=smtp rip=127.0.0.<n>
no-penalty resp=…``; ``rip`` is spread over the connections and ``no-penalty``
asks a Dovecot server to skip its per-IP penalty, so failures measure work, not
sleeping (give Dovecot ``auth_failure_delay = 0`` and mailwarden
``failure_delay = 0`` too). One Python process saturates at some tens of
thousands of requests per second; ``--procs`` runs several.

It prints the replies by kind, the rate, and latency percentiles, e.g.::

    OK=41230 FAIL=0 other=0 in 10.0 s: 4123 auths/s, p50 61.8 ms, p99 80.3 ms

The same tool measures Dovecot's own auth process (reference §6e), for a
side-by-side comparison. Against mailwarden::

    mailwarden --config bench.toml serve &     # [dovecot] failure_delay = 0
    python bench/dovecot_load.py --socket var/run/auth-client --user alice --password secret

Figures on a 2-vCPU VM (10 s runs, one generator process sharing the machine;
mailwarden with its SQLite directory, ``log.level = "warning"``, 2 hash workers;
Dovecot 2.3.19.1 with a passwd-file, penalty off):

=========================================  ===================  ===================
Scenario                                   mailwarden           Dovecot
=========================================  ===================  ===================
``{PLAIN}``, 8 conns x 32 in flight        2.9k/s, p50 84 ms    13k/s, p50 18 ms
``{PLAIN}``, 1 x 1                         1.6k/s, p50 0.6 ms   9.3k/s, p50 0.1 ms
``{SHA512-CRYPT}`` 5000 rounds, 8 x 32     530/s, p50 477 ms    390/s, p50 651 ms
unknown user, 8 x 32                       740/s, p50 320 ms    510/s, p50 500 ms
=========================================  ===================  ===================

With the in-memory directory mailwarden's plaintext figure is 5.3k/s: about half
of the cost per request is the SQLite lookup on its reader threads. An unknown
user pays for a dummy hash in the policy scheme (SHA512-CRYPT here), by design.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

READ_TIMEOUT = 30.0
"""A reply that takes longer than this ends the run with an error (server stuck)."""


@dataclass
class Totals:
    """What one process saw: replies by kind and every latency, in seconds."""

    replies: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0


@dataclass(frozen=True)
class Options:
    socket: str
    user: str
    password: str
    conns: int
    inflight: int
    seconds: float
    requests: int
    procs: int


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="UNIX socket path or inet:HOST:PORT")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--conns", type=int, default=8, help="connections per process")
    parser.add_argument("--inflight", type=int, default=32, help="requests in flight each")
    parser.add_argument("--seconds", type=float, default=10.0, help="stop sending after this")
    parser.add_argument("--requests", type=int, default=1_000_000, help="total request cap")
    parser.add_argument("--procs", type=int, default=1, help="generator processes")
    a = parser.parse_args(argv)
    if min(a.conns, a.inflight, a.procs, a.requests) < 1 or a.seconds <= 0:
        parser.error("counts must be at least 1 and --seconds positive")
    return Options(
        socket=a.socket,
        user=a.user,
        password=a.password,
        conns=a.conns,
        inflight=a.inflight,
        seconds=a.seconds,
        requests=a.requests,
        procs=a.procs,
    )


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("inet:"):
        host, _, port = address[5:].rpartition(":")
        return await asyncio.open_connection(host, int(port))
    return await asyncio.open_unix_connection(address)


async def worker(
    opts: Options, number: int, budget: list[int], totals: Totals, deadline: float
) -> None:
    """One connection: handshake, then keep ``inflight`` requests going."""
    reader, writer = await connect(opts.socket)
    writer.write(b"VERSION\t1\t2\nCPID\t%d\n" % (os.getpid() * 1000 + number))
    while (await asyncio.wait_for(reader.readline(), READ_TIMEOUT)).rstrip(b"\n") != b"DONE":
        pass
    resp = base64.b64encode(b"\0" + opts.user.encode() + b"\0" + opts.password.encode())
    template = b"AUTH\t%d\tPLAIN\tservice=smtp\trip=127.0.0.%d\tno-penalty\tresp=" + resp + b"\n"
    rip = 1 + (os.getpid() + number) % 250
    sent: dict[int, float] = {}
    next_id = 0

    def send() -> None:
        nonlocal next_id
        if budget[0] <= 0 or time.monotonic() >= deadline:
            return
        budget[0] -= 1
        next_id += 1
        sent[next_id] = time.monotonic()
        writer.write(template % (next_id, rip))

    for _ in range(opts.inflight):
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


async def run(opts: Options, share: int) -> Totals:
    totals = Totals()
    budget = [share]
    started = time.monotonic()
    deadline = started + opts.seconds
    await asyncio.gather(*(worker(opts, n, budget, totals, deadline) for n in range(opts.conns)))
    totals.elapsed = time.monotonic() - started
    return totals


def run_process(args: tuple[Options, int]) -> Totals:
    opts, share = args
    return asyncio.run(run(opts, share))


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def report(results: list[Totals]) -> str:
    replies: Counter[str] = Counter()
    latencies: list[float] = []
    for totals in results:
        replies.update(totals.replies)
        latencies.extend(totals.latencies)
    latencies.sort()
    elapsed = max(totals.elapsed for totals in results)
    count = sum(replies.values())
    kinds = " ".join(f"{kind}={replies[kind]}" for kind in ("OK", "FAIL", "other"))
    return (
        f"{kinds} in {elapsed:.1f} s: {count / elapsed:.0f} auths/s, "
        f"p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    shares = [
        opts.requests // opts.procs + (i < opts.requests % opts.procs) for i in range(opts.procs)
    ]
    if opts.procs == 1:
        results = [run_process((opts, shares[0]))]
    else:
        with multiprocessing.Pool(opts.procs) as pool:
            results = pool.map(run_process, [(opts, share) for share in shares])
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
