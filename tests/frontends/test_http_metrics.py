"""/metrics, /healthz and /readyz on the real HTTP listener, after real logins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.metrics import Metrics, state_collector
from tests.frontends.test_http_frontend import CONFIG, auth, request
from tests.helpers import attempt
from tests.staffing import bearer, staff_with_tokens


@pytest_asyncio.fixture
async def served(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[HttpServer]:
    metrics = Metrics()
    metrics.add_collector(state_collector(engine))
    engine.metrics = metrics

    async def readiness() -> dict[str, str]:
        try:
            await directory.ping()
        except Exception as exc:
            return {"directory": f"unavailable: {exc}"}
        return {"directory": "ok"}

    staff = await staff_with_tokens(engine.hasher)
    running = await start_http(
        engine, CONFIG, resolve=Path, staff=staff, metrics=metrics, readiness=readiness
    )
    yield running
    await running.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_count_logins_by_result_after_a_run(
    served: HttpServer, engine: Engine
) -> None:
    for _ in range(3):
        assert (await auth(served, "alice", "secret")).status == 200
    for _ in range(2):
        assert (await auth(served, "alice", "wrong")).status == 403
    await engine.authenticate(attempt("alice", "secret", frontend="dovecot", service="smtp"))
    await engine.lookup("alice")
    await engine.lookup("nobody")
    r = await request(served, "GET", "/metrics", headers=bearer("read"))
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain")
    got = samples(r.body.decode())

    def attempts(frontend: str, service: str, result: str) -> float:
        labels = (
            ("frontend", frontend),
            ("mechanism", "PLAIN"),
            ("result", result),
            ("service", service),
        )
        return got.get(("mailwarden_auth_attempts_total", labels), 0.0)

    assert attempts("http", "imap", "accepted") == 3
    assert attempts("http", "imap", "denied") == 2
    assert attempts("dovecot", "smtp", "accepted") == 1
    assert got[("mailwarden_auth_denied_total", (("reason", "credentials"),))] == 2
    assert got[("mailwarden_lookups_total", (("result", "found"),))] == 1
    assert got[("mailwarden_lookups_total", (("result", "not_found"),))] == 1
    count = got[
        ("mailwarden_auth_duration_seconds_count", (("frontend", "http"), ("result", "accepted")))
    ]
    assert count == 3
    http_accepted = (("frontend", "http"), ("result", "accepted"))
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in got.items()
        if name == "mailwarden_auth_duration_seconds_bucket"
        and (("frontend", "http") in labels and ("result", "accepted") in labels)
    }
    assert buckets["+Inf"] == 3
    assert list(buckets.values()) == sorted(buckets.values())  # cumulative
    assert got[("mailwarden_auth_duration_seconds_sum", http_accepted)] > 0
    # One hash for the right password and one for the wrong one: the repeats were
    # answered by the verified-login cache and the rejected-password cache.
    assert got[("mailwarden_hash_verifications_total", ())] == 2
    assert got[("mailwarden_cache_hits_total", (("result", "hit"),))] == 3
    assert got[("mailwarden_cache_hits_total", (("result", "rejected"),))] == 1
    assert ("mailwarden_hashing_queue_depth", ()) in got
    assert got[("mailwarden_guard_degraded", ())] == 0


async def test_metrics_need_a_token(served: HttpServer) -> None:
    assert (await request(served, "GET", "/metrics")).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await request(served, "GET", "/metrics", headers=wrong)).status == 401


async def test_health_and_readiness(served: HttpServer, directory: MemoryDirectory) -> None:
    assert (await request(served, "GET", "/healthz")).status == 200
    ready = await request(served, "GET", "/readyz")
    assert ready.status == 200 and ready.json()["checks"] == {"directory": "ok"}
    await directory.close()
    down = await request(served, "GET", "/readyz")
    assert down.status == 503
    assert down.json()["checks"]["directory"].startswith("unavailable")
    assert (await request(served, "GET", "/healthz")).status == 200
