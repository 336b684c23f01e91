"""bench/'s own tools: its children end — the load generator works with forkserver
processes against its echo server, and a stuck pool is reported and killed, not
waited on (issue #18: ``bench/compare --quick`` hung in a child forked from a
threaded parent) — and the two commands writing docs/performance.md keep each
other's sections."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import children  # noqa: E402 - bench/ is not a package
import loadgen  # noqa: E402
import perfdoc  # noqa: E402


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


def test_a_section_is_replaced_in_place_and_appended_when_missing() -> None:
    page = "# Performance\n\ntable\n\n## Reading the table\n\nnotes\n"
    admin = f"{perfdoc.ADMIN}\n\nfirst\n"
    with_admin = perfdoc.replace_section(page, perfdoc.ADMIN, admin)
    assert with_admin == page + "\n" + admin
    again = perfdoc.replace_section(with_admin, perfdoc.ADMIN, f"{perfdoc.ADMIN}\n\nsecond\n")
    assert again == page + f"\n{perfdoc.ADMIN}\n\nsecond\n"
    notes = perfdoc.replace_section(again, "## Reading the table", "## Reading the table\n\nnew\n")
    assert perfdoc.section(notes, perfdoc.ADMIN) == f"{perfdoc.ADMIN}\n\nsecond\n"
    assert "new" in notes and "notes" not in notes
