"""The HTTP API's ``"method": "xoauth2"``: ``password`` is a bearer token, validated as
one, with the API's usual replies (served by the real uvicorn on loopback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.app import build_engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import ProviderUnavailable
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.hashing.pool import Hasher
from mailwarden.model import Account
from mailwarden.oauth2.provider import StaticTransport
from tests.frontends.test_http_frontend import CONFIG, CREDS, Response, auth_body, request
from tests.helpers import FAST, hashed
from tests.oauth2.issuer import JWKS, claims, key, provider, sign, verifier

SIGNER = key("RSA", "k1")


@pytest.fixture
def transport() -> StaticTransport:
    return provider(SIGNER)


@pytest_asyncio.fixture
async def server(transport: StaticTransport) -> AsyncIterator[HttpServer]:
    directory = MemoryDirectory()
    await directory.create(Account(uid="alice", mail="alice@example.com", password=hashed("pw")))
    hasher = Hasher(workers=1)
    engine = build_engine(FAST, directory=directory, hasher=hasher, tokens=verifier(transport))
    running = await start_http(engine, CONFIG, resolve=Path)
    yield running
    await running.close()
    hasher.close()


async def token_auth(server: HttpServer, user: str, token: str, method: str) -> Response:
    return await request(
        server,
        "POST",
        "/api/v1/auth/json",
        auth_body(user, token, method=method),
        headers={"Authorization": CREDS, "Content-Type": "application/json"},
    )


@pytest.mark.parametrize("method", ["xoauth2", "oauthbearer"])
async def test_a_valid_token_is_accepted(server: HttpServer, method: str) -> None:
    r = await token_auth(server, "alice", sign(claims(), SIGNER), method)
    assert r.status == 200
    assert r.headers["auth-user"] == "alice"


async def test_a_refused_token_is_an_invalid_login(server: HttpServer) -> None:
    r = await token_auth(server, "alice", sign(claims(aud="other"), SIGNER), "xoauth2")
    assert (r.status, r.headers["auth-status"]) == (403, "Invalid login or password")


async def test_the_password_is_not_taken_for_a_token_nor_a_token_for_the_password(
    server: HttpServer,
) -> None:
    assert (await token_auth(server, "alice", "pw", "xoauth2")).status == 403
    assert (await token_auth(server, "alice", sign(claims(), SIGNER), "plain")).status == 403
    assert (await token_auth(server, "alice", "pw", "plain")).status == 200


async def test_the_provider_down_is_a_temporary_failure(
    server: HttpServer, transport: StaticTransport
) -> None:
    transport.answers[JWKS] = ProviderUnavailable("connection refused")
    r = await token_auth(server, "alice", sign(claims(), SIGNER), "xoauth2")
    assert r.status == 500
    assert "Temporary" in r.headers["auth-status"]
