"""Child processes of the bench/ scripts: one start method, bounded waits, the
``--busy`` CPU hog, and the figures of a process tree (CPU seconds, peak RSS).

Every Python child of a bench script starts with the ``forkserver`` method
(:data:`MP`), never ``fork``: the scripts run asyncio loops, ``multiprocessing``
pools and their helper threads, and a child forked from a threaded parent can
inherit a lock another thread held at the fork and wait for it forever (issue #18:
``bench/compare --quick`` hung after its last scenario in such a futex wait). The
fork server is a fresh interpreter started before any of that, so its children
inherit no thread's lock. Targets must therefore be module-level functions
(picklable), not lambdas.

Every wait is bounded: :func:`map_bounded` raises :class:`Stuck` instead of
waiting past its timeout (the pool's workers are then killed), and
:func:`reap` kills a child that has not ended in time.
"""

from __future__ import annotations

import contextlib
import glob
import multiprocessing
import multiprocessing.pool
import os
import time
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypeVar

MP = multiprocessing.get_context("forkserver")

T = TypeVar("T")
R = TypeVar("R")

BUSY_LIMIT = 4 * 3600.0
"""The longest a ``--busy`` hog spins even if nobody stops it."""


class Stuck(RuntimeError):
    """Work that did not end within its timeout (its processes were killed)."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"{what}: stuck, skipped after {seconds:.0f} s")
        self.what = what
        self.seconds = seconds


def map_bounded(
    fn: Callable[[T], R], items: Iterable[T], *, processes: int, timeout: float, what: str
) -> list[R]:
    """``Pool(processes).map(fn, items)``, but never waiting more than ``timeout`` s."""
    pool = MP.Pool(processes)
    try:
        return pool.map_async(fn, list(items)).get(timeout)
    except multiprocessing.TimeoutError as exc:
        raise Stuck(what, timeout) from exc
    finally:
        pool.terminate()  # SIGTERM to every worker still running, then joins them
        pool.join()


def reap(proc: BaseProcess, timeout: float = 5.0) -> None:
    """End ``proc``: wait ``timeout`` s for it, then SIGKILL it and wait again."""
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join(timeout)


# --------------------------------------------------------------------------- --busy


def _spin(core: int | None, seconds: float) -> None:
    """Burn one core until killed, ``seconds`` have passed, or the parent is gone.

    The parent is the fork server, which ends when the bench script does: an
    orphaned hog (its script killed with SIGKILL) stops within a moment."""
    parent = os.getppid()
    if core is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {core})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and os.getppid() == parent:
        for _ in range(100_000):
            pass


def busy_core() -> int | None:
    """The core the hog is pinned to: the last one this process may run on."""
    try:
        return max(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        return None


@contextlib.contextmanager
def busy(seconds: float = BUSY_LIMIT) -> Iterator[int | None]:
    """A child spinning on one core (pinned to it where the OS allows) while the
    ``with`` block runs; killed at the end. Yields the core (None: not pinned)."""
    core = busy_core()
    proc = MP.Process(target=_spin, args=(core, seconds), daemon=True)
    proc.start()
    try:
        yield core
    finally:
        proc.kill()
        reap(proc)


# --------------------------------------------------------------------------- process trees


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        parents.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def pids_running(*words: str) -> list[int]:
    """Processes whose command line holds every one of ``words`` (a substring each)."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            args = Path(cmdline).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(word in args for word in words):
            found.append(int(cmdline.split("/")[2]))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and every live descendant (hashing
    workers included), plus what its reaped children used."""
    total = 0
    for p in tree(pid):
        try:
            text = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        # utime + stime, and cutime + cstime: children that ended during the run
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """The sum of each process's peak resident size (VmHWM) in ``pid``'s tree."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024
