"""Prometheus metrics of the daemon (``GET /metrics`` on the HTTP listener).

Only ``mailwarden serve`` creates a :class:`Metrics`; the engine and front ends
get it as an optional attribute and call its small methods, so one-shot commands
(checkpassword runs once per login) never import prometheus_client. Every name
and label is listed in docs/operations.md; a test scrapes them after real logins.

Counters and histograms are updated as things happen; the values that already
live elsewhere (cache sizes and hits, hashing queue depth, guard store errors,
bans) are read at scrape time by a collector, so they cost nothing per login.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mailwarden.model import AuthAttempt, AuthOutcome, Denied, outcome_label

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets from cache hits (tens of microseconds) to slow hashes and delays.
# Distinct label sets whose updates are remembered (services come from clients).
_MAX_LABEL_SETS = 1024

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The daemon's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.auth_attempts = Counter(
            "mailwarden_auth_attempts",
            "Login decisions by front end, service, mechanism and result.",
            ("frontend", "service", "mechanism", "result"),
            registry=r,
        )
        self.auth_duration = Histogram(
            "mailwarden_auth_duration_seconds",
            "Time the engine took to decide a login (before any failure delay).",
            ("frontend", "result"),
            buckets=_BUCKETS,
            registry=r,
        )
        self.deny_reasons = Counter(
            "mailwarden_auth_denied",
            "Refused logins by reason (credentials covers unknown users too).",
            ("reason",),
            registry=r,
        )
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
        # (frontend, service, mechanism, outcome type, deny reason) -> its update.
        self._auth_updates: dict[tuple[object, ...], Callable[[float], None]] = {}
        self.http_requests = Counter(
            "mailwarden_http_requests",
            "HTTP requests by endpoint and status code.",
            ("endpoint", "status"),
            registry=r,
        )

    # ------------------------------------------------------------ updates

    def auth(self, attempt: AuthAttempt, outcome: AuthOutcome, seconds: float) -> None:
        reason = outcome.reason.value if isinstance(outcome, Denied) else None
        key = (attempt.frontend, attempt.service, attempt.mechanism, type(outcome), reason)
        update = self._auth_updates.get(key)
        if update is None:
            update = self._auth_update(attempt, outcome)
            if len(self._auth_updates) >= _MAX_LABEL_SETS:
                self._auth_updates.clear()
            self._auth_updates[key] = update
        update(seconds)

    def _auth_update(self, attempt: AuthAttempt, outcome: AuthOutcome) -> Callable[[float], None]:
        """What one decision with these labels updates, resolved once: looking up a
        labelled child costs more than the update itself, on every login."""
        result = outcome_label(outcome)
        frontend = attempt.frontend or "unknown"
        count = self.auth_attempts.labels(
            frontend, attempt.service or "-", attempt.mechanism or "-", result
        ).inc
        observe = self.auth_duration.labels(frontend, result).observe
        also: Callable[[], None] | None = None
        if isinstance(outcome, Denied):
            also = self.deny_reasons.labels(outcome.reason.value).inc
        elif result == "unavailable":
            also = self.directory_errors.inc

        def update(seconds: float) -> None:
            count()
            observe(seconds)
            if also is not None:
                also()

        return update

    def lookup(self, result: str) -> None:
        self.lookups.labels(result).inc()
        if result == "unavailable":
            self.directory_errors.inc()

    def connection(self, frontend: str, delta: int) -> None:
        self.connections.labels(frontend).inc(delta)

    def add_collector(self, read: Callable[[], Iterable[Metric]]) -> None:
        """Values read at scrape time (see :func:`state_collector`)."""
        self.registry.register(_Callback(read))

    def render(self) -> bytes:
        data: bytes = generate_latest(self.registry)
        return data


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

    return read
