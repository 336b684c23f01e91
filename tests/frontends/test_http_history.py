"""``GET /api/v1/accounts/{uid}/history`` on the real uvicorn, over raw sockets: the
logins the engine decided, newest first, for the roles that may read them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.config import HistoryConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.history.memory import MemoryHistory
from mailwarden.history.recorder import HistoryRecorder
from mailwarden.protocols.admin_api import allowed_methods, route
from tests.frontends.test_http_frontend import CONFIG, request
from tests.helpers import attempt
from tests.staffing import bearer, staff_with_tokens

PATH = "/api/v1/accounts/alice@example.com/history"


@pytest_asyncio.fixture
async def server(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[HttpServer]:
    engine.history = HistoryRecorder(
        MemoryHistory(), HistoryConfig(enabled=True), resolve=engine.history_uid
    )
    admin = AccountAdmin(
        directory=directory, hasher=engine.hasher, engine=engine, default_scheme="SHA256-CRYPT"
    )
    staff = await staff_with_tokens(engine.hasher, bootstrap_token=CONFIG.admin_token)
    running = await start_http(engine, CONFIG, resolve=Path, admin=admin, staff=staff)
    yield running
    await running.close()


async def two_logins(engine: Engine) -> None:
    await engine.authenticate(attempt("alice", "guess", remote_ip="192.0.2.9", service="pop3"))
    await engine.authenticate(attempt("a.liddell@example.com", "guess2", remote_ip="192.0.2.10"))
    assert engine.history is not None
    await engine.history.flush()


async def test_an_administrator_reads_an_accounts_logins_newest_first(
    server: HttpServer, engine: Engine
) -> None:
    await two_logins(engine)
    r = await request(server, "GET", PATH, headers=bearer("admin"))
    assert r.status == 200, r.body
    body = r.json()
    assert body["uid"] == "alice"
    assert [(e["remote_ip"], e["service"], e["result"]) for e in body["logins"]] == [
        ("192.0.2.10", "imap", "wrong-password"),
        ("192.0.2.9", "pop3", "wrong-password"),
    ]
    r = await request(server, "GET", PATH + "?limit=1", headers=bearer("helpdesk"))
    assert r.status == 200 and len(r.json()["logins"]) == 1


async def test_the_read_scope_may_not_read_a_login_history(
    server: HttpServer, engine: Engine
) -> None:
    await two_logins(engine)
    assert (await request(server, "GET", PATH, headers=bearer("read"))).status == 403
    assert (await request(server, "GET", PATH)).status == 401


async def test_bad_limits_unknown_accounts_and_other_methods_are_refused(
    server: HttpServer,
) -> None:
    admin = bearer("admin")
    assert (await request(server, "GET", PATH + "?limit=0", headers=admin)).status == 400
    assert (await request(server, "GET", PATH + "?limit=x", headers=admin)).status == 400
    nobody = "/api/v1/accounts/nobody/history"
    assert (await request(server, "GET", nobody, headers=admin)).status == 404
    assert (await request(server, "DELETE", PATH, headers=admin)).status == 405


async def test_without_a_history_the_route_says_so(server: HttpServer, engine: Engine) -> None:
    engine.history = None
    r = await request(server, "GET", PATH, headers=bearer("admin"))
    assert r.status == 404 and "history" in r.json()["error"]


def test_the_route_is_parsed_with_its_one_method() -> None:
    found = route("/api/v1/accounts/bob/history")
    assert found is not None and found.history and found.uid == "bob"
    assert allowed_methods(found) == ("GET",)
