"""How long one ``mailwarden checkpassword`` login takes, from fork to the subprogram's exec.

checkpassword runs once per POP3 login, so its start-up is part of every login.
This runs the real command N times (bounded by ``--runs`` and ``--seconds``)
against a throw-away SQLite directory with a {PLAIN} account, with ``/bin/true``
as the subprogram, and prints the minimum, median and 90th percentile wall time
for a successful login, a refused one, and (for comparison) a bare
``python -c pass`` start. The difference between the last and the first is the
cost of mailwarden itself (imports, config, opening the directory).

Usage: ``python bench/checkpassword_start.py [--runs 30] [--seconds 60]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.model import Account

TO_FD3 = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.execvp(sys.argv[2], sys.argv[2:])"


async def make_db(path: Path) -> None:
    directory = await SQLiteDirectory.open(path, create=True)
    try:
        await directory.create(Account(uid="alice", password="{PLAIN}secret"))
    finally:
        await directory.close()


def one(cmd: list[str], block: bytes) -> float:
    r, w = os.pipe()
    os.write(w, block)
    os.close(w)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", TO_FD3, str(r), *cmd],
        pass_fds=(r,),
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    elapsed = time.perf_counter() - start
    os.close(r)
    return elapsed


def series(name: str, cmd: list[str], block: bytes, runs: int, deadline: float) -> None:
    times: list[float] = []
    while len(times) < runs and time.monotonic() < deadline:
        times.append(one(cmd, block))
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(
        f"{name:<22} runs={len(times):3d}  min={times[0] * 1000:7.1f} ms  "
        f"median={statistics.median(times) * 1000:7.1f} ms  p90={p90 * 1000:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "mw.toml"
        cfg.write_text('[directory]\npath = "mw.db"\n[passwords]\nrehash = "never"\n')
        asyncio.run(make_db(Path(tmp) / "mw.db"))
        deadline = time.monotonic() + args.seconds
        base = [sys.executable, "-m", "mailwarden", "-c", str(cfg), "checkpassword", "/bin/true"]
        series("python -c pass", [sys.executable, "-c", "pass"], b"", args.runs, deadline)
        series("login accepted", base, b"alice\0secret\0\0", args.runs, deadline)
        series("login refused", base, b"alice\0wrong\0\0", args.runs, deadline)


if __name__ == "__main__":
    main()
