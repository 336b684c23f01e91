"""Forwarded headers on the real listener: believed only from ``http.trusted_proxies``.

Every client here connects from 127.0.0.1, which uvicorn trusts by default: the
address the engine decides on is read from the decision log, and the cookie
flags show which scheme the page believed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from mailwarden.auth.engine import Engine
from mailwarden.config import loads
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ConfigError
from tests.frontends.test_web import WEB_CONFIG, Client, Served, web_site


@asynccontextmanager
async def serving(
    engine: Engine, directory: MemoryDirectory, proxies: tuple[str, ...]
) -> AsyncIterator[Served]:
    config = dataclasses.replace(WEB_CONFIG, trusted_proxies=proxies)
    async with web_site(engine, directory, config=config) as served:
        yield served


FORWARDED = {"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"}


async def sign_in_address(
    served: Served, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> tuple[str | None, str]:
    """The remote address of a failed web sign-in, and the sign-in cookie's flags."""
    caplog.clear()
    c = Client(served)
    r = await c.go("GET", "/ui/login", headers=headers)
    cookie = r.headers["set-cookie"]
    token = (await c.form_token("/ui/login")) if "mw_login" in c.cookies else ""
    await c.go(
        "POST",
        "/ui/login",
        {"csrf": token, "username": "alice", "password": "wrong"},
        headers=headers,
    )
    decisions = [
        r.decision for r in caplog.records if r.name == "mailwarden.auth" and hasattr(r, "decision")
    ]
    assert len(decisions) == 1, decisions
    return decisions[0]["remote_ip"], cookie


async def test_with_no_trusted_proxy_a_client_cannot_claim_loopback_or_https(
    engine: Engine, directory: MemoryDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailwarden.auth")
    async with serving(engine, directory, ()) as served:
        for claimed in ("127.0.0.1", "192.0.2.9"):
            headers = {**FORWARDED, "X-Forwarded-For": claimed}
            address, cookie = await sign_in_address(served, caplog, headers)
            assert address == "127.0.0.1"  # the TCP peer, whatever the header said
            assert "Secure" not in cookie


async def test_a_trusted_proxy_is_believed_and_only_its_own_hop(
    engine: Engine, directory: MemoryDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailwarden.auth")
    async with serving(engine, directory, ("127.0.0.1/32",)) as served:
        address, cookie = await sign_in_address(
            served, caplog, {**FORWARDED, "X-Forwarded-For": "192.0.2.9"}
        )
        assert address == "192.0.2.9"
        assert "Secure" in cookie
        # The client sent "127.0.0.1"; the proxy appended what it saw.
        address, _ = await sign_in_address(
            served, caplog, {"X-Forwarded-For": "127.0.0.1, 198.51.100.7"}
        )
        assert address == "198.51.100.7"


async def test_a_proxy_elsewhere_is_not_believed_from_loopback(
    engine: Engine, directory: MemoryDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mailwarden.auth")
    async with serving(engine, directory, ("10.0.0.0/8",)) as served:
        address, cookie = await sign_in_address(served, caplog, FORWARDED)
        assert address == "127.0.0.1" and "Secure" not in cookie


def test_trusted_proxies_must_be_networks() -> None:
    config = loads('[http]\ntrusted_proxies = ["10.0.0.0/8", "::1"]\n')
    assert config.http.trusted_proxies == ("10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match=r"http.trusted_proxies\[1\]"):
        loads('[http]\ntrusted_proxies = ["10.0.0.0/8", "proxy.example"]\n')
