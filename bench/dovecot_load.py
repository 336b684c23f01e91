"""Load generator for a Dovecot auth client socket: pipelined AUTH PLAIN (bench/loadgen.py).

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
import sys

from loadgen import Load, Workload, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, help="UNIX socket path or inet:HOST:PORT")
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default="secret")
    parser.add_argument(
        "--workload",
        choices=("single", "cold", "mix"),
        default="single",
        help="single: --user/--password; cold, mix: user<i>/pw<i> (see bench/loadgen.py)",
    )
    parser.add_argument("--accounts", type=int, default=10000, help="cold/mix: user0..N-1")
    parser.add_argument("--conns", type=int, default=8, help="connections per process")
    parser.add_argument("--inflight", type=int, default=32, help="requests in flight each")
    parser.add_argument("--seconds", type=float, default=10.0, help="stop sending after this")
    parser.add_argument("--requests", type=int, default=1_000_000, help="total request cap")
    parser.add_argument("--procs", type=int, default=1, help="generator processes")
    a = parser.parse_args(argv)
    if min(a.conns, a.inflight, a.procs, a.requests, a.accounts) < 1 or a.seconds <= 0:
        parser.error("counts must be at least 1 and --seconds positive")
    workload = Workload(kind=a.workload, user=a.user, password=a.password, accounts=a.accounts)
    load = Load(
        address=a.socket,
        workload=workload,
        conns=a.conns,
        inflight=a.inflight,
        seconds=a.seconds,
        requests=a.requests,
        procs=a.procs,
    )
    print(run(load).line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
