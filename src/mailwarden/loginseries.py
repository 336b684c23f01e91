"""Logins over the last hour, per 10 seconds, by service and outcome: the live chart's data.

What belongs here: :class:`LoginSeries`, counted where the engine reports each
login decision to the metrics (:meth:`mailwarden.metrics.Metrics.auth`), and read
by the web page's chart (``/ui/admin/stats``), which can so draw the last hour as
soon as it opens instead of starting empty. Pure: the clock is given.

Bounded: at most :data:`SPAN` / :data:`STEP` buckets (360) are kept, only those in
which a login happened, each with one count per (service, outcome) pair seen in
it. Services are the bounded labels of the metrics (``http.metrics_services``, ``-``
for none, ``other`` for the rest: clients name services, and a count per name would
let them grow memory), outcomes the four of :func:`~mailwarden.model.outcome_label`.
So the memory is at most 360 × (services + 2) × 4 counts, whatever the load.

Per process: with ``serve --workers N`` each worker counts the logins it decided
(docs/web.md, "The live chart").
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds per bucket, and the seconds kept.
STEP = 10
SPAN = 3600
OUTCOMES = ("accepted", "denied", "blocked", "unavailable")


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesSnapshot:
    """The last :data:`SPAN` seconds as ``buckets`` consecutive buckets of ``step``
    seconds, the first starting at ``start`` (Unix seconds; the last is the bucket
    now filling). ``counts[service][outcome]``: one count per bucket, for each pair
    that had a login in the hour (pairs without any are left out)."""

    start: int
    step: int
    buckets: int
    counts: dict[str, dict[str, list[int]]]


class LoginSeries:
    """Login decisions counted per bucket of :data:`STEP` seconds (see the module)."""

    def __init__(
        self, *, step: int = STEP, span: int = SPAN, clock: Callable[[], float] = time.time
    ) -> None:
        self.step = step
        self.slots = span // step
        self._clock = clock
        # (bucket number, counts) of the buckets that had logins, oldest first; the
        # last one is the bucket being filled (``_current``).
        self._buckets: deque[tuple[int, dict[tuple[str, str], int]]] = deque(maxlen=self.slots)
        self._index = -1
        self._current: dict[tuple[str, str], int] = {}

    def add(self, service: str, outcome: str) -> None:
        """One login decision now (``service`` already a bounded label)."""
        index = int(self._clock() // self.step)
        if index != self._index:
            self._index = index
            self._current = {}
            self._buckets.append((index, self._current))
        key = (service, outcome)
        self._current[key] = self._current.get(key, 0) + 1

    def snapshot(self) -> SeriesSnapshot:
        """The last hour, dense (see :class:`SeriesSnapshot`)."""
        last = int(self._clock() // self.step)
        first = last - self.slots + 1
        counts: dict[str, dict[str, list[int]]] = {}
        for index, bucket in self._buckets:
            if not first <= index <= last:
                continue
            for (service, outcome), count in bucket.items():
                row = counts.setdefault(service, {}).setdefault(outcome, [0] * self.slots)
                row[index - first] += count
        return SeriesSnapshot(
            start=first * self.step, step=self.step, buckets=self.slots, counts=counts
        )
