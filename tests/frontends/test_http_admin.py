"""The admin API (``/api/v1/accounts``) on the real uvicorn, over raw sockets.

Each test drives the server the way an administrator's script would and then
checks the effect where it matters: in the directory and in real logins through
the same engine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.model import Accepted, Denied
from tests.frontends.test_http_frontend import CONFIG, Response, auth, request
from tests.helpers import attempt
from tests.staffing import bearer, staff_with_tokens

TOKEN = bearer("admin")


@pytest_asyncio.fixture
async def server(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[HttpServer]:
    admin = AccountAdmin(
        directory=directory, hasher=engine.hasher, engine=engine, default_scheme="SHA256-CRYPT"
    )
    staff = await staff_with_tokens(engine.hasher, bootstrap_token=CONFIG.admin_token)
    running = await start_http(engine, CONFIG, resolve=Path, admin=admin, staff=staff)
    yield running
    await running.close()


async def call(
    server: HttpServer,
    method: str,
    path: str,
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = b"" if data is None else json.dumps(data).encode()
    return await request(
        server,
        method,
        path,
        body,
        headers={**TOKEN, "Content-Type": "application/json", **(headers or {})},
    )


async def login(engine: Engine, user: str, password: str, service: str = "imap") -> object:
    return await engine.authenticate(attempt(user, password, service=service))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/accounts"),
        ("POST", "/api/v1/accounts"),
        ("GET", "/api/v1/accounts/alice"),
        ("PATCH", "/api/v1/accounts/alice"),
        ("DELETE", "/api/v1/accounts/alice"),
        ("PUT", "/api/v1/accounts/alice/password"),
        ("GET", "/api/v1/accounts/alice/app-passwords"),
        ("POST", "/api/v1/accounts/alice/app-passwords"),
        ("DELETE", "/api/v1/accounts/alice/app-passwords/phone"),
    ],
)
async def test_every_admin_route_needs_the_bearer_token(
    server: HttpServer, directory: MemoryDirectory, method: str, path: str
) -> None:
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer wrong"},
        # The auth endpoint's Basic credentials are not admin credentials.
        {"Authorization": "Basic ZG92ZWNvdDphcGlzZWNyZXQ="},
    ):
        r = await call(server, method, path, {"uid": "x", "mail": "x@y"}, headers=headers)
        assert r.status == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert await directory.get("alice") is not None
    assert await directory.get("x") is None


async def test_create_then_the_new_account_logs_in_with_its_password(
    server: HttpServer, engine: Engine, directory: MemoryDirectory
) -> None:
    r = await call(
        server,
        "POST",
        "/api/v1/accounts",
        {
            "uid": "bob@example.com",
            "password": "hunter2",
            "alternate_addresses": ["robert@example.com"],
            "services": {"pop3": False},
            "quota_bytes": 5000,
        },
    )
    assert r.status == 201, r.body
    body = r.json()
    assert body["uid"] == "bob@example.com"
    assert body["mail"] == "bob@example.com"  # defaulted from an address-shaped uid
    assert body["password"] == "<set>"
    assert body["services"] == {"pop3": False}
    assert "generated_password" not in body
    stored = await directory.get("bob@example.com")
    assert stored is not None and stored.password.startswith("{SHA256-CRYPT}$5$")
    assert b"hunter2" not in r.body
    assert isinstance(await login(engine, "robert@example.com", "hunter2"), Accepted)
    assert isinstance(await login(engine, "bob@example.com", "hunter2", "pop3"), Denied)
    assert isinstance(await login(engine, "bob@example.com", "wrong"), Denied)


async def test_create_with_a_generated_password_returns_it_once(
    server: HttpServer, engine: Engine, directory: MemoryDirectory
) -> None:
    r = await call(server, "POST", "/api/v1/accounts", {"uid": "gen", "generate": True})
    assert r.status == 201
    generated = r.json()["generated_password"]
    assert len(generated) >= 20
    assert isinstance(await login(engine, "gen", generated), Accepted)
    shown = await call(server, "GET", "/api/v1/accounts/gen")
    assert generated not in shown.body.decode()


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        ({"uid": "alice"}, 409, "alice"),
        ({"uid": "x", "mail": "alice@example.com"}, 409, "alice@example.com"),
        ({"mail": "x@y"}, 400, "uid"),
        ({"uid": "bad uid!"}, 400, "uid"),
        ({"uid": "x", "mail": "not-an-address"}, 400, "not-an-address"),
        ({"uid": "x", "password": "p", "scheme": "NOPE"}, 400, "scheme"),
        ({"uid": "x", "password": ""}, 400, "empty"),
        ({"uid": "x", "password": "p", "generate": True}, 400, "either"),
        ({"uid": "x", "frobnicate": "1"}, 400, "frobnicate"),
        ({"uid": "x", "services": "imap"}, 400, "services"),
        ({"uid": "x", "quota_bytes": {"a": 1}}, 400, "quota_bytes"),
        ({"uid": "x", "quota_bytes": "lots"}, 400, "quota_bytes"),
    ],
)
async def test_create_refuses_bad_input_with_a_message_and_stores_nothing(
    server: HttpServer, directory: MemoryDirectory, data: dict[str, Any], status: int, words: str
) -> None:
    before = await directory.count()
    r = await call(server, "POST", "/api/v1/accounts", data)
    assert r.status == status, r.body
    assert words in r.json()["error"]
    assert await directory.count() == before


async def test_malformed_and_oversized_bodies_get_400_and_413(server: HttpServer) -> None:
    r = await request(server, "POST", "/api/v1/accounts", b"{nope", headers=TOKEN)
    assert r.status == 400 and "JSON" in r.json()["error"]
    r = await request(server, "POST", "/api/v1/accounts", b"[1]", headers=TOKEN)
    assert r.status == 400 and "object" in r.json()["error"]
    big = json.dumps({"uid": "x", "home": "a" * (CONFIG.max_body_bytes + 1)}).encode()
    r = await request(server, "POST", "/api/v1/accounts", big, headers=TOKEN)
    assert r.status == 413


async def test_show_by_uid_or_address_and_404_for_nobody(server: HttpServer) -> None:
    r = await call(server, "GET", "/api/v1/accounts/alice")
    assert r.status == 200
    body = r.json()
    assert body["uid"] == "alice" and body["home"] == "/var/mail/alice"
    assert body["password"] == "<set>"
    assert "$" not in r.body.decode()  # no hash, in any form
    by_address = await call(server, "GET", "/api/v1/accounts/a.liddell@example.com")
    assert by_address.json()["uid"] == "alice"
    missing = await call(server, "GET", "/api/v1/accounts/nobody")
    assert missing.status == 404 and "nobody" in missing.json()["error"]


async def test_search_with_wildcards_and_limit(
    server: HttpServer, directory: MemoryDirectory
) -> None:
    for name in ("bob", "bobby", "carol"):
        assert (await call(server, "POST", "/api/v1/accounts", {"uid": name})).status == 201
    r = await call(server, "GET", "/api/v1/accounts?search=bob*")
    assert r.status == 200
    assert sorted(a["uid"] for a in r.json()["accounts"]) == ["bob", "bobby"]
    assert r.json()["count"] == 2
    everyone = await call(server, "GET", "/api/v1/accounts")
    assert everyone.json()["count"] == await directory.count() == 4
    limited = await call(server, "GET", "/api/v1/accounts?limit=1")
    assert limited.json()["count"] == 1
    for bad in ("limit=0", "limit=x", "limit=100001"):
        assert (await call(server, "GET", "/api/v1/accounts?" + bad)).status == 400


async def test_patch_disable_takes_effect_on_the_next_login(
    server: HttpServer, engine: Engine
) -> None:
    assert isinstance(await login(engine, "alice", "secret"), Accepted)
    r = await call(server, "PATCH", "/api/v1/accounts/alice", {"status": "disabled"})
    assert r.status == 200 and r.json()["status"] == "disabled"
    denied = await login(engine, "alice", "secret")
    assert isinstance(denied, Denied)
    r = await call(server, "PATCH", "/api/v1/accounts/alice", {"status": "active"})
    assert isinstance(await login(engine, "alice", "secret"), Accepted)


async def test_patch_service_switches_fields_and_round_trip_of_get(
    server: HttpServer, engine: Engine, directory: MemoryDirectory
) -> None:
    r = await call(
        server,
        "PATCH",
        "/api/v1/accounts/alice",
        {"service.imap": False, "profile": {"c": "DE"}, "home": None, "userdb_fields": {"x": "1"}},
    )
    assert r.status == 200, r.body
    body = r.json()
    assert body["services"] == {"imap": False}
    assert body["profile"]["c"] == "DE"
    assert body["home"] is None
    assert body["userdb_fields"]["x"] == "1"
    assert isinstance(await login(engine, "alice", "secret", "imap"), Denied)
    assert isinstance(await login(engine, "alice", "secret", "pop3"), Accepted)
    # What GET returns can be sent back unchanged.
    again = await call(server, "PATCH", "/api/v1/accounts/alice", body)
    assert again.status == 200, again.body
    assert again.json() == body
    stored = await directory.get("alice")
    assert stored is not None and stored.password.startswith("{")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({}, "no fields"),
        ({"uid": "mallory"}, "uid"),
        ({"password": "new"}, "password"),
        ({"status": "sleeping"}, "status"),
        ({"allow_nets": ["not-a-net"]}, "allow_nets"),
        ({"passdb_fields": {"k": "a\nb"}}, "passdb.k"),
        ({"uid_number": -1}, "uid_number"),
    ],
)
async def test_patch_refuses_bad_changes_and_keeps_the_account(
    server: HttpServer, directory: MemoryDirectory, data: dict[str, Any], words: str
) -> None:
    before = await directory.get("alice")
    r = await call(server, "PATCH", "/api/v1/accounts/alice", data)
    assert r.status == 400, r.body
    assert words in r.json()["error"]
    assert await directory.get("alice") == before


async def test_set_password_and_generate(server: HttpServer, engine: Engine) -> None:
    r = await call(server, "PUT", "/api/v1/accounts/alice/password", {"password": "n3w"})
    assert r.status == 200 and r.json() == {"uid": "alice", "changed": True}
    assert isinstance(await login(engine, "alice", "n3w"), Accepted)
    assert isinstance(await login(engine, "alice", "secret"), Denied)
    r = await call(server, "PUT", "/api/v1/accounts/alice/password", {"generate": True})
    generated = r.json()["password"]
    assert isinstance(await login(engine, "alice", generated), Accepted)
    assert isinstance(await login(engine, "alice", "n3w"), Denied)
    for bad in ({}, {"password": ""}, {"password": 5}, {"generate": "yes"}):
        assert (await call(server, "PUT", "/api/v1/accounts/alice/password", bad)).status == 400
    r = await call(server, "PUT", "/api/v1/accounts/nobody/password", {"password": "x"})
    assert r.status == 404


async def test_delete_then_logins_and_lookups_fail(
    server: HttpServer, engine: Engine, directory: MemoryDirectory
) -> None:
    assert (await call(server, "DELETE", "/api/v1/accounts/alice")).status == 204
    assert await directory.get("alice") is None
    assert isinstance(await login(engine, "alice", "secret"), Denied)
    assert (await call(server, "DELETE", "/api/v1/accounts/alice")).status == 404


async def test_wrong_methods_and_paths(server: HttpServer) -> None:
    assert (await call(server, "PUT", "/api/v1/accounts")).status == 405
    assert (await call(server, "POST", "/api/v1/accounts/alice")).status == 405
    assert (await call(server, "GET", "/api/v1/accounts/alice/password")).status == 405
    assert (await call(server, "GET", "/api/v1/accounts/alice/nothing")).status == 404


async def test_a_directory_failure_is_503_not_404(
    server: HttpServer, directory: MemoryDirectory
) -> None:
    await directory.close()  # every call now raises DirectoryUnavailable
    r = await call(server, "GET", "/api/v1/accounts/alice")
    assert r.status == 503 and "temporary" in r.json()["error"]
    r = await call(server, "POST", "/api/v1/accounts", {"uid": "x", "password": "p"})
    assert r.status == 503


async def test_the_auth_endpoint_credentials_still_work_and_are_unaffected(
    server: HttpServer,
) -> None:
    r = await auth(server, "alice", "secret")
    assert r.status == 200


def test_generated_passwords_never_start_with_a_dash() -> None:
    from mailwarden.accounts.rules import generate_password

    passwords = [generate_password() for _ in range(2000)]
    assert not any(p.startswith(b"-") for p in passwords)
    assert len(set(passwords)) == 2000 and all(len(p) == 24 for p in passwords)


async def test_app_passwords_are_made_listed_and_revoked_through_the_api(
    server: HttpServer, engine: Engine, directory: MemoryDirectory
) -> None:
    path = "/api/v1/accounts/alice@example.com/app-passwords"
    made = await call(
        server, "POST", path, {"name": "phone", "services": ["imap"], "expires": "2999-01-01"}
    )
    assert made.status == 201, made.body
    body = made.json()
    assert isinstance(body, dict)
    value, app = body["value"], body["app_password"]
    assert (app["name"], app["services"], app["last_used"]) == ("phone", ["imap"], None)
    assert "digest" not in app
    assert isinstance(await login(engine, "alice", value), Accepted)
    assert isinstance(await login(engine, "alice", value, service="smtp"), Denied)

    listed = await call(server, "GET", path)
    assert listed.status == 200
    assert listed.json() == {"uid": "alice", "app_passwords_only": False, "app_passwords": [app]}
    account = (await call(server, "GET", "/api/v1/accounts/alice")).json()
    assert isinstance(account, dict) and account["app_passwords"] == [app]
    # What GET returned can be sent back: app_passwords are skipped, the switch is set.
    patched = await call(
        server, "PATCH", "/api/v1/accounts/alice", {**account, "app_passwords_only": True}
    )
    assert patched.status == 200, patched.body
    assert isinstance(await login(engine, "alice", "secret"), Denied)
    assert isinstance(await login(engine, "alice", "secret", service="web"), Accepted)

    for bad in ({}, {"name": "x", "services": "imap"}, {"name": "x", "expires": True}):
        assert (await call(server, "POST", path, bad)).status == 400
    refused = await call(server, "POST", path, {"name": "web", "services": ["web"]})
    assert refused.status == 400 and "web page" in refused.json()["error"]
    assert (
        await call(server, "POST", "/api/v1/accounts/nobody/app-passwords", {"name": "x"})
    ).status == 404

    gone = await call(server, "DELETE", f"{path}/phone")
    assert gone.status == 204
    assert isinstance(await login(engine, "alice", value), Denied)
    assert (await call(server, "DELETE", f"{path}/phone")).status == 404
    assert (await call(server, "PUT", path)).status == 405
