"""The auth-policy route on the real HTTP listener: the caller's key, bad requests
answered 4xx without touching other requests, and the metric of each decision."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.auth.engine import Engine
from mailwarden.config import AuthPolicyConfig, GuardRule
from mailwarden.errors import ConfigError
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.frontends.http_policy import read_api_key
from mailwarden.metrics import Metrics
from tests.conftest import EngineFactory
from tests.frontends.test_http_frontend import CONFIG, Response, request
from tests.helpers import make_config

PATH = "/api/v1/dovecot/policy"
KEY = "policy-secret"
POLICY = AuthPolicyConfig(enabled=True, api_key=KEY)
HEADERS = {"X-API-Key": KEY, "Content-Type": "application/json"}


def body(pwhash: str, remote: str = "192.0.2.9", **extra: object) -> bytes:
    data = {"login": "alice", "remote": remote, "pwhash": pwhash, "protocol": "imap", **extra}
    return json.dumps(data).encode()


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    rules = (GuardRule(name="ip", period=60.0, threshold=3),)
    return make_engine(make_config(guard={"allow_networks": (), "rules": rules}))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest_asyncio.fixture
async def server(engine: Engine, metrics: Metrics) -> AsyncIterator[HttpServer]:
    running = await start_http(engine, CONFIG, resolve=Path, metrics=metrics, authpolicy=POLICY)
    yield running
    await running.close()


async def policy(
    server: HttpServer, command: str, data: bytes, headers: dict[str, str] | None = None
) -> Response:
    return await request(
        server,
        "POST",
        f"{PATH}?command={command}",
        data,
        headers=HEADERS if headers is None else headers,
    )


async def test_reports_ban_the_address_and_allow_then_answers_minus_one(
    server: HttpServer, metrics: Metrics
) -> None:
    ok = await policy(server, "allow", body("0001"))
    assert (ok.status, ok.json()) == (200, {"status": 0})
    for i in range(3):
        done = await policy(server, "report", body(f"0{i:03x}", success=False))
        assert done.status == 200
    refused = await policy(server, "allow", body("0fff"))
    assert (refused.status, refused.json()) == (200, {"status": -1})
    other = await policy(server, "allow", body("0fff", remote="198.51.100.1"))
    assert other.json() == {"status": 0}
    text = metrics.render().decode()
    assert 'mailwarden_policy_requests_total{command="report",outcome="failure"} 3.0' in text
    assert 'mailwarden_policy_requests_total{command="allow",outcome="reject"} 1.0' in text
    assert 'mailwarden_policy_requests_total{command="allow",outcome="continue"} 2.0' in text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-Other": KEY},
        {"Authorization": "Basic " + base64.b64encode(b"u:" + KEY.encode()).decode()},
    ],
)
async def test_a_missing_or_wrong_key_gets_401_and_counts_nothing(
    server: HttpServer, engine: Engine, headers: dict[str, str]
) -> None:
    for i in range(5):
        refused = await policy(server, "report", body(f"0{i:03x}", success=False), headers)
        assert refused.status == 401
        assert "X-API-Key" in refused.json()["error"]
    assert await engine.guard.bans() == []


@pytest.mark.parametrize(
    ("query", "data", "status", "message"),
    [
        ("command=deny", body("0001"), 400, "unknown command"),
        ("", body("0001"), 400, "command=allow or command=report"),
        ("command=allow", b"{not json", 400, "not JSON"),
        ("command=allow", b'{"remote":"192.0.2.9"}', 400, "no 'login'"),
        ("command=report", body("0001"), 400, "'success'"),
        ("command=allow", b'{"login":"' + b"a" * 4000 + b'"}', 413, "too large"),
    ],
)
async def test_bad_requests_get_a_clear_4xx_and_the_next_request_is_served(
    server: HttpServer, query: str, data: bytes, status: int, message: str
) -> None:
    bad = await request(server, "POST", f"{PATH}?{query}", data, headers=HEADERS)
    assert bad.status == status
    assert message in bad.json()["error"]
    good = await policy(server, "allow", body("0001"))
    assert good.json() == {"status": 0}


async def test_only_post_is_answered(server: HttpServer) -> None:
    got = await request(server, "GET", f"{PATH}?command=allow", headers=HEADERS)
    assert got.status == 405


async def test_when_disabled_the_path_is_no_route(engine: Engine) -> None:
    running = await start_http(engine, CONFIG, resolve=Path)
    try:
        got = await request(running, "POST", f"{PATH}?command=allow", body("0001"), headers=HEADERS)
        assert got.status == 404
    finally:
        await running.close()


async def test_basic_auth_as_dovecot_sends_it_for_a_url_with_user_and_password(
    engine: Engine,
) -> None:
    """``http://dovecot:s3cret@host/...`` in auth_policy_server_url."""
    basic = "Basic " + base64.b64encode(b"dovecot:s3cret").decode()
    config = AuthPolicyConfig(enabled=True, api_header="Authorization", api_key=basic)
    running = await start_http(engine, CONFIG, resolve=Path, authpolicy=config)
    try:
        good = await policy(running, "allow", body("0001"), {"Authorization": basic})
        assert good.json() == {"status": 0}
        bad = await policy(running, "allow", body("0001"), {"Authorization": basic + "x"})
        assert bad.status == 401
    finally:
        await running.close()


def test_the_key_is_read_from_api_key_file_without_its_newline(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    config = AuthPolicyConfig(enabled=True, api_key_file="key")
    assert read_api_key(config, lambda p: tmp_path / p) == KEY
    with pytest.raises(ConfigError, match="cannot read"):
        read_api_key(AuthPolicyConfig(enabled=True, api_key_file="missing"), lambda p: tmp_path / p)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        read_api_key(AuthPolicyConfig(enabled=True, api_key_file="empty"), lambda p: tmp_path / p)
