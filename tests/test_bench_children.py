"""bench/'s children end: the load generator works with forkserver processes
against its echo server, and a stuck pool is reported and killed, not waited on
(issue #18: ``bench/compare --quick`` hung in a child forked from a threaded parent)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import children  # noqa: E402 - bench/ is not a package
import loadgen  # noqa: E402


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_loadgen_processes_start_with_forkserver_and_get_every_reply(tmp_path: Path) -> None:
    assert children.MP.get_start_method() == "forkserver"
    path = str(tmp_path / "echo")
    echo = loadgen.echo_server(path)
    try:
        load = loadgen.Load(
            address=path,
            workload=loadgen.Workload(kind="cold", accounts=50),
            conns=2,
            inflight=4,
            seconds=30.0,
            requests=400,
            procs=2,
        )
        result = loadgen.run(load)
    finally:
        echo.kill()
        children.reap(echo)
    assert not echo.is_alive()
    assert result.replies["OK"] == 400
    assert result.sent_by_kind["right"] == 400


def test_a_stuck_pool_is_reported_and_its_workers_killed() -> None:
    started = time.monotonic()
    with pytest.raises(children.Stuck) as caught:
        children.map_bounded(_sleep, [600.0], processes=1, timeout=1.0, what="sleeper")
    assert "sleeper: stuck, skipped after 1 s" in str(caught.value)
    # Not the sleeper's 600 s: the pool was terminated, not joined normally.
    assert time.monotonic() - started < 60
