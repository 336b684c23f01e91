"""Prometheus metrics of the daemon (``GET /metrics`` on the HTTP listener).

Only ``mailwarden serve`` creates a :class:`Metrics`; the engine and front ends
get it as an optional attribute and call its small methods, so one-shot commands
(checkpassword runs once per login) never import prometheus_client. Every name
and label is listed in docs/operations.md; a test scrapes them after real logins.

Counters and histograms are updated as things happen; the values that already
live elsewhere (cache sizes and hits, hashing queue depth, guard store errors,
bans) are read at scrape time by a collector, so they cost nothing per login.
Each login decision is also counted in :attr:`Metrics.series`, the last hour per
10 seconds by service and outcome, which the web page's live chart draws
(:mod:`mailwarden.loginseries`).
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mailwarden.config import HttpConfig
from mailwarden.loginseries import LoginSeries
from mailwarden.model import AuthAttempt, AuthOutcome, Denied, Unavailable, outcome_label
from mailwarden.sasl import MECHANISMS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The label of a service or mechanism outside the known ones: clients choose these
#: names, and a label per name would let them grow memory and /metrics without bound.
OTHER = "other"

# Latency buckets from cache hits (tens of microseconds) to slow hashes and delays.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The daemon's metrics, in a registry of its own."""

    def __init__(
        self, services: Iterable[str] | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        if services is None:
            services = HttpConfig().metrics_services
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Login decisions are counted in plain dicts and turned into metrics at
        # scrape time (_AuthCounts): prometheus_client's labelled children take a
        # lock per update and its histogram walks every bucket in Python, which
        # was a twentieth of the CPU of a cached login.
        #: The last hour of login decisions by service and outcome (the web's chart).
        self.series = LoginSeries(clock=clock)
        self._auth = _AuthCounts(services, self.series)
        r.register(self._auth)
        self.lookups = Counter(
            "mailwarden_lookups",
            "Userdb lookups by result (found, not_found, unavailable).",
            ("result",),
            registry=r,
        )
        self.directory_errors = Counter(
            "mailwarden_directory_errors",
            "Directory operations that failed temporarily.",
            registry=r,
        )
        self.connections = Gauge(
            "mailwarden_connections",
            "Open client connections by front end.",
            ("frontend",),
            registry=r,
        )
        self.policy_requests = Counter(
            "mailwarden_policy_requests",
            "Dovecot auth-policy requests by command (allow, report) and outcome"
            " (allow: continue, reject, delay; report: failure, repeated, success,"
            " policy_reject; off: guard disabled).",
            ("command", "outcome"),
            registry=r,
        )
        self.http_requests = Counter(
            "mailwarden_http_requests",
            "HTTP requests by endpoint and status code.",
            ("endpoint", "status"),
            registry=r,
        )

    # ------------------------------------------------------------ updates

    def auth(self, attempt: AuthAttempt, outcome: AuthOutcome, seconds: float) -> None:
        self._auth.count(attempt, outcome, seconds)
        if isinstance(outcome, Unavailable):
            self.directory_errors.inc()

    def auth_results(self) -> dict[str, int]:
        """Login decisions so far by result (``accepted``, ``denied``, ...)."""
        totals: dict[str, int] = {}
        for (_, _, _, result), count in self._auth.attempts.items():
            totals[result] = totals.get(result, 0) + count
        return totals

    def set_services(self, services: Iterable[str]) -> None:
        """The service names counted under their own label (``http.metrics_services``)."""
        self._auth.set_services(services)

    def lookup(self, result: str) -> None:
        self.lookups.labels(result).inc()
        if result == "unavailable":
            self.directory_errors.inc()

    def policy(self, command: str, outcome: str) -> None:
        """One auth-policy request answered (docs/policy-server.md)."""
        self.policy_requests.labels(command, outcome).inc()

    def connection(self, frontend: str, delta: int) -> None:
        self.connections.labels(frontend).inc(delta)

    def add_collector(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Values read at scrape time (see :func:`state_collector`)."""
        self.registry.register(_Callback(read))

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


class _AuthCounts(Collector):
    """``mailwarden_auth_attempts``, ``mailwarden_auth_duration_seconds`` and
    ``mailwarden_auth_denied``, kept as plain numbers (updated on the event loop
    thread only, like everything that reads them)."""

    def __init__(self, services: Iterable[str], series: LoginSeries) -> None:
        self.series = series
        self.attempts: dict[tuple[str, str, str, str], int] = {}
        self._services: dict[str, str] = {}
        self._mechanisms = {name: name for name in MECHANISMS}
        self.set_services(services)
        # (frontend, result) -> observations per bucket (the last: above every
        # bucket), and their sum
        self.durations: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self.denied: dict[str, int] = {}

    def set_services(self, services: Iterable[str]) -> None:
        self._services = {"": "-", **{name.lower(): name.lower() for name in services}}

    def count(self, attempt: AuthAttempt, outcome: AuthOutcome, seconds: float) -> None:
        result = outcome_label(outcome)
        frontend = attempt.frontend or "unknown"
        # Labels come from bounded sets (see OTHER); the front end is ours to name.
        service = self._services.get(attempt.service) or self._services.get(
            attempt.service.lower(), OTHER
        )
        mechanism = self._mechanisms.get(attempt.mechanism) or (
            "-" if not attempt.mechanism else OTHER
        )
        key = (frontend, service, mechanism, result)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.series.add(service, result)
        histogram = self.durations.get((frontend, result))
        if histogram is None:
            histogram = self.durations[(frontend, result)] = ([0] * (len(_BUCKETS) + 1), [0.0])
        histogram[0][bisect.bisect_left(_BUCKETS, seconds)] += 1
        histogram[1][0] += seconds
        if isinstance(outcome, Denied):
            reason = outcome.reason.value
            self.denied[reason] = self.denied.get(reason, 0) + 1

    def collect(self) -> Iterable[Metric]:
        attempts = CounterMetricFamily(
            "mailwarden_auth_attempts",
            "Login decisions by front end, service, mechanism and result.",
            labels=["frontend", "service", "mechanism", "result"],
        )
        for key, value in sorted(self.attempts.items()):
            attempts.add_metric(list(key), value)
        yield attempts
        durations = HistogramMetricFamily(
            "mailwarden_auth_duration_seconds",
            "Time the engine took to decide a login (before any failure delay).",
            labels=["frontend", "result"],
        )
        bounds = [*(str(float(b)) for b in _BUCKETS), "+Inf"]
        for pair, (counts, total) in sorted(self.durations.items()):
            cumulative = list(itertools.accumulate(counts))
            durations.add_metric(list(pair), list(zip(bounds, cumulative, strict=True)), total[0])
        yield durations
        denied = CounterMetricFamily(
            "mailwarden_auth_denied",
            "Refused logins by reason (credentials covers unknown users too).",
            labels=["reason"],
        )
        for reason, value in sorted(self.denied.items()):
            denied.add_metric([reason], value)
        yield denied

    def describe(self) -> Iterable[Metric]:
        return []


class _Callback(Collector):
    def __init__(self, read: Callable[[], Iterable[Metric]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return self._read()

    def describe(self) -> Iterable[Metric]:
        return []


def state_collector(engine: Any) -> Callable[[], Iterable[Metric]]:
    """Scrape-time values of an engine: caches, hashing queue, guard."""

    def read() -> Iterable[Metric]:
        cache = engine.cache
        guard = engine.guard
        hasher = engine.hasher
        hits = CounterMetricFamily(
            "mailwarden_cache_hits", "Verified-login cache lookups by result.", labels=["result"]
        )
        hits.add_metric(["hit"], cache.hits)
        hits.add_metric(["miss"], cache.misses)
        hits.add_metric(["rejected"], cache.rejected_hits)
        yield hits
        entries = GaugeMetricFamily("mailwarden_cache_entries", "Verified logins remembered.")
        entries.add_metric([], len(cache))
        yield entries
        yield GaugeMetricFamily(
            "mailwarden_hashing_queue_depth",
            "Password hashes submitted and not finished.",
            value=hasher.pending,
        )
        yield CounterMetricFamily(
            "mailwarden_hash_verifications",
            "Password verifications run (cache hits excluded).",
            value=hasher.verifications,
        )
        yield CounterMetricFamily(
            "mailwarden_guard_store_errors",
            "Guard store (Redis) operations that failed; the guard used local state.",
            value=guard.store_errors,
        )
        yield GaugeMetricFamily(
            "mailwarden_guard_degraded",
            "1 while the guard runs on local state because its shared store failed.",
            value=1 if guard.degraded else 0,
        )
        yield CounterMetricFamily(
            "mailwarden_guard_bans",
            "Bans written by this process (networks and protected accounts).",
            value=guard.bans_made,
        )
        history = engine.history
        if history is not None:
            written = CounterMetricFamily(
                "mailwarden_history_entries",
                "Login history entries: written, repeated (a repeat of an accepted login, not "
                "written), dropped (queue full), lost (store failed).",
                labels=["result"],
            )
            written.add_metric(["written"], history.written)
            written.add_metric(["repeated"], history.repeated)
            written.add_metric(["dropped"], history.dropped)
            written.add_metric(["lost"], history.lost)
            yield written
            yield GaugeMetricFamily(
                "mailwarden_history_queue",
                "Login history entries waiting to be written.",
                value=history.pending,
            )

    return read
