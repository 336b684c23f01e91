"""Dovecot's ``allow`` and ``report``, decided by the guard (auth/policyserver.py).

Real Guard objects over the in-memory store and a clock the tests move; the HTTP
route is tests/frontends/test_http_policy.py's, the real Dovecot
tests/peers/test_dovecot_policy.py's.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from mailwarden import config
from mailwarden.auth.policyserver import PolicyServer
from mailwarden.config import GuardConfig, GuardRule
from mailwarden.errors import ConfigError
from mailwarden.guard.policy import Guard, unknown_subject
from mailwarden.protocols.dovecot_policy import Command, PolicyRequest, Verdict

ATTACKER = "192.0.2.66"
OWNER = "198.51.100.10"
TRAVEL = "203.0.113.5"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(**kw: Any) -> tuple[PolicyServer, Guard]:
    base = GuardConfig(
        allow_networks=(),
        rules=(GuardRule(name="ip", period=60.0, threshold=5),),
        account_threshold=0,
    )
    guard = Guard(dataclasses.replace(base, **kw), clock=Clock())
    return PolicyServer(guard, reject_message="go away"), guard


def req(
    command: Command,
    login: str = "alice@example.com",
    remote: str = ATTACKER,
    pwhash: str = "",
    *,
    success: bool = False,
    policy_reject: bool = False,
) -> PolicyRequest:
    return PolicyRequest(
        command=command,
        login=login,
        remote=remote,
        pwhash=pwhash,
        protocol="imap",
        mechanism="",
        success=success,
        policy_reject=policy_reject,
        tls=False,
    )


def allow(login: str = "alice@example.com", remote: str = ATTACKER) -> PolicyRequest:
    return req(Command.ALLOW, login, remote)


def failure(pwhash: str, login: str = "alice@example.com", remote: str = ATTACKER) -> PolicyRequest:
    return req(Command.REPORT, login, remote, pwhash)


def success(login: str = "alice@example.com", remote: str = OWNER) -> PolicyRequest:
    return req(Command.REPORT, login, remote, "0abc", success=True)


async def test_reported_failures_ban_the_network_and_allow_then_refuses_it() -> None:
    server, guard = make()
    for i in range(4):
        assert await server.report(failure(f"0{i:03x}")) == "failure"
        assert await server.allow(allow()) == ("continue", Verdict(status=0))
    assert await server.report(failure("0fff")) == "failure"
    assert await server.allow(allow()) == ("reject", Verdict(status=-1, message="go away"))
    # Any name from there, and only from there.
    assert (await server.allow(allow("bob")))[0] == "reject"
    assert (await server.allow(allow(remote=OWNER)))[0] == "continue"
    assert [b.target for b in await guard.bans()] == [f"{ATTACKER}/32"]


async def test_a_repeated_pwhash_counts_once() -> None:
    """A phone retrying its stale password: Dovecot's pwhash stands for the password."""
    server, guard = make()
    for _ in range(20):
        await server.report(failure("0a1b"))
    assert await server.report(failure("0a1b")) == "repeated"
    assert await guard.bans() == []
    assert (await server.allow(allow()))[0] == "continue"


async def test_without_a_pwhash_every_failure_counts() -> None:
    """No pwhash attribute, or a challenge-response mechanism (the parser drops it)."""
    server, _guard = make()
    for _ in range(5):
        assert await server.report(failure("")) == "failure"
    assert (await server.allow(allow()))[0] == "reject"


async def test_a_pwhash_is_never_the_same_password_as_a_real_one() -> None:
    """The variant is digested apart: the engine's password 'abc' and pwhash 'abc'
    are two passwords, not one repeated."""
    _, guard = make()
    source = guard.source(ATTACKER)
    assert source is not None
    subject = unknown_subject("alice")
    assert await guard.failed(source, uid=subject, password=b"abc")
    assert await guard.failed(source, uid=subject, password=None, password_variant="abc")
    assert not await guard.failed(source, uid=subject, password=None, password_variant="abc")


async def test_our_own_refusals_are_not_counted_again() -> None:
    """A login we refused reaches Dovecot's report as success=false,
    policy_reject=true: it was refused before any password check, as the engine
    refuses a banned source, and counts nothing."""
    server, guard = make()
    for i in range(4):
        await server.report(failure(f"0{i:03x}"))
    for i in range(50):
        refused = req(Command.REPORT, "carol", ATTACKER, f"1{i:03x}", policy_reject=True)
        assert await server.report(refused) == "policy_reject"
    assert await guard.bans() == []
    assert (await server.allow(allow("carol")))[0] == "continue"


async def test_names_are_counted_under_their_digest_never_in_clear() -> None:
    server, guard = make(account_threshold=3, account_delay=2.5)
    for i, remote in enumerate(("192.0.2.1", "192.0.2.2", "192.0.2.3")):
        await server.report(failure(f"0{i:03x}", "Alice@Example.com", remote))
    targets = [b.target for b in await guard.bans()]
    assert targets == ["account:" + unknown_subject("alice@example.com")]
    assert "alice" not in targets[0]


async def test_an_administrator_lifts_a_names_protection_by_the_name() -> None:
    """``mailwarden guard unblock account:NAME`` and ``cache flush NAME`` reach the
    digest the name is counted under."""
    server, guard = make(account_threshold=3, account_delay=2.5)
    for i in range(3):
        await server.report(failure(f"0{i:03x}", remote=f"192.0.2.{i + 1}"))
    assert (await server.allow(allow(remote=TRAVEL)))[0] == "delay"
    assert await guard.unblock("account:Alice@Example.com") == 1
    assert await guard.bans() == []
    assert (await server.allow(allow(remote=TRAVEL)))[0] == "continue"


async def test_a_protected_name_is_delayed_from_new_networks_but_not_from_known_ones() -> None:
    server, _ = make(account_threshold=3, account_delay=2.5)
    assert await server.report(success(remote=OWNER)) == "success"
    for i in range(3):
        await server.report(failure(f"0{i:03x}", remote=f"192.0.2.{i + 1}"))
    # Dovecot's tarpit is whole seconds: 2.5 s is asked as 3.
    assert await server.allow(allow(remote=TRAVEL)) == ("delay", Verdict(status=3))
    assert await server.allow(allow(remote=OWNER)) == ("continue", Verdict(status=0))
    # Another name is not protected.
    assert (await server.allow(allow("bob", TRAVEL)))[0] == "continue"


async def test_a_success_forgives_the_owners_typos_from_its_known_network() -> None:
    """known_network_failures typos are let pass per network; after a success the
    allowance is whole again, so an office does not ban itself over a week of typos."""
    server, guard = make(known_network_failures=3)
    await server.report(success(remote=OWNER))
    typo = 0

    async def typos(n: int) -> None:
        nonlocal typo
        for _ in range(n):
            await server.report(failure(f"0{typo:03x}", remote=OWNER))
            typo += 1

    for _ in range(10):  # 30 typos, 3 between successes: none reaches the rule
        await typos(3)
        assert await server.report(success(remote=OWNER)) == "success"
    assert await guard.bans() == []
    # Without a success in between, typos beyond the allowance count on the network.
    await typos(3 + 5)
    assert [b.target for b in await guard.bans()] == [f"{OWNER}/32"]


async def test_a_success_never_clears_a_networks_counters() -> None:
    """An attacker holding one account must not reset its address's count by
    logging in between guesses."""
    server, guard = make()
    for i in range(4):
        await server.report(failure(f"0{i:03x}", "victim"))
        await server.report(success("mallory", remote=ATTACKER))
    await server.report(failure("0fff", "victim"))
    assert [b.target for b in await guard.bans()] == [f"{ATTACKER}/32"]


async def test_with_the_guard_disabled_everything_continues_and_nothing_counts() -> None:
    server, guard = make(enabled=False)
    for i in range(10):
        assert await server.report(failure(f"0{i:03x}")) == "off"
    assert await server.allow(allow()) == ("off", Verdict(status=0))
    assert await guard.bans() == []


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[authpolicy]\nenabled = true\napi_key = 'k'", "authpolicy.enabled", "http.enabled"),
        ("[http]\nenabled = true\n[authpolicy]\nenabled = true", "authpolicy.api_key", "set"),
        (
            "[authpolicy]\napi_key = 'k'\napi_key_file = 'f'",
            "authpolicy.api_key_file",
            "one or the other",
        ),
        ("[authpolicy]\npath = 'api/policy'", "authpolicy.path", "a path"),
        ("[authpolicy]\npath = '/ui/policy'", "authpolicy.path", "not under /ui"),
        ("[authpolicy]\napi_header = 'X-Key: v'", "authpolicy.api_header", "header name"),
        ("[authpolicy]\nlogin_attribute = 'a/b'", "authpolicy.login_attribute", "no space"),
    ],
)
def test_a_bad_authpolicy_setting_names_the_key(text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.loads(text, source="mw.toml")
    message = str(info.value)
    # FILE:LINE where the file names the key, FILE alone where it does not.
    assert re.match(rf"mw\.toml(:\d+)?: {re.escape(key)}: expected", message), message
    assert expected in message


def test_the_policy_server_is_off_by_default_and_loads_when_enabled_with_a_key() -> None:
    assert config.loads("").authpolicy.enabled is False
    loaded = config.loads("[http]\nenabled = true\n[authpolicy]\nenabled = true\napi_key = 'k'")
    assert loaded.authpolicy.path == "/api/v1/dovecot/policy"
