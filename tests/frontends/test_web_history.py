"""The login history on the web page, on the real uvicorn listener: the user's own
recent logins and "This wasn't me", and an administrator's view of any account's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from mailwarden.auth.engine import Engine
from mailwarden.config import HistoryConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.history.memory import MemoryHistory
from mailwarden.history.recorder import HistoryRecorder
from mailwarden.model import Accepted, Denied
from mailwarden.state.base import AuditQuery
from tests.frontends.test_web import Client, Served, token_of, web_site
from tests.helpers import attempt

INTRUDER = "203.0.113.99"


@pytest_asyncio.fixture
async def served(engine: Engine, directory: MemoryDirectory) -> AsyncIterator[Served]:
    engine.history = HistoryRecorder(
        MemoryHistory(), HistoryConfig(enabled=True), resolve=engine.history_uid
    )
    async with web_site(engine, directory) as site:
        yield site


async def intruder_logs_in(engine: Engine) -> None:
    await engine.authenticate(attempt("alice", "secret", remote_ip=INTRUDER, service="pop3"))
    assert engine.history is not None
    await engine.history.flush()


async def test_the_user_sees_their_recent_logins_with_the_intruders_address(
    served: Served, engine: Engine
) -> None:
    await intruder_logs_in(engine)
    c = Client(served)
    await c.user_login("alice", "secret")
    assert engine.history is not None
    await engine.history.flush()
    me = await c.go("GET", "/ui/me")
    assert b'href="/ui/me/history"' in me.body
    page = await c.go("GET", "/ui/me/history")
    assert page.status == 200
    assert INTRUDER.encode() in page.body and b"pop3" in page.body
    assert b'id="not-me"' in page.body
    # Another account's logins are not on it.
    assert b"carol" not in page.body


async def test_this_wasnt_me_sets_a_new_password_and_ends_every_other_session(
    served: Served, engine: Engine
) -> None:
    await intruder_logs_in(engine)
    mine, theirs = Client(served), Client(served)
    await mine.user_login("alice", "secret")
    await theirs.user_login("alice", "secret")  # the intruder's browser
    assert (await theirs.go("GET", "/ui/me")).status == 200
    token = token_of((await mine.go("GET", "/ui/me/history")).body)
    form = {"csrf": token, "current": "secret", "new": "a brand new pass", "repeat": "x"}
    refused = await mine.go("POST", "/ui/me/not-me", form)
    assert refused.status == 400 and b"differ" in refused.body
    form["repeat"] = form["new"]
    form["current"] = "wrong"
    refused = await mine.go("POST", "/ui/me/not-me", form)
    assert refused.status == 400 and b"current password is not right" in refused.body
    form["current"] = "secret"
    r = await mine.go("POST", "/ui/me/not-me", form)
    assert r.status == 303 and r.headers["location"] == "/ui/me/history?done=secured"
    # This browser carries on; the other session is over; the old password opens nothing.
    assert (await mine.go("GET", "/ui/me/history")).status == 200
    assert (await theirs.go("GET", "/ui/me")).status == 303
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Denied)
    assert isinstance(await engine.authenticate(attempt("alice", "a brand new pass")), Accepted)
    assert served.staff is not None
    entries = await served.staff.audit.entries(AuditQuery(target="alice"))
    assert [e.actor for e in entries if e.action == "account.secured"] == ["user:alice"]


async def test_this_wasnt_me_needs_the_forms_token(served: Served, engine: Engine) -> None:
    c = Client(served)
    await c.user_login("alice", "secret")
    form = {"current": "secret", "new": "a brand new pass", "repeat": "a brand new pass"}
    assert (await c.go("POST", "/ui/me/not-me", form)).status == 403
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)


async def test_an_administrator_sees_any_accounts_logins(served: Served, engine: Engine) -> None:
    await intruder_logs_in(engine)
    c = Client(served)
    await c.admin_login()
    account = await c.go("GET", "/ui/admin/account?uid=alice")
    assert b"/ui/admin/history?uid=alice" in account.body
    page = await c.go("GET", "/ui/admin/history?uid=alice")
    assert page.status == 200
    assert INTRUDER.encode() in page.body
    assert b'id="not-me"' not in page.body  # the button is the owner's
    assert (await c.go("GET", "/ui/admin/history?uid=nobody")).status == 404


async def test_a_site_without_history_says_so(served: Served, engine: Engine) -> None:
    engine.history = None
    c = Client(served)
    await c.user_login("alice", "secret")
    page = await c.go("GET", "/ui/me/history")
    assert page.status == 200 and b'id="no-history"' in page.body
