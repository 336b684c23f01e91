"""``serve --workers N``: ``POST /api/v1/auth/json`` auth/s of the real daemon with 1 and 2 workers.

Unlike bench/http_auth.py (the HTTP front end in-process over a MemoryDirectory),
this runs the whole ``mailwarden serve`` as deployed: SQLite directory, the guard
on a private ``redis-server`` (required for more than one worker; used for every
run so the figures compare like with like), logging at ``warning``. The account's
password is ``{PLAIN}`` (and not rehashed on login) so the figures measure request
handling, not a hash.

The load comes from ``--procs`` generator processes, each with its share of
``--clients`` keep-alive connections (bench/http_auth.py's client). Mind that the
generators share the machine's cores with the workers: on a 2-core machine the
second worker competes with the load generator.

Besides auth/s and latency it prints the CPU the daemon's processes used during the
run (100 % = one core) and per answer, which shows whether the workers were the limit.

Bounded: each run stops after ``--seconds`` seconds or ``--requests`` answers.

Usage: ``python bench/workers_http.py [--workers 1,2] [--seconds S] [--clients N] [--procs P]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import children
from children import cpu_seconds
from http_auth import client

MAILWARDEN = [sys.executable, "-m", "mailwarden"]
START_TIMEOUT = 30.0
NO_DISK = ("--save", "", "--appendonly", "no")

CONFIG = """\
[directory]
path = "data/mw.db"
[passwords]
rehash = "never"
[dovecot]
enabled = false
[log]
level = "warning"
[server]
pid_file = "data/mw.pid"
control_socket = "run/control"
[http]
enabled = true
listen = ["127.0.0.1:{port}"]
auth_username = "bench"
auth_password = "bench"
[guard]
store = "redis"
[guard.redis]
url = "redis://127.0.0.1:{redis_port}/0"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(ready: Any, what: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if proc.poll() is not None:
            raise SystemExit(f"{what}: the process exited ({proc.returncode})")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[int]:
    redis = shutil.which("redis-server")
    if redis is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [redis, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root), *NO_DISK],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def up() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(up, "redis-server", proc)
        yield port
    finally:
        stop(proc)


@contextlib.contextmanager
def daemon(root: Path, workers: int) -> Iterator[int]:
    """``mailwarden serve --workers N`` in ``root``; yields its pid once it accepts."""
    cfg = root / "mw.toml"
    pid_file = root / "data" / "mw.pid"
    proc = subprocess.Popen(
        [*MAILWARDEN, "-c", str(cfg), "serve", "--workers", str(workers)],
        start_new_session=True,
    )
    try:
        wait_for(pid_file.exists, "mailwarden serve", proc)
        yield proc.pid
    finally:
        stop(proc)


def _generate(args: tuple[int, int, int, float]) -> list[float]:
    port, clients, requests, seconds = args

    async def main() -> list[float]:
        latencies: list[float] = []
        budget = [requests]
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(client(port, deadline, budget, latencies) for _ in range(clients)))
        return latencies

    return asyncio.run(main())


def measure(
    port: int, server: int, *, clients: int, procs: int, requests: int, seconds: float
) -> str:
    shares = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    jobs = [(port, share, requests // procs, seconds) for share in shares if share]
    # forkserver, never fork from this threaded process; a stuck run raises
    # multiprocessing.TimeoutError instead of waiting for ever (bench/children.py)
    with children.MP.Pool(len(jobs)) as pool:
        cpu = cpu_seconds(server)
        start = time.monotonic()
        results = pool.map_async(_generate, jobs).get(seconds + 60.0)
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(server) - cpu
    ordered = sorted(x for r in results for x in r)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"requests={len(ordered):7d}  auth/s={len(ordered) / elapsed:8.0f}"
        f"  p50={statistics.median(ordered) * 1000:6.2f} ms  p99={p99 * 1000:6.2f} ms"
        f"  server CPU={cpu / elapsed * 100:4.0f} %"
        f"  ({cpu / len(ordered) * 1e6:4.0f} us/auth)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    if min(counts) < 1 or args.seconds > 60 or args.procs < 1:
        raise SystemExit("--workers >= 1, --seconds <= 60, --procs >= 1")
    with tempfile.TemporaryDirectory(prefix="mailwarden-bench-") as tmp:
        root = Path(tmp)
        with redis_server(root) as redis_port:
            port = free_port()
            (root / "mw.toml").write_text(CONFIG.format(port=port, redis_port=redis_port))
            base = [*MAILWARDEN, "-c", str(root / "mw.toml")]
            subprocess.run([*base, "init"], check=True, capture_output=True, timeout=120)
            subprocess.run(
                [*base, "user", "add", "alice", "--password-stdin", "--scheme", "PLAIN"],
                input=b"secret\n",
                check=True,
                capture_output=True,
                timeout=120,
            )
            print(
                f"POST /api/v1/auth/json {{PLAIN}}, keep-alive, {args.clients} clients in "
                f"{args.procs} generator processes, {args.seconds:.0f} s, "
                f"{os.cpu_count()} CPUs"
            )
            for workers in counts:
                with daemon(root, workers) as server:
                    figures = measure(
                        port,
                        server,
                        clients=args.clients,
                        procs=args.procs,
                        requests=args.requests,
                        seconds=args.seconds,
                    )
                print(f"workers={workers}  {figures}")


if __name__ == "__main__":
    main()
