"""Administrators, the bootstrap token, API tokens and second factors (accounts/staff.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mailwarden.accounts import totp
from mailwarden.accounts.audit import Actor, acting
from mailwarden.accounts.staff import (
    ADMIN_OWNER,
    USER_OWNER,
    Principal,
    SignIn,
    Staff,
    cli_principal,
)
from mailwarden.auth.engine import Engine
from mailwarden.auth.roles import Action, Grant, permits
from mailwarden.config import GuardConfig, GuardRule
from mailwarden.errors import AccountNotFound, InvalidAccount, NotPermitted
from mailwarden.guard.policy import Guard, unknown_subject
from mailwarden.state.base import AuditQuery
from mailwarden.state.memory import MemoryStateStore

ROOT = cli_principal(Actor(name="cli:root", source="cli"))
PASSWORD = b"correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def staff(engine: Engine, clock: Clock) -> Staff:
    return Staff(MemoryStateStore(), engine.hasher, bootstrap_token="boot-token", clock=clock)


def code(staff: Staff, secret: str, clock: Clock) -> str:
    return totp.code_at(secret, int(clock.now // totp.STEP))


async def enrolled(staff: Staff, owner: str, clock: Clock) -> tuple[str, list[str]]:
    """Enrol ``owner`` and confirm with the current code: (secret, recovery codes)."""
    enrolment = await staff.enrol(owner, account=owner)
    codes = await staff.confirm(owner, code(staff, enrolment.secret, clock))
    assert codes is not None
    clock.now += totp.STEP  # the next code is a new step
    return enrolment.secret, codes


def test_helpdesk_may_search_reset_unblock_and_read_history_but_not_delete_or_manage() -> None:
    allowed = {a for a in Action if permits(Grant.HELPDESK, a)}
    assert allowed == {Action.READ, Action.RESET_PASSWORD, Action.UNBLOCK, Action.READ_HISTORY}
    assert {a for a in Action if permits(Grant.READ, a)} == {Action.READ}
    assert all(permits(Grant.ADMIN, a) for a in Action)
    assert not permits("root", Action.READ)


async def test_the_bootstrap_token_creates_the_first_administrator_and_nothing_else(
    staff: Staff,
) -> None:
    boot = await staff.bootstrap("boot-token", source="192.0.2.1")
    assert boot is not None and boot.grant is None
    assert await staff.bootstrap("wrong", source="192.0.2.1") is None
    with pytest.raises(NotPermitted):
        boot.require(Action.READ)
    with pytest.raises(NotPermitted):
        await staff.add_admin(boot, "ann", PASSWORD, "helpdesk")
    await staff.add_admin(boot, "ann", PASSWORD, "admin")
    # Closed for good: neither a second administrator nor a new sign-in.
    with pytest.raises(NotPermitted):
        await staff.add_admin(boot, "bob", PASSWORD, "admin")
    assert await staff.bootstrap("boot-token", source="192.0.2.1") is None
    assert not await staff.bootstrap_open()
    actions = [e.action for e in await staff.audit.entries(AuditQuery())]
    assert actions == ["bootstrap.refused", "admin.add", "bootstrap.use"]


async def test_without_a_bootstrap_token_nothing_opens(engine: Engine) -> None:
    staff = Staff(MemoryStateStore(), engine.hasher)
    assert await staff.bootstrap("", source="-") is None
    assert not await staff.bootstrap_open()


async def test_helpdesk_cannot_create_administrators_or_grant_admin(staff: Staff) -> None:
    await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
    await staff.add_admin(ROOT, "hal", PASSWORD, "helpdesk")
    hal = Principal(kind="admin", name="hal", grant=Grant.HELPDESK)
    with pytest.raises(NotPermitted):
        await staff.add_admin(hal, "eve", PASSWORD, "admin")
    with pytest.raises(NotPermitted):
        await staff.set_role(hal, "hal", "admin")
    with pytest.raises(NotPermitted):
        await staff.create_token(hal, "mine", "admin")
    with pytest.raises(NotPermitted):
        await staff.reset_factor(hal, ADMIN_OWNER + "ann")
    admin = await staff.store.admin("hal")
    assert admin is not None and admin.role == "helpdesk"


async def test_the_last_admin_cannot_be_removed_or_demoted(staff: Staff) -> None:
    await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
    with pytest.raises(NotPermitted):
        await staff.remove_admin(ROOT, "ann")
    with pytest.raises(NotPermitted):
        await staff.set_role(ROOT, "ann", "helpdesk")
    await staff.add_admin(ROOT, "bea", PASSWORD, "admin")
    await staff.set_role(ROOT, "ann", "helpdesk")
    await staff.remove_admin(ROOT, "ann")
    with pytest.raises(AccountNotFound):
        await staff.remove_admin(ROOT, "ann")


async def test_names_roles_and_short_passwords_are_checked(staff: Staff) -> None:
    for name, password, role in (
        ("has space", PASSWORD, "admin"),
        ("ann", b"short", "admin"),
        ("ann", PASSWORD, "root"),
        ("ann", PASSWORD, "read"),  # a token scope, not a role
    ):
        with pytest.raises(InvalidAccount):
            await staff.add_admin(ROOT, name, password, role)


async def test_sign_in_needs_the_password_then_enrolment_then_a_fresh_code(
    staff: Staff, clock: Clock
) -> None:
    await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
    assert await staff.sign_in("ann", b"wrong password", "") is SignIn.INVALID
    assert await staff.sign_in("nobody", PASSWORD, "") is SignIn.INVALID
    assert await staff.sign_in("ann", PASSWORD, "") is SignIn.ENROL
    secret, _ = await enrolled(staff, ADMIN_OWNER + "ann", clock)
    assert await staff.sign_in("ann", PASSWORD, "") is SignIn.NEED_CODE
    now = code(staff, secret, clock)
    assert await staff.sign_in("ann", PASSWORD, now) is SignIn.OK
    assert await staff.sign_in("ann", PASSWORD, now) is SignIn.NEED_CODE  # replayed
    # A wrong password never reaches the code check (or its counter).
    clock.now += totp.STEP
    assert await staff.sign_in("ann", b"wrong password", code(staff, secret, clock)) is (
        SignIn.INVALID
    )
    assert await staff.sign_in("ann", PASSWORD, code(staff, secret, clock)) is SignIn.OK


async def test_wrong_codes_are_rate_limited_across_requests(staff: Staff, clock: Clock) -> None:
    owner = USER_OWNER + "bob"
    secret, _ = await enrolled(staff, owner, clock)
    valid = {totp.code_at(secret, int(clock.now // totp.STEP) + d) for d in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)
    for _ in range(totp.MAX_FAILURES):
        assert await staff.check_code(owner, wrong) is totp.Verdict.WRONG
    assert await staff.check_code(owner, code(staff, secret, clock)) is totp.Verdict.LIMITED
    clock.now += totp.FAILURE_WINDOW + 1
    assert await staff.check_code(owner, code(staff, secret, clock)) is totp.Verdict.ACCEPTED


async def test_recovery_codes_open_one_sign_in_each(staff: Staff, clock: Clock) -> None:
    await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
    _, codes = await enrolled(staff, ADMIN_OWNER + "ann", clock)
    assert len(codes) == 10
    assert await staff.sign_in("ann", PASSWORD, codes[0]) is SignIn.OK
    assert await staff.sign_in("ann", PASSWORD, codes[0]) is SignIn.NEED_CODE
    assert await staff.sign_in("ann", PASSWORD, codes[1]) is SignIn.OK


async def test_an_administrator_resets_a_factor_and_the_owner_enrols_again(
    staff: Staff, clock: Clock
) -> None:
    owner = USER_OWNER + "bob"
    await enrolled(staff, owner, clock)
    with pytest.raises(InvalidAccount):
        await staff.enrol(owner, account="bob")  # a confirmed factor is not replaced
    assert await staff.reset_factor(ROOT, owner)
    assert not await staff.factor_confirmed(owner)
    assert not await staff.reset_factor(ROOT, owner)
    await enrolled(staff, owner, clock)
    entries = await staff.audit.entries(AuditQuery(target="bob"))
    assert [e.action for e in entries] == ["totp.enrol", "totp.reset", "totp.enrol"]


async def test_api_tokens_have_a_scope_an_expiry_and_can_be_revoked(
    staff: Staff, clock: Clock
) -> None:
    read = await staff.create_token(ROOT, "monitor", "read")
    short = await staff.create_token(ROOT, "deploy", "helpdesk", expires=clock.now + 60)
    assert read.value.startswith("mwt_") and read.value not in repr(read)
    found = await staff.bearer("Bearer " + read.value, source="-")
    assert found == Principal(kind="token", name="monitor", grant=Grant.READ)
    assert found is not None
    assert found.may(Action.READ) and not found.may(Action.RESET_PASSWORD)
    helper = await staff.bearer("bearer " + short.value, source="-")
    assert helper is not None and helper.may(Action.UNBLOCK)
    clock.now += 61
    assert await staff.bearer("Bearer " + short.value, source="-") is None
    await staff.revoke_token(ROOT, "monitor")
    assert await staff.bearer("Bearer " + read.value, source="-") is None
    assert await staff.bearer("Basic " + read.value, source="-") is None
    with pytest.raises(AccountNotFound):
        await staff.revoke_token(ROOT, "monitor")
    with pytest.raises(InvalidAccount):
        await staff.create_token(ROOT, "old", "read", expires=clock.now - 1)


async def test_staff_changes_are_audited_without_a_secret(staff: Staff, clock: Clock) -> None:
    with acting(Actor(name="cli:root", source="cli")):
        await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
        issued = await staff.create_token(ROOT, "ci", "admin")
        secret, codes = await enrolled(staff, ADMIN_OWNER + "ann", clock)
        await staff.revoke_token(ROOT, "ci")
    entries = await staff.audit.entries(AuditQuery())
    assert {e.actor for e in entries} == {"cli:root"}
    assert {e.source for e in entries} == {"cli"}
    text = repr(entries)
    for value in (PASSWORD.decode(), issued.value, issued.token.digest, secret, *codes):
        assert value not in text


def counting_guard(clock: Clock, **kw: Any) -> Guard:
    """A guard with no allow-list: three failures a minute from one address ban it."""
    config = GuardConfig(
        allow_networks=(),
        rules=(GuardRule(name="ip", period=60.0, threshold=3),),
        account_threshold=0,
    )
    return Guard(dataclasses.replace(config, **kw), clock=clock)


async def test_wrong_administrator_passwords_ban_the_address_like_mail_logins(
    engine: Engine, clock: Clock
) -> None:
    guard = counting_guard(clock)
    staff = Staff(MemoryStateStore(), engine.hasher, guard=guard, clock=clock)
    await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
    attacker, colleague = "192.0.2.1", "198.51.100.1"
    for n in range(3):  # distinct wrong passwords: a repeated one counts once
        assert await staff.sign_in("ann", b"guess %d" % n, "", remote_ip=attacker) is SignIn.INVALID
    assert [b.target for b in await guard.bans()] == [attacker + "/32"]
    # Refused unchecked from the banned address, with the wrong password's answer.
    assert await staff.sign_in("ann", PASSWORD, "", remote_ip=attacker) is SignIn.INVALID
    assert await staff.sign_in("ann", PASSWORD, "", remote_ip=colleague) is SignIn.ENROL
    clock.now += 3600 + 1  # the ban ends (ban_time)
    assert await staff.sign_in("ann", PASSWORD, "", remote_ip=attacker) is SignIn.ENROL


async def test_a_banned_address_cannot_use_the_bootstrap_token(
    engine: Engine, clock: Clock
) -> None:
    guard = counting_guard(clock)
    staff = Staff(
        MemoryStateStore(),
        engine.hasher,
        bootstrap_token="boot-token",
        bootstrap_name="root",
        guard=guard,
        clock=clock,
    )
    for n in range(3):  # wrong tokens count as wrong passwords of that name
        assert await staff.sign_in("root", b"token %d" % n, "", remote_ip="192.0.2.1") is (
            SignIn.INVALID
        )
    assert await staff.sign_in("root", b"boot-token", "", remote_ip="192.0.2.1") is SignIn.INVALID
    assert await staff.sign_in("root", b"boot-token", "", remote_ip="192.0.2.2") is (
        SignIn.BOOTSTRAP
    )


async def test_administrator_names_are_counted_per_name_known_or_not(
    engine: Engine, clock: Clock
) -> None:
    """Failures from many addresses protect the name, an administrator's or a made-up
    one alike (under a digest then), apart from any mail account of that name."""
    guard = counting_guard(clock, account_threshold=3, account_delay=0.01)
    staff = Staff(MemoryStateStore(), engine.hasher, guard=guard, clock=clock)
    await staff.add_admin(ROOT, "ann", PASSWORD, "admin")
    for name in ("ann", "nobody"):
        for n in range(3):
            outcome = await staff.sign_in(name, b"guess %d" % n, "", remote_ip=f"192.0.2.{n}")
            assert outcome is SignIn.INVALID
    targets = sorted(b.target for b in await guard.bans())
    assert targets == sorted(["account:admin:ann", "account:" + unknown_subject("admin:nobody")])
    # Protected, never locked: the right password still signs in.
    assert await staff.sign_in("ann", PASSWORD, "", remote_ip="203.0.113.5") is SignIn.ENROL
