"""App passwords: made and revoked through AccountAdmin, decided by the engine.

Every rule of auth/apppasswords.py and accounts/apppasswords.py, against the memory
directory and the SQLite file (the directories themselves are the contract suite's,
tests/directories/test_directory_contract.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from mailwarden.accounts.apppasswords import MAX_APP_PASSWORDS, parse_expiry
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.apppasswords import UseRecorder
from mailwarden.auth.engine import Engine
from mailwarden.config import CacheConfig
from mailwarden.directories.base import Directory
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.directories.sqlite import SQLiteDirectory
from mailwarden.errors import AccountNotFound, DirectoryUnavailable, InvalidAccount
from mailwarden.model import (
    WEB_SERVICE,
    Accepted,
    Account,
    AppPassword,
    AppPasswordUsed,
    Denied,
    DenyReason,
    LastUse,
)
from tests.conftest import EngineFactory
from tests.helpers import FAST, attempt, hashed
from tests.test_engine import RecordingHasher
from tests.test_guard import ATTACKER, OWNER, is_blocked, make

WRONG = Denied(reason=DenyReason.CREDENTIALS)


@pytest_asyncio.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Directory]:
    """alice (password "secret") in each directory that keeps app passwords in process."""
    backend: Directory
    if request.param == "memory":
        backend = MemoryDirectory()
    else:
        backend = await SQLiteDirectory.open(tmp_path / "a.db", create=True, cache_size=100)
    await backend.create(Account(uid="alice", mail="alice@example.com", password=hashed("secret")))
    yield backend
    await backend.close()


def admin_of(engine: Engine) -> AccountAdmin:
    return AccountAdmin(
        directory=engine.directory, hasher=engine.hasher, engine=engine, default_scheme="PLAIN"
    )


@pytest.fixture
def engine(make_engine: EngineFactory, store: Directory) -> Engine:
    return make_engine(FAST, store)


# --------------------------------------------------------------------------- logins


async def test_an_app_password_logs_in_without_a_hash_and_its_use_is_recorded(
    engine: Engine,
) -> None:
    admin = admin_of(engine)
    new = await admin.add_app_password("alice", name="phone", services=["imap", "SMTP"])
    before = engine.hasher.verifications
    outcome = await engine.authenticate(
        attempt("alice@example.com", new.value, service="smtp", remote_ip="192.0.2.5")
    )
    assert isinstance(outcome, Accepted) and outcome.user == "alice"
    assert engine.hasher.verifications == before
    # Typed by a person: upper case, with spaces between groups.
    spaced = new.value.upper()[:8] + " " + new.value.upper()[8:]
    assert isinstance(await engine.authenticate(attempt("alice", spaced)), Accepted)
    await engine.drain()
    stored = await admin.show("alice")
    (app,) = stored.app_passwords
    assert app.last_used is not None
    assert (app.last_used.service, app.last_used.remote_ip) == ("imap", None)
    assert abs(app.last_used.at - time.time()) < 60


async def test_the_main_password_still_works_beside_app_passwords(engine: Engine) -> None:
    await admin_of(engine).add_app_password("alice", name="phone")
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)


async def test_an_app_password_opens_only_its_services_and_never_the_web_page(
    engine: Engine,
) -> None:
    new = await admin_of(engine).add_app_password("alice", name="phone", services=["imap"])
    assert isinstance(await engine.authenticate(attempt("alice", new.value)), Accepted)
    for service in ("pop3", "smtp", WEB_SERVICE):
        assert await engine.authenticate(attempt("alice", new.value, service=service)) == WRONG
    every = await admin_of(engine).add_app_password("alice", name="laptop")
    assert isinstance(
        await engine.authenticate(attempt("alice", every.value, service="pop3")), Accepted
    )
    assert await engine.authenticate(attempt("alice", every.value, service="web")) == WRONG


async def test_an_expired_app_password_is_a_wrong_password(engine: Engine) -> None:
    new = await admin_of(engine).add_app_password("alice", name="phone")
    await engine.directory.modify(
        "alice",
        lambda a: dataclasses.replace(
            a, app_passwords=tuple(dataclasses.replace(p, expires=1) for p in a.app_passwords)
        ),
    )
    assert await engine.authenticate(attempt("alice", new.value)) == WRONG


async def test_a_revoked_app_password_is_refused_at_once_even_with_the_cache_on(
    make_engine: EngineFactory, store: Directory
) -> None:
    engine = make_engine(dataclasses.replace(FAST, cache=CacheConfig(ttl=3600.0)), store)
    admin = admin_of(engine)
    phone = await admin.add_app_password("alice", name="phone")
    laptop = await admin.add_app_password("alice", name="laptop")
    for _ in range(3):
        assert isinstance(await engine.authenticate(attempt("alice", phone.value)), Accepted)
    assert len(engine.cache) == 0  # nothing about an app password is cached
    gone = await admin.revoke_app_password("alice", "PHONE")
    assert gone.id == phone.app_password.id
    assert await engine.authenticate(attempt("alice", phone.value)) == WRONG
    assert isinstance(await engine.authenticate(attempt("alice", laptop.value)), Accepted)
    await admin.revoke_app_password("alice", laptop.app_password.id)
    assert await engine.authenticate(attempt("alice", laptop.value)) == WRONG
    with pytest.raises(AccountNotFound):
        await admin.revoke_app_password("alice", "laptop")


async def test_app_passwords_only_leaves_the_main_password_the_web_page(engine: Engine) -> None:
    admin = admin_of(engine)
    new = await admin.add_app_password("alice", name="phone")
    await admin.set_app_passwords_only("alice", True)
    assert await engine.authenticate(attempt("alice", "secret")) == WRONG
    assert await engine.authenticate(attempt("alice", "secret", service="smtp")) == WRONG
    assert isinstance(
        await engine.authenticate(attempt("alice", "secret", service="web")), Accepted
    )
    assert isinstance(await engine.authenticate(attempt("alice", new.value)), Accepted)
    await admin.set_app_passwords_only("alice", False)
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)


async def test_a_wrong_app_password_costs_and_answers_what_a_wrong_password_does(
    store: Directory,
) -> None:
    hasher = RecordingHasher()
    engine = Engine(directory=store, hasher=hasher, config=FAST)
    try:
        await admin_of(engine).add_app_password("alice", name="phone")
        other = "mwa_" + "b" * 24
        wrong_app = await engine.authenticate(attempt("alice", other))
        unknown = await engine.authenticate(attempt("nobody", other))
        wrong = await engine.authenticate(attempt("alice", "nope"))
    finally:
        hasher.close()
    assert wrong_app == unknown == wrong == WRONG
    # The account's own hash for alice, a dummy of the same scheme for nobody: alike.
    assert hasher.verified == ["SHA512-CRYPT", "SHA512-CRYPT", "SHA512-CRYPT"]


async def test_the_guard_counts_each_wrong_app_password_once(
    make_engine: EngineFactory, directory: MemoryDirectory
) -> None:
    engine = make(make_engine, directory)
    new = await admin_of(engine).add_app_password("alice", name="phone")
    for i in range(4):  # the /32 rule bans at 5 failures
        guess = "mwa_" + "abcdefgh"[i] * 24
        outcome = await engine.authenticate(attempt("alice", guess, remote_ip=ATTACKER))
        assert outcome == WRONG
    assert await engine.guard.bans() == []
    await engine.authenticate(attempt("alice", "mwa_" + "z" * 24, remote_ip=ATTACKER))
    assert is_blocked(await engine.authenticate(attempt("alice", new.value, remote_ip=ATTACKER)))
    assert isinstance(
        await engine.authenticate(attempt("alice", new.value, remote_ip=OWNER)), Accepted
    )


# --------------------------------------------------------------------------- management


async def test_making_app_passwords_checks_names_services_expiry_and_count(
    engine: Engine,
) -> None:
    admin = admin_of(engine)
    first = await admin.add_app_password("alice", name="phone", services=["imap", "imap"])
    assert first.value.startswith("mwa_") and first.value not in repr(first)
    assert first.app_password.services == ("imap",)
    for bad in (
        {"name": ""},
        {"name": "x" * 65},
        {"name": "Phone"},  # taken, case-insensitively
        {"name": "a", "services": ["web"]},
        {"name": "b", "services": ["IMAP 4"]},
        {"name": "c", "expires": int(time.time()) - 1},
    ):
        with pytest.raises(InvalidAccount):
            await admin.add_app_password("alice", **bad)
    with pytest.raises(AccountNotFound):
        await admin.add_app_password("nobody", name="phone")
    stored = await admin.show("alice")
    assert [a.name for a in stored.app_passwords] == ["phone"]
    assert first.value not in repr(stored)


async def test_an_account_holds_at_most_the_maximum_number(engine: Engine) -> None:
    apps = tuple(
        AppPassword(id=f"id{i}", name=f"n{i}", digest="0" * 64, created=i)
        for i in range(MAX_APP_PASSWORDS)
    )
    await engine.directory.modify("alice", lambda a: dataclasses.replace(a, app_passwords=apps))
    with pytest.raises(InvalidAccount):
        await admin_of(engine).add_app_password("alice", name="one more")


def test_an_expiry_date_is_the_end_of_that_day_in_utc() -> None:
    assert parse_expiry("2030-01-31") == parse_expiry("2030-02-01T00:00:00Z")
    assert parse_expiry("2030-02-01T01:00:00+01:00") == parse_expiry("2030-02-01T00:00:00")
    with pytest.raises(InvalidAccount):
        parse_expiry("next week")


# --------------------------------------------------------------------------- last use


class Writes:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[AppPasswordUsed]] = []
        self.fail = fail

    async def __call__(self, uses: Sequence[AppPasswordUsed]) -> None:
        self.batches.append(list(uses))
        if self.fail:
            raise DirectoryUnavailable("down")


def used_app(i: int) -> tuple[Account, AppPassword]:
    return Account(uid="alice"), AppPassword(id=f"a{i}", name=f"n{i}", digest="0" * 64)


async def test_uses_are_coalesced_per_app_password_and_written_in_one_batch() -> None:
    writes = Writes()
    recorder = UseRecorder(writes, interval=0.01)
    account, app = used_app(1)
    for at in range(5):
        recorder.note(account, app, LastUse(at=at, service="imap"))
    recorder.note(*used_app(2), LastUse(at=9, service="smtp"))
    for _ in range(200):
        if writes.batches:
            break
        await asyncio.sleep(0.01)
    assert [[(u.app_password, u.use.at) for u in b] for b in writes.batches] == [
        [("a1", 4), ("a2", 9)]
    ]
    assert recorder.pending == 0


async def test_the_buffer_is_bounded_and_a_failing_write_is_only_counted() -> None:
    writes = Writes(fail=True)
    recorder = UseRecorder(writes, interval=3600, max_pending=3)
    for i in range(10):
        recorder.note(*used_app(i), LastUse(at=i, service="imap"))
    assert (recorder.pending, recorder.dropped) == (3, 7)
    await recorder.flush()
    assert recorder.failures == 1 and recorder.pending == 0
    assert [len(b) for b in writes.batches] == [3]


async def test_a_failing_last_use_write_never_fails_a_login(engine: Engine) -> None:
    new = await admin_of(engine).add_app_password("alice", name="phone")
    writes = Writes(fail=True)
    engine.passwords.app_password_uses = UseRecorder(writes, interval=3600)
    assert isinstance(await engine.authenticate(attempt("alice", new.value)), Accepted)
    await engine.drain()
    assert engine.passwords.app_password_uses.failures == 1
