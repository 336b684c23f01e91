"""The admin API's administrators, tokens and audit log, and roles on every admin route,
on the real uvicorn over raw sockets."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.accounts.audit import AuditLog
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.accounts.staff import Staff
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.state.base import AuditQuery
from mailwarden.state.memory import MemoryStateStore
from tests.frontends.test_http_frontend import CONFIG, Response, request
from tests.staffing import bearer, staff_with_tokens

BOOT = {"Authorization": "Bearer " + CONFIG.admin_token}


@pytest_asyncio.fixture
async def staff(engine: Engine) -> Staff:
    return await staff_with_tokens(engine.hasher, bootstrap_token=CONFIG.admin_token)


@pytest_asyncio.fixture
async def server(
    engine: Engine, directory: MemoryDirectory, staff: Staff
) -> AsyncIterator[HttpServer]:
    admin = AccountAdmin(
        directory=directory,
        hasher=engine.hasher,
        engine=engine,
        default_scheme="SHA256-CRYPT",
        audit=staff.audit,
    )
    running = await start_http(engine, CONFIG, resolve=Path, admin=admin, staff=staff)
    yield running
    await running.close()


async def call(
    server: HttpServer, method: str, path: str, data: Any = None, *, headers: dict[str, str]
) -> Response:
    body = b"" if data is None else json.dumps(data).encode()
    return await request(
        server, method, path, body, headers={**headers, "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    ("scope", "method", "path", "data", "allowed"),
    [
        ("read", "GET", "/api/v1/accounts/alice", None, True),
        ("read", "PUT", "/api/v1/accounts/alice/password", {"generate": True}, False),
        ("read", "DELETE", "/api/v1/bruteforce/flush", {"target": "*"}, False),
        ("read", "GET", "/api/v1/audit", None, True),
        ("helpdesk", "PUT", "/api/v1/accounts/alice/password", {"generate": True}, True),
        ("helpdesk", "DELETE", "/api/v1/bruteforce/flush", {"target": "*"}, True),
        ("helpdesk", "DELETE", "/api/v1/cache/flush", {"user": "alice"}, True),
        ("helpdesk", "PATCH", "/api/v1/accounts/alice", {"quota_bytes": 1}, False),
        ("helpdesk", "DELETE", "/api/v1/accounts/alice", None, False),
        ("helpdesk", "POST", "/api/v1/accounts", {"uid": "eve"}, False),
        ("helpdesk", "POST", "/api/v1/tokens", {"name": "x", "scope": "admin"}, False),
        (
            "helpdesk",
            "POST",
            "/api/v1/admins",
            {"name": "eve", "password": "a long password", "role": "admin"},
            False,
        ),
        ("admin", "DELETE", "/api/v1/accounts/alice", None, True),
    ],
)
async def test_each_scope_reaches_exactly_what_its_role_allows(
    server: HttpServer,
    directory: MemoryDirectory,
    scope: str,
    method: str,
    path: str,
    data: Any,
    allowed: bool,
) -> None:
    r = await call(server, method, path, data, headers=bearer(scope))
    if allowed:
        assert r.status in (200, 201, 204), r.body
    else:
        assert r.status == 403, r.body
        assert await directory.get("alice") is not None
        assert await directory.get("eve") is None


async def test_the_bootstrap_token_creates_only_the_first_administrator(
    server: HttpServer, staff: Staff
) -> None:
    await staff.store.remove_token("admin")
    r = await call(server, "GET", "/api/v1/accounts", headers=BOOT)
    assert r.status == 403
    new = {"name": "ann", "password": "a long password", "role": "admin"}
    r = await call(server, "POST", "/api/v1/admins", new, headers=BOOT)
    assert r.status == 201, r.body
    assert r.json()["name"] == "ann" and "password" not in r.json()
    for path, data in (("/api/v1/admins", {**new, "name": "bob"}), ("/api/v1/accounts", None)):
        r = await call(server, "POST" if data else "GET", path, data, headers=BOOT)
        assert r.status == 401
    assert [a.name for a in await staff.admins()] == ["ann"]
    actions = [e.action for e in await staff.audit.entries(AuditQuery(actor="bootstrap token"))]
    assert actions == [
        "bootstrap.refused",
        "bootstrap.refused",
        "admin.add",
        "bootstrap.use",
        "bootstrap.use",
    ]


async def test_a_token_is_shown_once_works_and_stops_when_revoked(server: HttpServer) -> None:
    r = await call(
        server, "POST", "/api/v1/tokens", {"name": "ci", "scope": "read"}, headers=bearer()
    )
    assert r.status == 201, r.body
    value = r.json()["token"]
    mine = {"Authorization": "Bearer " + value}
    assert (await call(server, "GET", "/api/v1/accounts", headers=mine)).status == 200
    listed = (await call(server, "GET", "/api/v1/tokens", headers=bearer())).json()
    assert "ci" in {t["name"] for t in listed["tokens"]} and value not in json.dumps(listed)
    assert (await call(server, "DELETE", "/api/v1/tokens/ci", headers=bearer())).status == 204
    assert (await call(server, "GET", "/api/v1/accounts", headers=mine)).status == 401


async def test_an_expired_token_is_refused(server: HttpServer, staff: Staff) -> None:
    r = await call(
        server,
        "POST",
        "/api/v1/tokens",
        {"name": "brief", "scope": "admin", "expires_in": 30},
        headers=bearer(),
    )
    value = r.json()["token"]
    staff.clock = lambda: 4_000_000_000.0
    r = await call(server, "GET", "/api/v1/accounts", headers={"Authorization": "Bearer " + value})
    assert r.status == 401


async def test_the_audit_route_lists_changes_with_who_and_where_but_no_secret(
    server: HttpServer,
) -> None:
    await call(
        server,
        "PUT",
        "/api/v1/accounts/alice/password",
        {"password": "N3w-pass-w0rd"},
        headers=bearer("helpdesk"),
    )
    await call(server, "PATCH", "/api/v1/accounts/alice", {"quota_bytes": 9}, headers=bearer())
    await call(
        server,
        "DELETE",
        "/api/v1/bruteforce/flush",
        {"target": "192.0.2.0/24"},
        headers=bearer("helpdesk"),
    )
    r = await call(server, "GET", "/api/v1/audit?user=alice&limit=10", headers=bearer("read"))
    assert r.status == 200
    entries = r.json()["entries"]
    assert [(e["actor"], e["action"], e["fields"]) for e in entries] == [
        ("token:admin", "account.update", ["quota_bytes"]),
        ("token:helpdesk", "account.password", ["password"]),
    ]
    assert entries[0]["source"] == "127.0.0.1"
    assert "N3w-pass-w0rd" not in r.body.decode()
    r = await call(server, "GET", "/api/v1/audit?actor=token:helpdesk", headers=bearer("read"))
    assert [e["action"] for e in r.json()["entries"]] == ["ban.unblock", "account.password"]
    bad = await call(server, "GET", "/api/v1/audit?since=yesterday", headers=bearer("read"))
    assert bad.status == 400


async def test_administrators_through_the_api(server: HttpServer, staff: Staff) -> None:
    new = {"name": "hal", "password": "a long password", "role": "helpdesk"}
    assert (await call(server, "POST", "/api/v1/admins", new, headers=bearer())).status == 201
    assert (await call(server, "POST", "/api/v1/admins", new, headers=bearer())).status == 409
    r = await call(server, "PATCH", "/api/v1/admins/hal", {"role": "admin"}, headers=bearer())
    assert r.status == 200 and r.json()["role"] == "admin"
    r = await call(server, "GET", "/api/v1/admins", headers=bearer("read"))
    assert [a["name"] for a in r.json()["admins"]] == ["hal"]
    assert (await call(server, "DELETE", "/api/v1/admins/hal", headers=bearer())).status == 403
    assert (await call(server, "DELETE", "/api/v1/admins/nobody", headers=bearer())).status == 404


async def test_without_staff_the_admin_routes_are_closed(
    engine: Engine, directory: MemoryDirectory
) -> None:
    admin = AccountAdmin(
        directory=directory,
        hasher=engine.hasher,
        engine=engine,
        default_scheme="SHA256-CRYPT",
        audit=AuditLog(MemoryStateStore()),
    )
    running = await start_http(engine, CONFIG, resolve=Path, admin=admin)
    try:
        for headers in (BOOT, bearer()):
            r = await call(running, "GET", "/api/v1/accounts", headers=headers)
            assert r.status == 401
    finally:
        await running.close()
