"""What the HTTP listener says when things go wrong: never a cause, never a trace.

A real ``running_app`` over a real slapd, stopped once the app is up (so
python-ldap really fails to reach it), is served by the real uvicorn listener;
every reply is read off the socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.app import App, check_backends, running_app
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpApi, HttpServer, start_http
from tests.frontends.test_http_frontend import (
    CONFIG,
    CREDS,
    Response,
    auth,
    read_response,
    request,
)
from tests.frontends.test_web import Client, Clock, Served, token_of
from tests.helpers import make_config
from tests.slapd import SERVICE_DN, SERVICE_PW, SUFFIX, Slapd, have_slapd
from tests.staffing import bearer, staff_with_tokens


@dataclasses.dataclass
class Down:
    server: HttpServer
    app: App
    ldap_url: str


@pytest_asyncio.fixture
async def down(tmp_path: Path) -> AsyncIterator[Down]:
    if not have_slapd():
        pytest.skip("slapd is not installed (scripts/bootstrap.sh installs it)")
    slapd = Slapd(tmp_path / "slapd")
    slapd.start()
    config = make_config(
        directory={"backend": "ldap"},
        ldap={
            "servers": (slapd.url,),
            "base_dn": SUFFIX,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PW,
            "timeout": 1.0,
        },
        passwords={"scheme": "SHA512-CRYPT"},
    )
    try:
        async with running_app(config) as app:
            slapd.stop()

            async def readiness() -> dict[str, str]:
                return await check_backends(app)

            staff = await staff_with_tokens(app.hasher)
            server = await start_http(
                app.engine,
                CONFIG,
                resolve=Path,
                admin=app.admin,
                staff=staff,
                readiness=readiness,
            )
            try:
                yield Down(server, app, slapd.url)
            finally:
                await server.close()
    finally:
        slapd.stop()


def assert_no_cause(r: Response, down: Down) -> None:
    text = r.body.decode("utf-8", "replace") + json.dumps(r.headers)
    for secret in (down.ldap_url, "127.0.0.1", "LDAP server", "Traceback", "dc=example"):
        assert secret not in text, (secret, text)


async def test_a_500_has_a_generic_text_and_the_request_id_and_the_log_has_the_cause(
    down: Down, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    r = await auth(down.server, "alice", "secret")
    assert r.status == 500
    assert_no_cause(r, down)
    rid = r.headers["x-nauthilus-session"]
    assert r.json() == {"error": "Temporary server problem, try again later", "request_id": rid}
    logged = [rec.getMessage() + json.dumps(getattr(rec, "decision", {})) for rec in caplog.records]
    assert any(rid in line and down.ldap_url in line for line in logged), logged
    lookup = await auth(down.server, "alice", "secret", query="?mode=no-auth")
    assert lookup.status == 500
    assert_no_cause(lookup, down)
    rid = lookup.headers["x-nauthilus-session"]
    assert any(rid in m and down.ldap_url in m for m in (r.getMessage() for r in caplog.records))


async def test_the_admin_apis_503_names_no_backend(down: Down) -> None:
    r = await request(down.server, "GET", "/api/v1/accounts/alice", headers=bearer())
    assert r.status == 503
    assert_no_cause(r, down)
    assert r.headers["x-nauthilus-session"] in r.json()["error"]


async def test_readyz_shows_only_state_words_and_logs_the_cause(
    down: Down, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    r = await request(down.server, "GET", "/readyz")
    assert r.status == 503
    assert_no_cause(r, down)
    body = r.json()
    assert body["checks"] == {"directory": "unavailable", "guard_store": "ok"}
    assert any(
        body["request_id"] in m and down.ldap_url in m
        for m in (rec.getMessage() for rec in caplog.records)
    )


async def raw(server: HttpServer, head: bytes) -> Response:
    """Send a request head as bytes (header values in Latin-1, as http.client does)."""
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def test_a_non_ascii_digit_as_login_attempt_gets_nginx_an_answer_not_a_500(
    engine: Engine,
) -> None:
    server = await start_http(engine, CONFIG, resolve=Path)
    try:
        head = (
            b"GET /api/v1/auth/nginx HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {CREDS}\r\n".encode()
            + b"Auth-Method: plain\r\nAuth-User: alice\r\nAuth-Pass: secret\r\n"
            b"Auth-Protocol: imap\r\nAuth-Login-Attempt: \xb2\r\nClient-IP: 192.0.2.1\r\n\r\n"
        )
        r = await raw(server, head)
        assert r.status == 200
        assert r.headers["auth-status"] == "header Auth-Login-Attempt must be a number"
    finally:
        await server.close()


@pytest.mark.parametrize("field", ["password", "username"])
async def test_a_lone_surrogate_in_the_json_body_is_a_400_not_a_500(
    engine: Engine, field: str
) -> None:
    server = await start_http(engine, CONFIG, resolve=Path)
    try:
        fields = {"username": "alice", "password": "secret", "service": "imap"}
        fields[field] = "\ud800"
        r = await request(
            server,
            "POST",
            "/api/v1/auth/json",
            json.dumps(fields).encode(),
            headers={"Authorization": CREDS, "Content-Type": "application/json"},
        )
        assert r.status == 400
        assert "lone surrogate" in r.json()["error"]
    finally:
        await server.close()


async def test_a_password_with_a_nul_byte_is_a_400_on_the_admin_api_and_the_web_page(
    engine: Engine, directory: MemoryDirectory
) -> None:
    admin = AccountAdmin(
        directory=directory, hasher=engine.hasher, engine=engine, default_scheme="SHA256-CRYPT"
    )
    staff = await staff_with_tokens(engine.hasher)
    server = await start_http(engine, CONFIG, resolve=Path, admin=admin, staff=staff)
    try:
        headers = {**bearer(), "Content-Type": "application/json"}
        body = json.dumps({"password": "new\x00password"}).encode()
        r = await request(server, "PUT", "/api/v1/accounts/alice/password", body, headers=headers)
        assert r.status == 400 and "NUL" in r.json()["error"]
        api = server._server.config.app
        assert isinstance(api, HttpApi)
        c = Client(Served(server, api.web, Clock()))
        await c.user_login("alice", "secret")
        token = token_of((await c.go("GET", "/ui/me")).body)
        form = {"csrf": token, "current": "secret", "new": "a\x00" * 6, "repeat": "a\x00" * 6}
        r = await c.go("POST", "/ui/me/password", form)
        assert r.status == 400 and b"NUL" in r.body
    finally:
        await server.close()
