"""Every account change through AccountAdmin is recorded once: who, what, when, where,
field names only (accounts/audit.py, accounts/edit.py)."""

from __future__ import annotations

import pytest

from mailwarden.accounts.audit import Actor, AuditLog, acting, changed_fields, current
from mailwarden.accounts.edit import AccountAdmin
from mailwarden.auth.engine import Engine
from mailwarden.directories.memory import MemoryDirectory
from mailwarden.model import Account, AccountStatus
from mailwarden.state.base import AuditQuery
from mailwarden.state.memory import MemoryStateStore

ANN = Actor(name="admin:ann", source="198.51.100.7")


@pytest.fixture
def store() -> MemoryStateStore:
    return MemoryStateStore()


@pytest.fixture
def admin(engine: Engine, directory: MemoryDirectory, store: MemoryStateStore) -> AccountAdmin:
    return AccountAdmin(
        directory=directory,
        hasher=engine.hasher,
        engine=engine,
        default_scheme="SHA256-CRYPT",
        audit=AuditLog(store, clock=lambda: 42.0),
    )


async def test_create_change_password_and_delete_are_each_recorded_with_field_names(
    admin: AccountAdmin, store: MemoryStateStore
) -> None:
    with acting(ANN):
        await admin.create(Account(uid="bob"), password=b"Sekr1t-pass", changes={"mail": "b@x"})
        await admin.update("bob", ["quota_bytes=5000", "service.pop3=off"])
        await admin.set_status("bob", AccountStatus.DISABLED)
        generated = await admin.set_password("bob", None)
        await admin.set_password("bob", b"An0ther-pass")
        await admin.delete("bob")
    entries = list(reversed(await store.audit(AuditQuery(target="bob"))))
    assert [(e.action, e.fields) for e in entries] == [
        ("account.create", ("mail", "password")),
        ("account.update", ("services", "quota_bytes")),
        ("account.update", ("status",)),
        ("account.password", ("password",)),
        ("account.password", ("password",)),
        ("account.delete", ()),
    ]
    assert {(e.actor, e.source, e.time) for e in entries} == {("admin:ann", "198.51.100.7", 42.0)}
    text = repr(entries)
    assert generated is not None
    for secret in ("Sekr1t-pass", "An0ther-pass", generated.decode(), "{SHA256-CRYPT}", "$5$"):
        assert secret not in text


async def test_a_form_saved_unchanged_records_nothing(
    admin: AccountAdmin, store: MemoryStateStore
) -> None:
    await admin.patch("alice", {"mail": "alice@example.com"})
    assert await store.audit(AuditQuery(target="alice")) == []


async def test_outside_any_request_the_change_is_the_systems(
    admin: AccountAdmin, store: MemoryStateStore
) -> None:
    assert current().name == "system"
    await admin.update("alice", ["quota_bytes=1"])
    (entry,) = await store.audit(AuditQuery())
    assert entry.actor == "system" and entry.source == ""


async def test_a_state_store_outage_does_not_undo_the_change(
    admin: AccountAdmin, store: MemoryStateStore, directory: MemoryDirectory
) -> None:
    await store.close()
    await admin.update("alice", ["quota_bytes=7"])
    account = await directory.get("alice")
    assert account is not None and account.quota_bytes == 7


async def test_one_call_records_any_other_credential_change(
    admin: AccountAdmin, store: MemoryStateStore
) -> None:
    """The hook app passwords (another part of issue 19) use."""
    with acting(Actor(name="user:alice", source="203.0.113.9")):
        await admin.record("app-password.add", "alice", ("name", "services"))
    (entry,) = await store.audit(AuditQuery(actor="user:alice"))
    assert entry.action == "app-password.add" and entry.fields == ("name", "services")


def test_changed_fields_names_only_what_differs() -> None:
    before = Account(uid="x", mail="a@b", quota_bytes=1)
    after = Account(uid="x", mail="a@b", quota_bytes=2, home="/h")
    assert changed_fields(before, after) == ("home", "quota_bytes")
