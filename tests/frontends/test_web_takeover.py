"""A stolen web session cannot take the account; a master login never reaches self-service.

The real uvicorn listener and the real engine (with a master user separator), driven
by the raw client of test_web.py.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mailwarden.directories.memory import MemoryDirectory
from mailwarden.model import Account, Profile
from tests.conftest import EngineFactory
from tests.frontends.test_web import (
    Client,
    Served,
    ed25519_line,
    pgp_key,  # noqa: F401 - the module-scoped fixture, used by name below
    token_of,
    web_site,
)
from tests.helpers import hashed, make_config


@pytest_asyncio.fixture
async def site(make_engine: EngineFactory, directory: MemoryDirectory) -> AsyncIterator[Served]:
    await directory.create(Account(uid="boss", password=hashed("masterpw"), master=True))
    engine = make_engine(
        make_config(passwords={"scheme": "SHA512-CRYPT"}, auth={"master_user_separator": "*"})
    )
    async with web_site(engine, directory, scheme="SHA512-CRYPT") as served:
        yield served


async def signed_in(site: Served) -> tuple[Client, str]:
    c = Client(site)
    assert (await c.user_login("alice", "secret")).status == 303
    return c, token_of((await c.go("GET", "/ui/me")).body)


async def alice(directory: MemoryDirectory) -> Account:
    account = await directory.get("alice")
    assert account is not None
    return account


@pytest.mark.parametrize("current", [None, "", "wrong", "masterpw"])
async def test_ssh_keys_need_the_current_password(
    site: Served, directory: MemoryDirectory, current: str | None
) -> None:
    c, token = await signed_in(site)
    form = {"csrf": token, "keys": ed25519_line(3, "mallory@evil")}
    if current is not None:
        form["current"] = current
    r = await c.go("POST", "/ui/me/ssh", form)
    assert r.status == 400 and b"current password is not right" in r.body
    assert (await alice(directory)).ssh_keys == ()
    r = await c.go("POST", "/ui/me/ssh", {**form, "current": "secret"})
    assert r.status == 303
    assert len((await alice(directory)).ssh_keys) == 1


async def test_the_openpgp_key_needs_the_current_password(
    site: Served,
    directory: MemoryDirectory,
    pgp_key: tuple[str, str],  # noqa: F811
) -> None:
    armored, fpr = pgp_key
    c, token = await signed_in(site)
    for current in ("", "wrong"):
        r = await c.go("POST", "/ui/me/pgp", {"csrf": token, "key": armored, "current": current})
        assert r.status == 400 and b"current password is not right" in r.body
    assert (await alice(directory)).pgp_fingerprint is None
    r = await c.go("POST", "/ui/me/pgp", {"csrf": token, "key": armored, "current": "secret"})
    assert r.status == 303
    assert (await alice(directory)).pgp_fingerprint == fpr


async def test_a_forward_address_needs_the_current_password_other_profile_fields_do_not(
    site: Served, directory: MemoryDirectory
) -> None:
    c, token = await signed_in(site)
    forward = {"csrf": token, "profile.emailforward": "mallory@evil.example"}
    r = await c.go("POST", "/ui/me/profile", forward)
    assert r.status == 400 and b"current password is not right" in r.body
    r = await c.go("POST", "/ui/me/profile", {**forward, "current": "wrong"})
    assert r.status == 400
    assert (await alice(directory)).profile.email_forward is None
    r = await c.go("POST", "/ui/me/profile", {"csrf": token, "profile.c": "de"})
    assert r.status == 303
    assert (await alice(directory)).profile == Profile(c="DE")
    r = await c.go("POST", "/ui/me/profile", {**forward, "profile.c": "DE", "current": "secret"})
    assert r.status == 303
    assert (await alice(directory)).profile.email_forward == "mallory@evil.example"
    # Removing the forward is a change of it too.
    r = await c.go("POST", "/ui/me/profile", {"csrf": token, "profile.c": "DE"})
    assert r.status == 400
    assert (await alice(directory)).profile.email_forward == "mallory@evil.example"


async def test_a_wrong_current_password_is_a_failed_login_the_guard_sees(
    site: Served, caplog: pytest.LogCaptureFixture
) -> None:
    c, token = await signed_in(site)
    caplog.set_level(logging.INFO, logger="mailwarden.auth")
    caplog.clear()
    await c.go("POST", "/ui/me/ssh", {"csrf": token, "keys": "", "current": "guess"})
    decisions = [getattr(r, "decision", None) for r in caplog.records]
    assert [(d["frontend"], d["user"], d["result"]) for d in decisions if d] == [
        ("web", "alice", "denied")
    ]


async def test_a_master_login_never_reaches_the_targets_self_service_page(
    site: Served, directory: MemoryDirectory
) -> None:
    c = Client(site)
    r = await c.user_login("alice*boss", "masterpw")
    assert r.status == 400 and b"invalid login" in r.body
    assert "mw_session" not in c.cookies
    assert (await c.go("GET", "/ui/me")).status == 303  # back to the sign-in page
    # Its answer is the one for a wrong password: nothing tells a master it was right.
    wrong = await Client(site).user_login("alice*boss", "wrong")
    assert wrong.status == 400 and b"invalid login" in wrong.body
    # The master's own page is still theirs.
    own = Client(site)
    assert (await own.user_login("boss", "masterpw")).status == 303
