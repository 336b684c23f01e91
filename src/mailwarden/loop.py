"""How a mailwarden process runs its event loop: uvloop, and the collector's threshold.

Nothing else belongs here; the daemon (``serve``, each ``--workers`` process) runs
:func:`run_loop`, one-shot commands call :func:`tune_gc` before their own loop.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Young-generation threshold of the cyclic garbage collector (CPython's default: 700).
GC_THRESHOLD = (10_000, 10, 10)


def tune_gc() -> None:
    """Look at young objects every 10,000 allocations instead of 700.

    A login that no cache helps allocates a few hundred objects that outlive it
    (cache entries, guard memos), so with the default a collection ran every few
    logins, each walking what the last ones left: issue #18 measured 119-163 µs of
    CPU per cold {PLAIN} login with the default, 85-104 µs with this (81-91 µs with
    no collector at all; bench/request_cost.py --cold-plain). Cycles are still
    collected, a little later; warm logins cost the same either way. An import or
    export of a million accounts allocates the same way.
    """
    gc.set_threshold(*GC_THRESHOLD)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the daemon's event loop (:func:`tune_gc` first): uvloop when it is
    installed (a faster loop written in C over libuv; a dependency of mailwarden),
    else asyncio's own."""
    tune_gc()
    try:
        import uvloop  # noqa: PLC0415 - only the daemon needs it
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
