"""One flush rule (Engine.forget): every way to flush a user behaves the same.

``doveadm auth cache flush USER`` (the Dovecot master socket's CACHE-FLUSH), ``DELETE
/api/v1/cache/flush`` and the control socket's ``cache.flush`` (``mailwarden cache
flush``) all drop the user's cached logins and lift the account's protection; a
flush of everyone lifts no protection (docs/guard.md, "Administration").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mailwarden.auth.engine import Engine
from mailwarden.config import HttpConfig
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.frontends.control import start_control
from mailwarden.frontends.dovecot import start_dovecot
from mailwarden.frontends.dovecot_sockets import Role
from mailwarden.frontends.http import start_http
from mailwarden.model import Account, AccountStatus, Denied, DenyReason, NotFound, UserRecord
from mailwarden.protocols import control as control_proto
from tests.conftest import EngineFactory
from tests.frontends.test_dovecot_frontend import Peer
from tests.frontends.test_http_frontend import request as http_request
from tests.helpers import attempt, hashed, make_config
from tests.staffing import bearer, staff_with_tokens

CONFIG = make_config(
    passwords={"scheme": "SHA512-CRYPT", "rehash": "never"},
    guard={"account_threshold": 3, "account_delay": 0.01},
    dovecot={
        "client_socket": "",
        "login_socket": "",
        "master_socket": "auth-master",
        "userdb_socket": "",
        "failure_delay": 0.0,
    },
)
ADMIN = HttpConfig(enabled=True, listen=("127.0.0.1:0",), admin_token="admintoken")

Flush = Callable[[Engine, Path, list[str] | None], Awaitable[None]]


async def by_cache_flush(engine: Engine, root: Path, users: list[str] | None) -> None:
    server = await start_dovecot(engine, CONFIG.dovecot, resolve=lambda p: root / p)
    try:
        peer = await Peer.master(server.address(Role.MASTER))
        peer.send("\t".join(["CACHE-FLUSH", "1", *(users or [])]))
        assert (await peer.line()).startswith("OK\t1\t")
        await peer.close()
    finally:
        await server.close()


async def by_http(engine: Engine, root: Path, users: list[str] | None) -> None:
    assert users is not None and len(users) == 1  # the endpoint names one user
    staff = await staff_with_tokens(engine.hasher)
    server = await start_http(engine, ADMIN, resolve=Path, staff=staff)
    try:
        body = json.dumps({"user": users[0]}).encode()
        headers = {**bearer("helpdesk"), "Content-Type": "application/json"}
        response = await http_request(
            server, "DELETE", "/api/v1/cache/flush", body, headers=headers
        )
        assert response.status == 200, response.body
    finally:
        await server.close()


async def by_control_socket(engine: Engine, root: Path, users: list[str] | None) -> None:
    async def status() -> dict[str, Any]:
        return {}

    path = root / "control"
    server = await start_control(engine, path, mode=0o600, status=status)
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(control_proto.request("cache.flush", users=users))
        control_proto.parse_reply(await reader.readline())
        writer.close()
    finally:
        await server.close()


async def protected(make_engine: EngineFactory, directory: MemoryDirectory) -> Engine:
    """An engine where alice's account is protected (three wrong guesses) and bob has
    a cached login."""
    await directory.create(Account(uid="bob", password=hashed("bobpw")))
    engine = make_engine(CONFIG)
    for i in range(3):
        await engine.authenticate(attempt("alice", f"guess{i}"))
    await engine.authenticate(attempt("bob", "bobpw"))
    assert {b.target for b in await engine.guard.bans()} >= {"account:alice"}
    assert len(engine.cache) == 1
    return engine


@pytest.mark.parametrize("flush", [by_cache_flush, by_http, by_control_socket])
async def test_flushing_a_user_lifts_its_protection_through_every_front_end(
    make_engine: EngineFactory, directory: MemoryDirectory, tmp_path: Path, flush: Flush
) -> None:
    engine = await protected(make_engine, directory)
    await flush(engine, tmp_path, ["alice@example.com"])  # an address finds the uid
    assert "account:alice" not in {b.target for b in await engine.guard.bans()}
    assert len(engine.cache) == 1  # bob's login stays
    await flush(engine, tmp_path, ["bob"])
    assert len(engine.cache) == 0


@pytest.mark.parametrize("flush", [by_cache_flush, by_control_socket])
async def test_flushing_everyone_lifts_no_protection(
    make_engine: EngineFactory, directory: MemoryDirectory, tmp_path: Path, flush: Flush
) -> None:
    engine = await protected(make_engine, directory)
    await flush(engine, tmp_path, None)
    assert len(engine.cache) == 0
    assert "account:alice" in {b.target for b in await engine.guard.bans()}


# --------------------------------------------------------------------------- account state


async def test_pam_mapi_or_lists_are_decided_by_the_engine_for_login_and_account(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.create(
        Account(uid="carol", password=hashed("pw"), services={"imap": False, "pop3": False})
    )
    engine = make_engine(CONFIG)
    none_on = attempt("carol", "pw", service="smtp", switches=("imap", "pop3"))
    one_on = attempt("carol", "pw", service="smtp", switches=("imap", "smtp"))
    denied = await engine.authenticate(none_on)
    assert isinstance(denied, Denied) and denied.reason is DenyReason.SERVICE_DISABLED
    assert not isinstance(await engine.authenticate(one_on), Denied)
    state = await engine.account_state("carol", "smtp", switches=("imap", "pop3"))
    assert isinstance(state, Denied) and state.reason is DenyReason.SERVICE_DISABLED
    assert isinstance(await engine.account_state("carol", "smtp", switches=("smtp",)), UserRecord)
    assert isinstance(await engine.account_state("carol", "imap"), Denied)


async def test_the_account_state_of_a_disabled_account_says_so_with_its_message(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    await directory.create(Account(uid="dan", status=AccountStatus.DISABLED))
    engine = make_engine(CONFIG)
    state = await engine.account_state("dan", "imap")
    assert state == Denied(
        reason=DenyReason.DISABLED, message=CONFIG.auth.disabled_message, user="dan"
    )


async def test_the_account_state_of_a_session_uid_holds_when_uids_do_not_log_in(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """A web session keeps the uid the engine returned; a site whose logins are only
    addresses must still find that account (and not by its uid as a login name)."""
    await directory.create(Account(uid="erin", mail="erin@example.com"))
    engine = make_engine(make_config(directory={"login_attributes": ["mail"]}))
    assert isinstance(await engine.account_state("erin", "web"), NotFound)
    state = await engine.account_state("erin", "web", uid=True)
    assert isinstance(state, UserRecord) and state.account.uid == "erin"
    assert isinstance(await engine.account_state("erin@example.com", "web", uid=True), NotFound)


async def test_a_directory_change_drops_that_accounts_cached_logins_and_lifts_nothing(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    """The change feed of a shared directory (Engine.directory_changed) is not an
    administrator's flush: only the named accounts' logins go, protection stays."""
    engine = await protected(make_engine, directory)
    assert engine.directory_changed(["carol"]) == 0
    assert len(engine.cache) == 1
    assert engine.directory_changed(["alice", "bob"]) == 1
    assert len(engine.cache) == 0
    assert {b.target for b in await engine.guard.bans()} >= {"account:alice"}
    await engine.authenticate(attempt("bob", "bobpw"))
    assert len(engine.cache) == 1
    assert engine.directory_changed(None) >= 1  # everything: wrong guesses remembered too
    assert len(engine.cache) == 0
