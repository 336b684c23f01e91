"""Bearer tokens through the engine: the same account rules as a password, one guard,
outages as Unavailable, and no token in any log line."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from mailwarden.accounts import apppasswords
from mailwarden.app import build_engine
from mailwarden.auth.engine import Engine
from mailwarden.config import GuardConfig, GuardRule
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ProviderUnavailable
from mailwarden.hashing.pool import Hasher
from mailwarden.model import (
    Accepted,
    Account,
    AccountStatus,
    AuthAttempt,
    AuthOutcome,
    BearerToken,
    Denied,
    DenyReason,
    Unavailable,
)
from mailwarden.oauth2.provider import StaticTransport
from tests.helpers import FAST, hashed
from tests.oauth2.issuer import JWKS, Clock, claims, key, provider, sign, verifier

ATTACKER = "203.0.113.9"
SIGNER = ("RSA", "k1")


@pytest_asyncio.fixture
async def accounts() -> AsyncIterator[MemoryDirectory]:
    d = MemoryDirectory()
    for account in (
        Account(uid="alice", mail="alice@example.com", password=hashed("secret")),
        Account(uid="bob", mail="bob@example.com", password=hashed("bobpw")),
        Account(uid="carol", mail="carol@example.com", status=AccountStatus.DISABLED),
        Account(uid="dave", mail="dave@example.com", services={"imap": False}),
        Account(uid="erin", mail="erin@example.com", allow_nets=("10.0.0.0/8",)),
    ):
        await d.create(account)
    yield d
    await d.close()


@pytest.fixture
def hasher() -> Iterator[Hasher]:
    h = Hasher(workers=1)
    yield h
    h.close()


GUARD = GuardConfig(
    allow_networks=(), rules=(GuardRule(name="ip", period=60.0, threshold=3),), account_threshold=0
)


def engine_for(
    directory: MemoryDirectory,
    hasher: Hasher,
    transport: StaticTransport | None,
    clock: Clock | None = None,
) -> Engine:
    config = dataclasses.replace(FAST, guard=GUARD)
    tokens = verifier(transport, clock) if transport is not None else None
    return build_engine(config, directory=directory, hasher=hasher, tokens=tokens)


def token_for(email: str, **changes: object) -> str:
    return sign(claims(email=email, **changes), key(*SIGNER))


async def login(
    engine: Engine, user: str, token: str, *, ip: str = ATTACKER, service: str = "imap"
) -> AuthOutcome:
    return await engine.authenticate(
        AuthAttempt(
            username=user,
            credentials=BearerToken(token),
            service=service,
            mechanism="XOAUTH2",
            remote_ip=ip,
        )
    )


def reason(outcome: AuthOutcome) -> DenyReason:
    assert isinstance(outcome, Denied), outcome
    return outcome.reason


async def test_a_valid_token_logs_its_user_in(accounts: MemoryDirectory, hasher: Hasher) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    for name in ("alice", "alice@example.com", "ALICE@example.com"):
        outcome = await login(engine, name, token_for("alice@example.com"))
        assert isinstance(outcome, Accepted), name
        assert outcome.user == "alice"


async def test_a_token_of_another_user_is_refused_like_a_wrong_password(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    assert reason(await login(engine, "alice", token_for("bob@example.com"))) is (
        DenyReason.CREDENTIALS
    )


async def test_a_token_for_no_account_is_refused_like_an_unknown_user(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    outcome = await login(engine, "zoe@example.com", token_for("zoe@example.com"))
    assert reason(outcome) is DenyReason.CREDENTIALS


async def test_status_services_and_networks_apply_as_for_a_password(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    assert reason(await login(engine, "carol", token_for("carol@example.com"))) is (
        DenyReason.DISABLED
    )
    assert reason(await login(engine, "dave", token_for("dave@example.com"))) is (
        DenyReason.SERVICE_DISABLED
    )
    assert isinstance(
        await login(engine, "dave", token_for("dave@example.com"), service="smtp"), Accepted
    )
    assert reason(await login(engine, "erin", token_for("erin@example.com"))) is (
        DenyReason.NETWORK
    )
    assert isinstance(
        await login(engine, "erin", token_for("erin@example.com"), ip="10.1.2.3"), Accepted
    )


async def test_the_password_is_not_a_token(accounts: MemoryDirectory, hasher: Hasher) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    assert reason(await login(engine, "alice", "secret")) is DenyReason.CREDENTIALS


async def test_without_oauth2_a_token_is_verified_like_a_password(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    """Dovecot with a passdb that is not oauth2: the token is the password."""
    engine = engine_for(accounts, hasher, None)
    assert isinstance(await login(engine, "alice", "secret"), Accepted)
    assert reason(await login(engine, "alice", token_for("alice@example.com"))) is (
        DenyReason.CREDENTIALS
    )


async def test_without_oauth2_an_app_password_as_a_token_keeps_its_services(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    """The token-as-password path applies every rule a password login does."""
    new = apppasswords.issue(name="phone", services=("imap",), now=time.time())
    await accounts.modify("alice", lambda a: apppasswords.added(a, new.app_password))
    engine = engine_for(accounts, hasher, None)
    assert isinstance(await login(engine, "alice", new.value, service="imap"), Accepted)
    assert reason(await login(engine, "alice", new.value, service="smtp")) is (
        DenyReason.CREDENTIALS
    )


async def test_refused_tokens_feed_the_guard_as_wrong_passwords_do(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    for i in range(3):
        bad = token_for("alice@example.com", exp=1, jti=f"t{i}")
        assert reason(await login(engine, "alice", bad)) is DenyReason.CREDENTIALS
    assert reason(await login(engine, "alice", token_for("alice@example.com"))) is (
        DenyReason.BLOCKED
    )


async def test_a_provider_outage_is_unavailable_and_counts_nothing(
    accounts: MemoryDirectory, hasher: Hasher
) -> None:
    transport = provider(key(*SIGNER))
    transport.answers[JWKS] = ProviderUnavailable("connection refused")
    clock = Clock()
    engine = engine_for(accounts, hasher, transport, clock)
    for _ in range(5):
        assert isinstance(await login(engine, "alice", token_for("alice@example.com")), Unavailable)
    transport.set_json(JWKS, {"keys": [key(*SIGNER).as_dict(private=False)]})
    clock.now += 61  # the next try at fetching the keys
    assert isinstance(await login(engine, "alice", token_for("alice@example.com")), Accepted)


async def test_no_log_line_holds_the_token(
    accounts: MemoryDirectory, hasher: Hasher, caplog: pytest.LogCaptureFixture
) -> None:
    engine = engine_for(accounts, hasher, provider(key(*SIGNER)))
    caplog.set_level(logging.DEBUG)
    tokens = [
        token_for("alice@example.com"),
        token_for("bob@example.com"),
        token_for("alice@example.com", aud="other"),
        "opaque-secret-value",
    ]
    for token in tokens:
        await login(engine, "alice", token)
    text = caplog.text
    assert "refused" in text
    for token in tokens:
        assert token not in text
        assert token.split(".")[-1] not in text


def test_a_bearer_tokens_repr_hides_it() -> None:
    token = BearerToken("eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert "eyJ" not in repr(token)
    assert "eyJ" not in str(token)
    assert "eyJ" not in repr(AuthAttempt(username="a", credentials=token, service="imap"))
