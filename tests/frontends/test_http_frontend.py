"""The HTTP API served by the real uvicorn on loopback, driven over raw sockets."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.auth import tokens
from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpApi, HttpServer, start_http
from mailwarden.model import Account, AccountStatus, AppPassword
from mailwarden.protocols import admin_api, staff_api
from mailwarden.protocols.http_api import OPENAPI_PATH, openapi
from tests.helpers import hashed
from tests.staffing import ADMIN_TOKEN, bearer, staff_with_tokens

CREDS = "Basic " + base64.b64encode(b"dovecot:apisecret").decode()
CONFIG = HttpConfig(
    enabled=True,
    listen=("127.0.0.1:0",),
    auth_username="dovecot",
    auth_password="apisecret",
    allow_list_accounts=True,
    admin_token="admintoken",
    attributes={"rnsMSMailPath": "userdb:mail", "rnsMSQuota": "quota_bytes", "uid": "uid"},
    max_body_bytes=2048,
    nginx_backends={"": {"imap": "127.0.0.9:1143"}},
)


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def start(engine: Engine, config: HttpConfig) -> HttpServer:
    staff = await staff_with_tokens(engine.hasher, bootstrap_token=config.admin_token)
    return await start_http(engine, config, resolve=Path, staff=staff)


@pytest_asyncio.fixture
async def server(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[HttpServer]:
    await directory.create(
        Account(uid="carol", password=hashed("secret"), status=AccountStatus.DISABLED)
    )
    running = await start(engine, CONFIG)
    yield running
    await running.close()


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 5)
    return Response(status, headers, body)


async def request(
    server: HttpServer,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        all_headers = {"Host": "x", "Content-Length": str(len(body)), **(headers or {})}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in all_headers.items()
        )
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


def auth_body(user: str, password: str, **extra: str) -> bytes:
    return json.dumps({"username": user, "password": password, "service": "imap", **extra}).encode()


async def auth(server: HttpServer, user: str, password: str, query: str = "") -> Response:
    return await request(
        server,
        "POST",
        "/api/v1/auth/json" + query,
        auth_body(user, password),
        headers={"Authorization": CREDS, "Content-Type": "application/json"},
    )


APP_PASSWORD = "mwa_" + "h" * 24  # an app password of alice's (docs/credentials.md)


@pytest_asyncio.fixture(params=["password", "app password"])
async def alice_secret(request: pytest.FixtureRequest, directory: MemoryDirectory) -> str:
    """alice's password, or an app password of hers: a test that takes this passes
    with either."""
    if request.param == "password":
        return "secret"
    app = AppPassword(
        id="h", name="http", digest=tokens.digest(tokens.TokenKind.APP_PASSWORD, APP_PASSWORD)
    )
    await directory.modify("alice", lambda a: dataclasses.replace(a, app_passwords=(app,)))
    return APP_PASSWORD


async def test_good_password_returns_ok_with_account_and_attribute_lists(
    server: HttpServer, alice_secret: str
) -> None:
    r = await auth(server, "alice@example.com", alice_secret)
    assert r.status == 200
    assert r.headers["auth-status"] == "OK"
    assert r.headers["auth-user"] == "alice"
    assert r.headers["x-nauthilus-session"] == r.headers["x-mailwarden-session"]
    assert r.json() == {
        "ok": True,
        "account_field": "uid",
        "attributes": {
            "rnsMSMailPath": ["maildir:~/Maildir"],
            "rnsMSQuota": ["1000000"],
            "uid": ["alice"],
        },
    }


async def test_wrong_password_and_unknown_user_get_identical_replies(server: HttpServer) -> None:
    wrong = await auth(server, "alice", "nope")
    unknown = await auth(server, "nobody", "nope")
    for r in (wrong, unknown):
        assert r.status == 403
        assert r.headers["auth-status"] == "Invalid login or password"
        assert r.body == b"null"
    assert wrong.headers.keys() == unknown.headers.keys()


async def test_disabled_account_with_the_right_password_gets_the_disabled_text(
    server: HttpServer,
) -> None:
    r = await auth(server, "carol", "secret")
    assert r.status == 403
    assert r.headers["auth-status"] == "Account not enabled"
    bad = await auth(server, "carol", "wrong")
    assert bad.headers["auth-status"] == "Invalid login or password"


async def test_no_auth_mode_looks_the_user_up_without_a_password(server: HttpServer) -> None:
    r = await request(
        server,
        "POST",
        "/api/v1/auth/json?mode=no-auth",
        json.dumps({"username": "alice", "service": "imap"}).encode(),
        headers={"Authorization": CREDS},
    )
    assert r.status == 200 and r.headers["auth-user"] == "alice"
    missing = await request(
        server,
        "POST",
        "/api/v1/auth/json?mode=no-auth",
        b'{"username": "nobody"}',
        headers={"Authorization": CREDS},
    )
    assert missing.status == 403


async def test_list_accounts_as_json_and_as_crlf_text(server: HttpServer) -> None:
    as_json = await request(
        server,
        "GET",
        "/api/v1/auth/json?mode=list-accounts",
        headers={"Authorization": CREDS, "Accept": "application/json"},
    )
    assert as_json.status == 200 and sorted(as_json.json()) == ["alice", "carol"]
    as_text = await request(
        server,
        "GET",
        "/api/v1/auth/json?mode=list-accounts",
        headers={"Authorization": CREDS, "Accept": "text/plain"},
    )
    assert sorted(as_text.body.split(b"\r\n")) == [b"", b"alice", b"carol"]


async def test_list_accounts_is_refused_unless_allowed(engine: Engine) -> None:
    running = await start(engine, dataclasses.replace(CONFIG, allow_list_accounts=False))
    try:
        r = await request(
            running, "GET", "/api/v1/auth/json?mode=list-accounts", headers={"Authorization": CREDS}
        )
        assert r.status == 403
    finally:
        await running.close()


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic " + base64.b64encode(b"dovecot:wrong").decode(), "Bearer " + ADMIN_TOKEN],
)
async def test_missing_or_wrong_caller_credentials_get_401(
    server: HttpServer, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    r = await request(
        server, "POST", "/api/v1/auth/json", auth_body("alice", "secret"), headers=headers
    )
    assert r.status == 401
    assert "auth-user" not in r.headers


async def test_with_no_credentials_configured_every_auth_request_gets_401(engine: Engine) -> None:
    running = await start(engine, HttpConfig(enabled=True, listen=("127.0.0.1:0",)))
    try:
        empty = "Basic " + base64.b64encode(b":").decode()
        r = await request(
            running,
            "POST",
            "/api/v1/auth/json",
            auth_body("alice", "secret"),
            headers={"Authorization": empty},
        )
        assert r.status == 401
    finally:
        await running.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b'{"password": "x"}', 400), (b"x" * 4096, 413)],
)
async def test_bad_bodies_get_a_clear_error_and_no_trace(
    server: HttpServer, body: bytes, status: int
) -> None:
    r = await request(server, "POST", "/api/v1/auth/json", body, headers={"Authorization": CREDS})
    assert r.status == status
    error = r.json()
    assert isinstance(error, dict) and error["error"]
    assert b"Traceback" not in r.body


async def test_expect_100_continue_is_answered_before_the_body_is_sent(
    server: HttpServer,
) -> None:
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        body = auth_body("alice", "secret")
        writer.write(
            (
                "POST /api/v1/auth/json HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                f"Authorization: {CREDS}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        # Dovecot's client waits up to 2 s for this line; we must send it at once.
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.5)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(body)
        r = await read_response(reader)
        assert r.status == 200
    finally:
        writer.close()


async def test_keep_alive_serves_several_requests_on_one_connection(server: HttpServer) -> None:
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for password, status in (("secret", 200), ("bad", 403), ("secret", 200)):
            body = auth_body("alice", password)
            writer.write(
                (
                    f"POST /api/v1/auth/json HTTP/1.1\r\nHost: x\r\nAuthorization: {CREDS}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            assert (await read_response(reader)).status == status
    finally:
        writer.close()


async def test_cache_flush_needs_the_admin_bearer_token(server: HttpServer) -> None:
    body = b'{"user": "alice"}'
    denied = await request(
        server, "DELETE", "/api/v1/cache/flush", body, headers={"Authorization": CREDS}
    )
    assert denied.status == 401
    ok = await request(
        server,
        "DELETE",
        "/api/v1/cache/flush",
        body,
        headers=bearer("helpdesk"),
    )
    assert ok.status == 200
    result = ok.json()
    assert isinstance(result, dict) and result["result"]["user"] == "alice"


async def test_unknown_paths_and_methods_get_404_and_405(server: HttpServer) -> None:
    assert (await request(server, "GET", "/nope")).status == 404
    assert (await request(server, "PUT", "/api/v1/auth/json")).status == 405


async def test_openapi_document_lists_exactly_the_routes_and_methods(
    server: HttpServer, engine: Engine
) -> None:
    r = await request(server, "GET", OPENAPI_PATH)
    assert r.status == 200
    doc = r.json()
    assert doc == openapi()
    routes = HttpApi(engine, CONFIG).routes
    assert isinstance(doc, dict)
    documented = {
        path: sorted(m.upper() for m in ops if m != "parameters")
        for path, ops in doc["paths"].items()
    }
    served = {**routes, **admin_api.TEMPLATES, **staff_api.TEMPLATES}
    assert documented == {path: sorted(methods) for path, methods in served.items()}
    for template, methods in admin_api.TEMPLATES.items():
        route = admin_api.route(template.replace("{uid}", "bob@example.com"))
        assert route is not None and admin_api.allowed_methods(route) == methods
    for template, methods in staff_api.TEMPLATES.items():
        found = staff_api.route(template.replace("{name}", "ann"))
        assert found is not None and staff_api.allowed_methods(found) == methods


async def test_listening_sockets_disable_nagle_so_keep_alive_answers_are_not_held_back(
    server: HttpServer,
) -> None:
    for sock in server.sockets:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_nginx_endpoint_answers_200_with_the_outcome_in_auth_status(
    server: HttpServer, alice_secret: str
) -> None:
    def nginx_headers(password: str, attempt: str) -> dict[str, str]:
        return {
            "Authorization": CREDS,
            "Auth-Method": "plain",
            "Auth-User": "alice",
            "Auth-Pass": password,
            "Auth-Protocol": "imap",
            "Auth-Login-Attempt": attempt,
            "Client-IP": "127.0.0.1",
        }

    ok = await request(
        server, "GET", "/api/v1/auth/nginx", headers=nginx_headers(alice_secret, "1")
    )
    assert ok.status == 200
    assert (ok.headers["auth-status"], ok.headers["auth-server"]) == ("OK", "127.0.0.9")
    assert (ok.headers["auth-port"], ok.headers["auth-user"]) == ("1143", "alice")
    bad = await request(server, "GET", "/api/v1/auth/nginx", headers=nginx_headers("x", "2"))
    assert bad.status == 200
    assert bad.headers["auth-status"] == "Invalid login or password"
    assert int(bad.headers["auth-wait"]) >= 2
    malformed = await request(server, "GET", "/api/v1/auth/nginx", headers={"Authorization": CREDS})
    assert malformed.status == 200 and malformed.headers["auth-status"]
    assert "auth-server" not in malformed.headers


async def test_header_endpoint_reads_fields_from_headers_and_returns_attribute_headers(
    server: HttpServer,
) -> None:
    ok = await request(
        server,
        "GET",
        "/api/v1/auth/header",
        headers={
            "Authorization": CREDS,
            "Auth-User": "alice",
            "Auth-Pass": "se%63ret",
            "Auth-Protocol": "imap",
            "Client-IP": "127.0.0.1",
        },
    )
    assert ok.status == 200 and ok.headers["auth-user"] == "alice"
    assert ok.headers["x-nauthilus-rnsmsmailpath"] == "maildir:~/Maildir"
    assert ok.headers["x-nauthilus-uid"] == "alice"
    encoded = base64.urlsafe_b64encode(b"wrong").decode().rstrip("=")
    bad = await request(
        server,
        "POST",
        "/api/v1/auth/header",
        headers={
            "Authorization": CREDS,
            "Auth-User": "alice",
            "Auth-Pass": encoded,
            "X-Auth-Password-Encoded": "1",
        },
    )
    assert bad.status == 403 and bad.headers["auth-status"] == "Invalid login or password"
    assert not any(
        name.startswith("x-nauthilus-") and name != "x-nauthilus-session" for name in bad.headers
    )


async def test_master_mode_accepts_only_accounts_with_the_master_flag(
    server: HttpServer, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="admin", password=hashed("masterpw"), master=True))
    ok = await auth(server, "admin", "masterpw", "?mode=master")
    assert ok.status == 200 and ok.headers["auth-user"] == "admin"
    # alice's password is right, but she may not act as master: the same 403 as a
    # wrong password, so the reply does not confirm her password either.
    not_master = await auth(server, "alice", "secret", "?mode=master")
    wrong = await auth(server, "admin", "wrong", "?mode=master")
    for r in (not_master, wrong):
        assert r.status == 403 and r.body == b"null"
        assert r.headers["auth-status"] == "Invalid login or password"
    assert (await auth(server, "alice", "secret")).status == 200
