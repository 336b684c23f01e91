"""AccountAdmin.secure_account, what "This wasn't me" on the user's page does
(docs/history.md): a new password, app passwords revoked, one audit entry."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from mailwarden.accounts.audit import AuditLog
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.model import Accepted, Account, Denied, DenyReason
from mailwarden.state.base import AuditQuery
from mailwarden.state.memory import MemoryStateStore
from tests.conftest import EngineFactory
from tests.helpers import FAST, attempt, hashed

WRONG = Denied(reason=DenyReason.CREDENTIALS)


@pytest_asyncio.fixture
async def accounts() -> AsyncIterator[MemoryDirectory]:
    d = MemoryDirectory()
    await d.create(Account(uid="alice", mail="alice@example.com", password=hashed("secret")))
    yield d
    await d.close()


@pytest.fixture
def engine(make_engine: EngineFactory, accounts: MemoryDirectory) -> Engine:
    return make_engine(FAST, accounts)


async def test_secure_account_sets_the_password_revokes_app_passwords_and_is_audited(
    engine: Engine,
) -> None:
    state = MemoryStateStore()
    admin = AccountAdmin(
        directory=engine.directory,
        hasher=engine.hasher,
        engine=engine,
        default_scheme="SHA512-CRYPT",
        audit=AuditLog(state),
    )
    phone = await admin.add_app_password("alice", name="phone")
    assert isinstance(await engine.authenticate(attempt("alice", "secret")), Accepted)
    secured = await admin.secure_account("alice", b"n3w-passw0rd", revoke_app_passwords=True)
    assert secured.app_passwords == ()
    assert await engine.authenticate(attempt("alice", "secret")) == WRONG
    assert await engine.authenticate(attempt("alice", phone.value)) == WRONG
    assert isinstance(await engine.authenticate(attempt("alice", "n3w-passw0rd")), Accepted)
    (entry,) = [e for e in await state.audit(AuditQuery()) if e.action == "account.secured"]
    assert entry.target == "alice" and entry.fields == ("password", "app_passwords")


async def test_secure_account_keeps_app_passwords_unless_asked(engine: Engine) -> None:
    admin = AccountAdmin(
        directory=engine.directory, hasher=engine.hasher, engine=engine, default_scheme="PLAIN"
    )
    phone = await admin.add_app_password("alice@example.com", name="phone")
    secured = await admin.secure_account("alice@example.com", b"n3w-passw0rd")
    assert [a.name for a in secured.app_passwords] == ["phone"]
    assert isinstance(await engine.authenticate(attempt("alice", phone.value)), Accepted)
    assert await engine.authenticate(attempt("alice", "secret")) == WRONG
