"""Clustering: the engine's proxy fields for accounts that live on another mail host."""

from __future__ import annotations

from typing import Any

import pytest

from mailwarden.config import loads
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ConfigError
from mailwarden.model import Accepted, Account, AccountStatus, Denied
from tests.conftest import EngineFactory
from tests.helpers import attempt, make_config

CLUSTER = make_config(
    passwords={"scheme": "SHA512-CRYPT"}, cluster={"enabled": True, "me": "mx1.example.com"}
)


async def accounts() -> MemoryDirectory:
    d = MemoryDirectory()
    await d.create(Account(uid="far", password="{PLAIN}secret", mail_host="mx2.example.com"))
    await d.create(Account(uid="near", password="{PLAIN}secret", mail_host="MX1.example.com"))
    await d.create(
        Account(
            uid="off",
            password="{PLAIN}secret",
            mail_host="mx2.example.com",
            status=AccountStatus.DISABLED,
        )
    )
    return d


async def login(make_engine: EngineFactory, user: str, config: Any = CLUSTER, **kw: Any) -> Any:
    engine = make_engine(config, await accounts())
    return await engine.authenticate(attempt(user, **kw))


async def test_an_account_on_another_host_gets_proxy_fields(make_engine: EngineFactory) -> None:
    outcome = await login(make_engine, "far", service="imap")
    assert isinstance(outcome, Accepted)
    assert dict(outcome.passdb_fields) == {
        "proxy": "",
        "host": "mx2.example.com",
        "port": "143",
        "destuser": "far",
    }


async def test_pop3_logins_get_the_pop3_port(make_engine: EngineFactory) -> None:
    outcome = await login(make_engine, "far", service="pop3")
    assert isinstance(outcome, Accepted)
    assert outcome.passdb_fields["port"] == "110"


async def test_an_account_on_this_host_is_served_locally(make_engine: EngineFactory) -> None:
    outcome = await login(make_engine, "near")
    assert isinstance(outcome, Accepted)
    assert "proxy" not in outcome.passdb_fields


async def test_without_clustering_no_account_is_proxied(make_engine: EngineFactory) -> None:
    outcome = await login(make_engine, "far", config=make_config())
    assert isinstance(outcome, Accepted)
    assert "host" not in outcome.passdb_fields


async def test_a_disabled_account_bounces_before_forwarding(make_engine: EngineFactory) -> None:
    assert isinstance(await login(make_engine, "off"), Denied)


async def test_proxy_maybe_can_be_chosen(make_engine: EngineFactory) -> None:
    config = make_config(cluster={"enabled": True, "me": "mx1", "proxy": "proxy_maybe"})
    outcome = await login(make_engine, "far", config=config)
    assert isinstance(outcome, Accepted)
    assert "proxy_maybe" in outcome.passdb_fields


def test_clustering_without_me_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.me"):
        loads("[cluster]\nenabled = true\n")
