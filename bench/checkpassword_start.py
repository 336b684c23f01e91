"""How long one ``mailwarden checkpassword`` login takes, from fork to the subprogram's exec.

checkpassword runs once per POP3 login, so its start-up is part of every login.
This runs the real command N times (bounded by ``--runs`` per series and
``--seconds`` in all) against a throw-away SQLite directory with a {PLAIN}
account, with ``/bin/true`` as the subprogram, and prints the minimum, median and
90th percentile wall time of a successful and a refused login on both paths:

* **daemon**: a ``mailwarden serve`` started here (private sockets, stopped at the
  end) decides; the command reads the config and asks it over its control socket,
  one round trip (``checkpassword.via = "daemon"``). ``checkpassword.failure_delay``
  is 0 here, so
  a refusal measures start-up, not the delay a real daemon adds to it;
* **local fallback**: the daemon is not running (``via = "auto"``, no socket), so the
  command opens the directory with an engine of its own.

A bare ``python -c pass`` start, through the same fd-3 launcher, is the floor.
Every series starts with one uncounted run, and the commands may write bytecode
caches (``PYTHONDONTWRITEBYTECODE`` is dropped for them): an installed package has
its ``.pyc`` files, and compiling a module on every start is not what a login costs.

Usage: ``python bench/checkpassword_start.py [--runs 30] [--seconds 120]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account

TO_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execvp(sys.argv[2], sys.argv[2:])"

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

CONFIG = """\
[directory]
path = "mw.db"
[passwords]
rehash = "never"
[dovecot]
enabled = false
[server]
pid_file = "mw.pid"
control_socket = "run/control"
[checkpassword]
via = "{via}"
failure_delay = 0
"""


async def make_db(path: Path) -> None:
    directory = await SQLiteDirectory.open(path, create=True)
    try:
        # A uid and gid: run as root, the command drops to them before exec (it never
        # runs the subprogram as root).
        await directory.create(
            Account(uid="alice", password="{PLAIN}secret", uid_number=5000, gid_number=5000)
        )
    finally:
        await directory.close()


def one(cmd: list[str], block: bytes) -> tuple[float, int]:
    r, w = os.pipe()
    os.write(w, block)
    os.close(w)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TO_FD3, str(r), *cmd],
        pass_fds=(r,),
        check=False,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # no timeout=: with one, subprocess polls the child in steps of up to 50 ms
    elapsed = time.perf_counter() - start
    os.close(r)
    return elapsed, done.returncode


def series(
    name: str, cmd: list[str], block: bytes, runs: int, deadline: float, expect: int
) -> None:
    one(cmd, block)  # warm-up: bytecode caches, page cache
    times: list[float] = []
    while len(times) < runs and time.monotonic() < deadline:
        elapsed, code = one(cmd, block)
        if code != expect:
            raise SystemExit(f"{name}: exit {code}, expected {expect}")
        times.append(elapsed)
    if not times:
        print(f"{name:<30} (no time left)")
        return
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(
        f"{name:<30} runs={len(times):3d}  min={times[0] * 1000:7.1f} ms  "
        f"median={statistics.median(times) * 1000:7.1f} ms  p90={p90 * 1000:7.1f} ms"
    )


def start_daemon(cfg: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailwarden", "-c", str(cfg), "serve"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not (cfg.parent / "mw.pid").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_daemon(proc)
            raise SystemExit("mailwarden serve did not start")
        time.sleep(0.05)
    return proc


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for via in ("daemon", "auto"):
            (root / f"{via}.toml").write_text(CONFIG.format(via=via))
        asyncio.run(make_db(root / "mw.db"))
        deadline = time.monotonic() + args.seconds
        runs = args.runs

        def command(via: str) -> list[str]:
            cfg = str(root / f"{via}.toml")
            return [sys.executable, "-m", "mailwarden", "-c", cfg, "checkpassword", "/bin/true"]

        series("python -c pass", [sys.executable, "-c", "pass"], b"", runs, deadline, 0)
        daemon = start_daemon(root / "daemon.toml")
        try:
            ok, bad = b"alice\0secret\0\0", b"alice\0wrong\0\0"
            series("daemon: login accepted", command("daemon"), ok, runs, deadline, 0)
            series("daemon: login refused", command("daemon"), bad, runs, deadline, 1)
        finally:
            stop_daemon(daemon)
        series("local fallback: accepted", command("auto"), ok, runs, deadline, 0)
        series("local fallback: refused", command("auto"), bad, runs, deadline, 1)


if __name__ == "__main__":
    main()
