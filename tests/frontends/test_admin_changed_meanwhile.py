"""An edit that keeps losing its compare-and-swap is reported as "changed meanwhile".

LDAP's modify gives up with AccountChanged after repeated interference
(tests/directories/test_concurrent_writes.py makes that happen on a real slapd).
Here a directory that always reports it checks what the admin API answers: 409
with the reason (the web page: a 409 page saying so), nothing written, and the
request can simply be sent again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_asyncio

from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.directories.base import Modified
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.errors import AccountChanged
from mailwarden.frontends.http import HttpServer, start_http
from mailwarden.model import Account
from tests.conftest import EngineFactory
from tests.frontends.test_http_admin import call
from tests.frontends.test_http_frontend import CONFIG
from tests.frontends.test_web import Client, token_of, web_site
from tests.staffing import staff_with_tokens


class BusyDirectory(MemoryDirectory):
    """A memory directory whose edits lose the race ``busy`` more times."""

    busy = 1

    async def modify(self, uid: str, change: Callable[[Account], Account]) -> Modified:
        if self.busy > 0:
            self.busy -= 1
            raise AccountChanged(f"account {uid!r} changed meanwhile; nothing was written, retry")
        return await super().modify(uid, change)


@pytest_asyncio.fixture
async def busy() -> BusyDirectory:
    return BusyDirectory([Account(uid="alice", mail="alice@example.com")])


@pytest_asyncio.fixture
async def server(make_engine: EngineFactory, busy: BusyDirectory) -> AsyncIterator[HttpServer]:
    engine: Engine = make_engine(d=busy)
    admin = AccountAdmin(
        directory=busy, hasher=engine.hasher, engine=engine, default_scheme="SHA256-CRYPT"
    )
    staff = await staff_with_tokens(engine.hasher)
    running = await start_http(engine, CONFIG, resolve=Path, admin=admin, staff=staff)
    yield running
    await running.close()


async def test_a_patch_that_kept_losing_the_race_is_409_and_a_retry_applies(
    server: HttpServer, busy: BusyDirectory
) -> None:
    r = await call(server, "PATCH", "/api/v1/accounts/alice", {"home": "/srv/alice"})
    assert r.status == 409
    assert "changed meanwhile" in r.json()["error"]
    stored = await busy.get("alice")
    assert stored is not None and stored.home is None
    r = await call(server, "PATCH", "/api/v1/accounts/alice", {"home": "/srv/alice"})
    assert r.status == 200 and r.json()["home"] == "/srv/alice"


async def test_the_admin_page_says_changed_meanwhile_and_saves_nothing(
    make_engine: EngineFactory,
) -> None:
    busy = BusyDirectory([Account(uid="alice", mail="alice@example.com")])
    engine: Engine = make_engine(d=busy)
    async with web_site(engine, busy) as site:
        c = Client(site)
        await c.admin_login()
        page = await c.go("GET", "/ui/admin/account?uid=alice")
        form = {
            "csrf": token_of(page.body),
            "uid": "alice",
            "mail": "alice@example.com",
            "home": "/srv/alice",
            "status": "active",
        }
        r = await c.go("POST", "/ui/admin/account", form)
        assert r.status == 409
        assert b"changed meanwhile" in r.body
        stored = await busy.get("alice")
        assert stored is not None and stored.home is None
        r = await c.go("POST", "/ui/admin/account", form)
        assert r.status == 303, r.body
        stored = await busy.get("alice")
        assert stored is not None and stored.home == "/srv/alice"
